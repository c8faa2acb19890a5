"""The lite LLM (anymal/llm/lite.py): transformers' parameters without its modeling stack."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from anymal.llm.backbone import load_llm
from anymal.llm.fast import FastLM
from anymal.llm.lite import LiteCausalLM


def _qwen2_dir(path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from conftest import make_tokenizer

    tok = make_tokenizer()
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
                                 initializer_range=0.3)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_lite_holds_transformers_weights_and_decodes_the_same(family, tiny_llm_dir, tmp_path):
    path = tiny_llm_dir if family == "llama" else _qwen2_dir(tmp_path / "qwen2")
    lite, full = load_llm(str(path), lite=True), load_llm(str(path))
    assert isinstance(lite.model, LiteCausalLM)
    a, b = lite.model.state_dict(), full.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert lite.eos_token_ids == full.eos_token_ids and lite.embed_rms == full.embed_rms
    embeds = full.embed(torch.tensor([[3, 5, 7, 9]]))
    mask, pos = torch.ones(1, 4, dtype=torch.long), torch.arange(4)[None]
    torch.testing.assert_close(FastLM(lite.model).prefill(embeds, mask, pos)[0], FastLM(full.model).prefill(embeds, mask, pos)[0])
    hf = lite.hf()  # transformers' model over the same tensors, on first need
    assert type(hf) is type(full.model) and hf.lm_head.weight.data_ptr() == a["lm_head.weight"].data_ptr()
    with torch.no_grad():
        torch.testing.assert_close(hf(inputs_embeds=embeds).logits, full.model(inputs_embeds=embeds).logits)


def test_a_lazy_text_answer_never_imports_transformers_modeling(tiny_checkpoint):
    code = ("import sys\nfrom anymal import AnyMAL, GenerationSettings\n"
            f"m = AnyMAL.from_pretrained({str(tiny_checkpoint)!r}, lazy=True)\n"
            "print(m.generate([[{'role': 'user', 'content': 'Hi'}]], GenerationSettings(max_new_tokens=4)))\n"
            "loaded = [k for k in sys.modules if k.startswith('transformers.models.') and 'modeling' in k]\n"
            "assert not loaded and 'torch._dynamo' not in sys.modules, loaded\n"
            "m.llm.decoder = 'transformers'\n"
            "print(m.generate([[{'role': 'user', 'content': 'Hi'}]], GenerationSettings(max_new_tokens=4)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    first, second = out.stdout.strip().splitlines()
    assert first == second  # the transformers decoder, built on demand, answers the same
