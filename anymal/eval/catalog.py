"""The modules whose import registers evaluation tasks beyond tasks.py's own: importing this fills TASKS."""
from . import benchmark_tasks, kept, question_types, reading, speaking  # noqa: F401  (each registers its tasks on import)
