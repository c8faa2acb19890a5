"""The grouped-query training attention (anymal/llm/attention.py) computes what eager attention does."""
import copy
import json

import pytest
import torch
from conftest import tiny_config

from anymal import AnyMAL
from anymal.config import load_train_config
from anymal.llm import attention
from anymal.train.setup import train_attention
from anymal.model.prefix import find_shared_prefix


def _batch(model, images):
    msgs = [[{"role": "system", "content": [{"type": "text", "text": "You look at pictures and say what they show."}]},
             {"role": "user", "content": [{"type": "image", "image": str(p)}, {"type": "text", "text": q}]},
             {"role": "assistant", "content": [{"type": "text", "text": a}]}]
            for p, q, a in zip(images, ["What is this?", "Describe it in a few words, please.", "Colour?"],
                               ["A red square.", "A green square on white.", "Blue."])]
    enc = [model.processor.encode(m) for m in msgs]
    for e, m in zip(enc, msgs):
        e.features = model.encode_media(model.processor.media(m))
    return enc, model.processor.collate(enc, padding_side="right")  # rows of different lengths: padding


def _loss_and_grads(model, batch, impl, prefix=None):
    model.llm.model.set_attn_implementation(impl)
    model.zero_grad()
    out = model(batch, "lm", prefix)
    out.loss_sum.backward()
    return float(out.loss_sum.detach()), [p.grad.clone() for p in model.projectors["image"].parameters()]


@pytest.mark.parametrize("with_prefix", [False, True])
def test_grouped_attention_gives_eagers_loss_and_gradients(tiny_llm_dir, images, with_prefix):
    torch.manual_seed(0)
    model = AnyMAL.from_config(tiny_config(tiny_llm_dir))  # 4 query heads over 2 key/value heads
    enc, batch = _batch(model, images[:3])
    assert batch.attention_mask.sum(1).unique().numel() == 3
    prefix = find_shared_prefix(model.llm.model, enc) if with_prefix else None
    assert (prefix is not None) == with_prefix
    eager = _loss_and_grads(model, batch, "eager", prefix)
    grouped = _loss_and_grads(model, batch, attention.NAME, prefix)
    assert grouped[0] == pytest.approx(eager[0], rel=1e-6)
    assert all((a - b).abs().max() <= 1e-5 * b.abs().max() for a, b in zip(grouped[1], eager[1]))  # fp32 sums
    assert any(g.abs().sum() > 0 for g in grouped[1])


def test_grouped_attention_in_bf16_on_the_real_llm_matches_eager(default_model, images):
    model = copy.deepcopy(default_model)
    model.llm.model.to(torch.bfloat16)  # the trainer's bf16 frozen SmolLM2-135M (9 query over 3 key/value heads)
    _, batch = _batch(model, images[:3])
    eager = _loss_and_grads(model, batch, "eager")
    grouped = _loss_and_grads(model, batch, attention.NAME)
    # the same bf16 rounding of the probabilities; softmax's backward runs in bf16 instead of fp32. How far
    # the two losses drift depends on the CPU's bf16 kernels: within 2e-3 with Intel's AMX, 7e-3 on an AMD
    # EPYC (AVX512-BF16), where the gradients below still agree to a cosine of 0.99998
    assert grouped[0] == pytest.approx(eager[0], rel=1e-2)
    cos = torch.nn.functional.cosine_similarity
    flat = [torch.cat([g.flatten() for g in grads]) for grads in (grouped[1], eager[1])]
    assert cos(*flat, dim=0) > 0.999  # the whole adapter gradient
    for a, b in zip(grouped[1], eager[1]):  # and each weight that carries a share of it (a tiny one is bf16 noise;
        if b.norm() >= 0.01 * flat[1].norm():  # one sits at 0.9990 on the AMD machine with two threads)
            assert cos(a.flatten(), b.flatten(), dim=0) > 0.998


def test_what_grouped_attention_does_not_cover_goes_to_the_models_eager_function(tiny_llm_dir):
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaAttention

    cfg = LlamaConfig(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, attention_dropout=0.5)
    module = LlamaAttention(cfg, layer_idx=0).train()
    q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    _, weights = attention.grouped_attention(module, q, k, v, None, 0.35, dropout=0.5)
    assert weights is not None  # eager returns the attention weights, the grouped path None
    out, weights = attention.grouped_attention(module.eval(), q, k, v, None, 0.35, dropout=0.5)
    assert weights is None and out.shape == (2, 5, 4, 8)


def test_auto_picks_grouped_attention_for_a_bf16_llm_on_cpu(tmp_path, tiny_llm_dir):
    model = AnyMAL.from_config(tiny_config(tiny_llm_dir))
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"model": {"llm": {"id": str(tiny_llm_dir)}}}))
    picks = {}
    for dtype in (torch.float32, torch.bfloat16):
        model.llm.model.to(dtype)
        for choice in ("auto", "grouped", "eager", "sdpa"):
            picks[dtype, choice] = train_attention(load_train_config(recipe, [f"llm_train_attention={choice}"]), model)
    assert picks[torch.bfloat16, "auto"] == picks[torch.float32, "grouped"] == attention.NAME
    assert picks[torch.float32, "auto"] == "sdpa" and picks[torch.bfloat16, "eager"] == "eager"
