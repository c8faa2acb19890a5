"""A request as a frozen instruction-tuned LLM reads it: the last layer's hidden state at the end of the
prompt, in the LLM's own chat template, as features for the input check's head.

Instruction-tuned models carry whether a request is one to refuse in that state; a sentence embedding
(MiniLM) mostly carries its topic, so a head on it learned "kill" and "shoot" rather than intent. Measured
side by side on the corpus' unseen sources (`anymal safety eval --compare`, docs/serving.md). A system
prompt is templated as a system message: it is judged as the instruction it is, not as a user's request.
The LLM (SmolLM2-135M-Instruct, the shipped model's own) loads on first use, in bf16 where the CPU does
bf16 natively, and is shared by every thread that checks a request.
"""
from __future__ import annotations

import threading

import torch

SAFETY_LLM = "smollm2-135m-instruct"
MAX_TOKENS = 256  # a request's first 256 tokens decide (the check's cost stays bounded)
_lock = threading.Lock()
_loaded: dict[str, tuple] = {}


def _llm(name: str):
    with _lock:
        if name not in _loaded:
            from ..devices import resolve_device
            from ..llm.backbone import load_llm, native_bf16

            llm = load_llm(name, lite=False)
            dtype = torch.bfloat16 if native_bf16(resolve_device("cpu")) else torch.float32
            tok = llm.tokenizer
            tok.padding_side = tok.truncation_side = "left"  # the prompt's end is what is read
            _loaded[name] = (llm.hf().model.to(dtype).eval(), tok)
        return _loaded[name]


@torch.no_grad()
def prompt_states(texts: list[tuple[str, str]], name: str = SAFETY_LLM, batch: int = 32,
                  progress: bool = False) -> torch.Tensor:
    """[N, hidden] float32: the final hidden state at the end of each (role, text) prompt."""
    from tqdm import tqdm

    body, tok = _llm(name)
    prompts = [tok.apply_chat_template([{"role": role, "content": text}], tokenize=False,
                                       add_generation_prompt=role != "system") for role, text in texts]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths pad little
    out = torch.zeros(len(prompts), body.config.hidden_size)
    for k in tqdm(range(0, len(order), batch), desc="reading with the LLM", unit="batch", disable=not progress):
        idx = order[k:k + batch]
        enc = tok([prompts[i] for i in idx], return_tensors="pt", padding=True, truncation=True,
                  max_length=MAX_TOKENS, add_special_tokens=False)
        with _lock:  # one forward at a time: the request threads share the model
            states = body(**enc).last_hidden_state[:, -1].float()
        out[idx] = states
    return out
