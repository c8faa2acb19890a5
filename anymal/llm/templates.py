"""Chat templates for models that ship none (base models such as Gemma 3 270M, tiny test models)."""
from __future__ import annotations

# Plain-text turns for base models: BOS first (Gemma degrades badly without it), and EOS only after
# assistant turns, so the model learns where an answer stops without seeing EOS inside prompts.
PLAIN_TEMPLATE = (
    "{% if bos_token %}{{ bos_token }}{% endif %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'assistant' %}Assistant: {{ m['content'] }}{{ eos_token }}\n"
    "{% else %}{{ m['role'] | capitalize }}: {{ m['content'] }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


def ensure_chat_template(tokenizer) -> list[str]:
    """Give a template-less tokenizer the plain one; return the stop strings that template needs
    (a base model happily writes the next "User:" turn itself)."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = PLAIN_TEMPLATE
    return ["\nUser:"] if tokenizer.chat_template == PLAIN_TEMPLATE else []
