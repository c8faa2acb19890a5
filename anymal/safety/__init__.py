"""Safety checks (AnyMAL §5): text classifier (text.py), image check (image.py), the guard that
applies them to inputs and streamed outputs (guard.py), `anymal safety` (cli.py)."""

# how streamed output is held back until the output check passed it (a word, a sentence, the answer);
# here, not in guard.py, so the CLI can list them without importing torch
HOLDS = ("words", "sentences", "answer")
