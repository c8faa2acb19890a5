"""The LLM's own abilities are kept (issue 31): the shipped default answers text-only questions exactly as
the frozen LLM alone does (only projectors were trained; a checkpoint with LoRA would change them and
must report it instead)."""
from __future__ import annotations

import torch

from anymal.llm.backbone import load_llm
from anymal.model.settings import GenerationSettings

QUESTIONS = ["What is the capital of France?", "What is 2 + 2?", "Name three colours.",
             "Write one sentence about the sea.", "Who wrote Romeo and Juliet?", "Tell me a joke."]


def test_text_only_answers_equal_the_frozen_llm_alone(default_model):
    assert not default_model.config.lora, "the shipped default trains LoRA: measure and report text answers instead"
    plain = load_llm(default_model.config.llm.id)
    tok = plain.tokenizer
    settings = GenerationSettings(max_new_tokens=24)
    ours = default_model.generate([[{"role": "user", "content": q}] for q in QUESTIONS], settings)
    for q, answer in zip(QUESTIONS, ours):
        ids = tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, return_tensors="pt")
        ids = ids if isinstance(ids, torch.Tensor) else ids["input_ids"]
        with torch.no_grad():
            out = plain.model.generate(ids, max_new_tokens=24, do_sample=False, pad_token_id=tok.eos_token_id)
        alone = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
        assert answer.strip() == alone, q
    assert "paris" in ours[0].lower()
