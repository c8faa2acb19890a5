"""Chat templates for models that ship none (base models such as Gemma 3 270M, tiny test models)."""
from __future__ import annotations

# Plain-text turns; each turn ends with the EOS token so the model learns where an answer stops.
PLAIN_TEMPLATE = (
    "{% for m in messages %}"
    "{{ m['role'] | capitalize }}: {{ m['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


def ensure_chat_template(tokenizer) -> None:
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = PLAIN_TEMPLATE
