"""The fast decoder (anymal/llm/fast.py, llm/quick.py) against transformers' forward."""
from __future__ import annotations

import pytest
import torch

from anymal.errors import ConfigError
from anymal.llm.fast import FastLM, KVCache, unsupported
from anymal.llm.kv import TransformersRunner
from anymal.llm.quick import Int4Linear, native_int4, pack_int4
from anymal.model.generation import DecodeBatch, decode_tokens
from anymal.model.settings import GenerationSettings

needs_int4 = pytest.mark.skipif(not native_int4(), reason="the int4 CPU kernel needs native bf16 (AVX512-BF16/AMX)")


def _tiny(kind: str):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    common = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256, initializer_range=0.2)
    if kind == "qwen2":  # q/k/v biases, untied head
        return Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=False)).eval()
    return LlamaForCausalLM(LlamaConfig(**common, tie_word_embeddings=True, rope_theta=10000.0)).eval()


def _padded_prompts(model, lengths=(7, 4, 9)):
    """Left-padded embeddings of random prompts, their mask and rotary positions."""
    T = max(lengths)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, model.config.vocab_size, (len(lengths), T), generator=g)
    mask = torch.stack([torch.cat([torch.zeros(T - n), torch.ones(n)]) for n in lengths]).long()
    with torch.no_grad():
        embeds = model.get_input_embeddings()(ids)
    return embeds, mask, (mask.cumsum(-1) - 1).clamp(min=0)


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_fast_logits_match_transformers_through_prompt_and_steps(kind):
    model = _tiny(kind)
    fast, ref = FastLM(model), TransformersRunner(model)
    embeds, mask, pos = _padded_prompts(model)
    a, cache_a = fast.prefill(embeds, mask, pos)
    b, cache_b = ref.prefill(embeds, mask, pos)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    for step in range(5):  # steps past a cache that has to grow (capacity = prompt + 256 is not reached: shrink it)
        if step == 2:
            cache_a.keys = cache_a.keys[:, :, :, :cache_a.length].clone()
            cache_a.values = cache_a.values[:, :, :, :cache_a.length].clone()
        nxt = a.argmax(-1, keepdim=True)
        mask = torch.cat([mask, torch.ones(len(mask), 1, dtype=mask.dtype)], 1)
        pos = pos[:, -1:] + 1
        a, b = fast.step(nxt, mask, pos, cache_a), ref.step(nxt, mask, pos, cache_b)
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert cache_a.length == mask.shape[1] and cache_a.capacity >= cache_a.length


def test_kv_cache_select_and_merge_keep_each_rows_entries():
    like = torch.empty(0)
    a = KVCache.empty(1, 2, 1, 2, 8, like)
    a.write(0, torch.arange(2 * 3 * 2.).view(2, 1, 3, 2), torch.zeros(2, 1, 3, 2))
    a.length = 3
    one = a.select(torch.tensor([1]), 1)  # row 1 without its first position
    assert one.length == 2 and torch.equal(one.keys[0][0, 0, :2], torch.tensor([[8., 9.], [10., 11.]]))
    b = KVCache.empty(1, 1, 1, 2, 4, like)
    b.write(0, torch.full((1, 1, 1, 2), 7.), torch.zeros(1, 1, 1, 2))
    b.length = 1
    both = one.merged(b)  # the shorter is left-padded
    assert both.length == 2 and torch.equal(both.keys[0][1, 0, :2], torch.tensor([[0., 0.], [7., 7.]]))


@pytest.mark.parametrize("speculate", [0, pytest.param(4, marks=needs_int4)])
def test_decoding_is_the_same_through_either_runner_rows_joining_and_leaving(speculate):
    model = _tiny("llama")
    embeds, mask, _ = _padded_prompts(model, (6, 3, 8))
    outs = []
    for runner in (FastLM(model, speculate=speculate), TransformersRunner(model)):
        batch = DecodeBatch(runner)
        batch.join(embeds[:1, -6:], mask[:1, -6:], [GenerationSettings(max_new_tokens=30)])
        toks = []
        for _ in range(7):  # alone: speculative passes (checked tokens waiting when the others join)
            toks.append(batch.sample())
            batch.advance([True])
        batch.join(embeds[1:], mask[1:], [GenerationSettings(max_new_tokens=30)] * 2, indices=[1, 2])
        for step in range(8):
            toks.append(batch.sample())
            batch.advance([not (step == 3 and r == 1) for r in range(len(batch))])  # row 1 leaves early
        for step in range(12):  # rows 0 and 2, then row 2 alone again
            toks.append(batch.sample())
            batch.advance([not (step == 2 and r == 0) for r in range(len(batch))])
        outs.append(toks)
    assert outs[0] == outs[1]


@needs_int4
def test_speculative_decoding_gives_the_exact_greedy_tokens():
    model = _as_q4_1(_tiny("llama"))  # drafts that are mostly right, so that passes keep several
    embeds, mask, _ = _padded_prompts(model, (5,))
    outs, fast = [], FastLM(model, speculate=6)
    for runner in (fast, TransformersRunner(model)):
        batch = DecodeBatch(runner)
        batch.join(embeds, mask, [GenerationSettings(max_new_tokens=40)])
        outs.append([t.tolist() for t in decode_tokens(batch, 40, [-1])])
    assert outs[0] == outs[1] and fast.draft is not None


@needs_int4
def test_drafting_stops_at_a_stop_token_and_at_the_answers_budget(default_model):
    lm = default_model.llm
    prompt = default_model.prepare([[{"role": "user", "content": "Describe a cat."}]])

    def answer(runner, budget: int, stops: list[int]) -> list[int]:
        batch = DecodeBatch(runner)
        batch.join(prompt.embeds, prompt.mask, [GenerationSettings(max_new_tokens=budget)])
        return [int(t) for t in decode_tokens(batch, budget, stops)]

    def drafting(stops: list[int] = ()) -> tuple[FastLM, list[int]]:
        fast = FastLM(lm.model, speculate=8, stops=stops)
        calls, draft = [], fast._q4_step()
        fast.draft = lambda *a: calls.append(1) or draft(*a)
        return fast, calls

    ref = answer(TransformersRunner(lm.hf()), 24, [-1])
    i = next(i for i in range(6, 24) if ref[i] not in ref[:i])  # a token the answer has not said before
    fast, calls = drafting([ref[i]])
    assert answer(fast, 24, [ref[i]]) == ref[:i + 1]  # the exact tokens, up to the stop
    assert len(calls) <= i  # no drafting past the stop token: at most the tokens before it
    fast, calls = drafting()
    assert answer(fast, 3, [-1]) == ref[:3]
    assert len(calls) <= 1  # 1 token from the prompt, then 1 draft + the exact pick: the budget's 3


def test_the_shipped_llm_answers_the_same_through_fast_and_transformers(default_model, images):
    photo = "anymal/assets/examples/goat.png"
    convs = [[{"role": "user", "content": q}] for q in ("What is the capital of France?", "Describe a cat.")]
    convs.append([{"role": "user", "content": [{"type": "image", "path": photo}, {"type": "text", "text": "What is this?"}]}])
    s = GenerationSettings(max_new_tokens=40)
    answers = {}
    try:
        for decoder in ("transformers", "fast"):
            default_model.llm.decoder = decoder
            runner = default_model.llm.runner()
            assert type(runner).__name__ == {"fast": "FastLM", "transformers": "TransformersRunner"}[decoder]
            answers[decoder] = ([default_model.generate([c], s)[0] for c in convs], default_model.generate(convs, s))
    finally:
        default_model.llm.decoder = "auto"
    assert answers["fast"] == answers["transformers"]
    assert answers["fast"][0] == answers["fast"][1]  # batched = one by one
    if native_int4():  # single answers were speculative: drafted in 4 bits, checked by the exact weights
        assert default_model.llm.runner().draft is not None


def _with_lora(model, targets=("q_proj", "v_proj", "down_proj")):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(3)
    lora = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=list(targets)))
    with torch.no_grad():  # B starts at zero: give the adapters something to say
        for n, p in lora.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)
    return lora.eval()


def test_lora_models_decode_fast_as_peft_computes_them():
    lora = _with_lora(_tiny("llama"))
    assert unsupported(lora) is None
    embeds, mask, pos = _padded_prompts(lora.get_base_model())
    fast, ref = FastLM(lora), TransformersRunner(lora)
    a, cache_a = fast.prefill(embeds, mask, pos)
    b, _ = ref.prefill(embeds, mask, pos)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    plain = FastLM(_tiny("llama")).prefill(embeds, mask, pos)[0]
    assert (a - plain).abs().max() > 1e-2  # the adapters really count
    outs = []
    for runner in (fast, ref):
        batch = DecodeBatch(runner)
        batch.join(embeds, mask, [GenerationSettings(max_new_tokens=10)] * 3)
        outs.append([t.tolist() for t in decode_tokens(batch, 10, [-1])])
    assert outs[0] == outs[1]
    if native_int4():  # a lone row, speculatively: drafts from the LoRA-folded 4-bit copy
        alone = []
        for runner in (FastLM(lora, speculate=4), ref):
            batch = DecodeBatch(runner)
            batch.join(embeds[2:], mask[2:], [GenerationSettings(max_new_tokens=16)])
            alone.append([t.tolist() for t in decode_tokens(batch, 16, [-1])])
        assert alone[0] == alone[1]
    lora.train()  # dropout at work: not the plain sum
    assert "LoRA" in unsupported(lora)


def test_models_fast_decoding_does_not_cover_fall_back_or_refuse(tiny_model):
    from transformers import GPT2Config, GPT2LMHeadModel

    from anymal.llm.backbone import LanguageModel

    from conftest import make_tokenizer

    tok = make_tokenizer()
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=len(tok), bos_token_id=0, eos_token_id=0))
    assert "gpt2" in unsupported(gpt2)
    with pytest.raises(ConfigError, match="gpt2"):
        FastLM(gpt2)
    other = LanguageModel("gpt2", gpt2, tok)
    assert isinstance(other.runner(), TransformersRunner)  # auto
    other.decoder = "fast"  # asked for by name: a clear refusal, not a crash while checking for drafts
    with pytest.raises(ConfigError, match="gpt2"):
        other.runner()
    llm = tiny_model.llm
    assert isinstance(llm.runner(), FastLM)
    llm.decoder = "transformers"
    assert isinstance(llm.runner(), TransformersRunner)
    llm.decoder = "fastest"
    with pytest.raises(ConfigError, match="decoder 'fastest'"):
        llm.runner()


def test_q4_refuses_a_cpu_without_native_bf16(monkeypatch):
    import anymal.llm.quick as quick

    monkeypatch.setattr(quick, "native_int4", lambda: False)
    with pytest.raises(ConfigError, match="native bf16"):
        FastLM(_tiny("llama"), "q4")


@needs_int4
def test_q4_refuses_shapes_the_int4_kernel_cannot_hold(tiny_model):
    from transformers import LlamaConfig, LlamaForCausalLM

    odd = LlamaForCausalLM(LlamaConfig(vocab_size=90, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                       num_attention_heads=4, num_key_value_heads=2))
    with pytest.raises(ConfigError, match="64 -> 90 layer"):
        FastLM(odd, "q4")
    tiny_model.llm.decoder = "fast"  # its vocabulary (not a multiple of 16): exact, without drafts
    assert tiny_model.llm.runner().speculation == 0


@needs_int4
def test_int4_layers_hold_q4_1_blocks_exactly_but_for_bf16_scales():
    # weights in GGUF Q4_1 form, as the shipped LLMs' are: w = d * q + m per 32 inputs, q in 0..15
    g = torch.Generator().manual_seed(0)
    q = torch.randint(0, 16, (48, 64), generator=g).float()
    q[:, ::32], q[:, 1::32] = 0, 15  # min/max present in every group, as Q4_1 quantisation makes them
    d = (torch.rand(48, 2, generator=g) * 0.01 + 0.001).to(torch.bfloat16).float().repeat_interleave(32, 1)
    m = (-8 * d).to(torch.bfloat16).float()
    w = d * q + m
    x = torch.randn(3, 64, generator=g)
    y = Int4Linear(pack_int4([w]))(x).float()
    torch.testing.assert_close(y, x.to(torch.bfloat16).float() @ w.t(), atol=0.02, rtol=0.01)


def _as_q4_1(model):
    """The blocks' linear weights in GGUF Q4_1 form (4-bit levels per 32 inputs, bf16 scale and
    minimum), as the shipped LLMs' weights are."""
    with torch.no_grad():
        for layer in model.model.layers:
            for lin in (*layer.self_attn.children(), *layer.mlp.children()):
                if isinstance(lin, torch.nn.Linear):
                    g = lin.weight.view(lin.weight.shape[0], -1, 32)
                    lo = g.amin(-1, keepdim=True).to(torch.bfloat16).float()
                    d = ((g.amax(-1, keepdim=True) - lo) / 15).to(torch.bfloat16).float()
                    lin.weight.copy_((torch.round((g - lo) / d).clamp(0, 15) * d + lo).view_as(lin.weight))
    return model


@needs_int4
@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_q4_steps_follow_the_exact_ones(kind):
    model = _as_q4_1(_tiny(kind))
    exact, q4 = FastLM(model), FastLM(model, "q4")
    embeds, mask, pos = _padded_prompts(model)
    a, cache_a = exact.prefill(embeds, mask, pos)
    b, cache_b = q4.prefill(embeds, mask, pos)  # prompts run on the exact weights
    torch.testing.assert_close(a, b)
    for _ in range(4):
        nxt = a.argmax(-1, keepdim=True)
        mask = torch.cat([mask, torch.ones(len(mask), 1, dtype=mask.dtype)], 1)
        pos = pos[:, -1:] + 1
        a, b = exact.step(nxt, mask, pos, cache_a), q4.step(nxt, mask, pos, cache_b)
        assert torch.nn.functional.cosine_similarity(a, b, dim=-1).min() > 0.99


@needs_int4
def test_q4_on_the_shipped_llm_picks_the_exact_greedy_token_nearly_always(default_model):
    # teacher-forced: both read the exact path's tokens, so each step is compared on the same text
    convs = [[{"role": "user", "content": q}] for q in ("What is the capital of France?", "List three uses of a brick.",
                                                        "Write a short poem about the sea.")]
    prompt = default_model.prepare(convs)
    model = default_model.llm.model
    exact, q4 = FastLM(model), FastLM(model, "q4")
    a, cache_a = exact.prefill(prompt.embeds, prompt.mask, (prompt.mask.cumsum(-1) - 1).clamp(min=0))
    cache_b = q4.prefill(prompt.embeds, prompt.mask, (prompt.mask.cumsum(-1) - 1).clamp(min=0))[1]
    mask, pos = prompt.mask, (prompt.mask.cumsum(-1) - 1).clamp(min=0)[:, -1:]
    same = []
    for _ in range(40):
        nxt = a.argmax(-1, keepdim=True)
        mask, pos = torch.cat([mask, torch.ones_like(mask[:, :1])], 1), pos + 1
        a, b = exact.step(nxt, mask, pos, cache_a), q4.step(nxt, mask, pos, cache_b)
        same.append(a.argmax(-1) == b.argmax(-1))
    agree = torch.stack(same).float().mean()
    assert agree > 0.9, f"fast-q4 picks the exact path's greedy token at {agree:.1%} of steps"


@needs_int4
def test_an_unwritable_cache_still_decodes_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("ANYMAL_CACHE", str(tmp_path))
    (tmp_path / "llm").write_text("a file where the cache's folder should be")  # unwritable even for root
    model = _as_q4_1(_tiny("llama"))
    embeds, mask, pos = _padded_prompts(model, (4,))
    with caplog.at_level("WARNING"):
        q4 = FastLM(model, "q4")
    assert "could not cache the 4-bit weights" in caplog.text
    logits, cache_kv = q4.prefill(embeds, mask, pos)
    assert torch.isfinite(q4.step(logits.argmax(-1, keepdim=True), torch.ones(1, 5), pos[:, -1:] + 1, cache_kv)).all()


@needs_int4
def test_drafts_run_on_a_bf16_models_cache():
    """A bf16 model's exact decoder keeps a bf16 KV cache, and its 4-bit drafts attend in it (`anymal chat
    --dtype bfloat16` failed at its first drafted token); the drafted greedy tokens stay the exact ones."""
    model = _as_q4_1(_tiny("llama")).to(torch.bfloat16)
    embeds, mask, _ = _padded_prompts(model, (5,))
    fast = FastLM(model, speculate=6)
    assert fast.new_cache(1, 8).keys.dtype == torch.bfloat16
    batch = DecodeBatch(fast)
    batch.join(embeds.to(torch.bfloat16), mask, [GenerationSettings(max_new_tokens=24)])
    drafted = [t.tolist() for t in decode_tokens(batch, 24, [-1])]
    plain = DecodeBatch(FastLM(model))
    plain.join(embeds.to(torch.bfloat16), mask, [GenerationSettings(max_new_tokens=24)])
    assert drafted == [t.tolist() for t in decode_tokens(plain, 24, [-1])] and fast.draft is not None


@pytest.mark.integration
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_every_decoder_answers_in_every_dtype(dtype, capsys):
    """The decoder x dtype matrix on the shipped LLM (CPU; float32 is every other test's): each answers, greedy
    (auto is the exact fast decoder with 4-bit drafts); `anymal chat --dtype bfloat16`, the README's command."""
    from anymal import AnyMAL
    from anymal.cli import main

    model = AnyMAL.from_pretrained(dtype=dtype)
    assert model.llm.dtype == getattr(torch, dtype)
    for decoder in ("auto", "fast", "fast-q4", "transformers") if native_int4() else ("auto", "fast", "transformers"):
        model.llm.decoder = decoder
        answer = model.chat("Say hi.", max_new_tokens=2)
        assert answer.strip(), (dtype, decoder)
    if dtype == "bfloat16":
        assert main(["chat", "--dtype", dtype, "--max-new-tokens", "6", "Say hi."]) == 0 and capsys.readouterr().out.strip()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_every_decoder_on_a_gpu_answers_or_is_refused_by_name(dtype):
    """On CUDA the fast decoders and transformers answer in every dtype; fast-q4 (a CPU int4 kernel) is
    refused with a line that says so."""
    from anymal import AnyMAL

    model = AnyMAL.from_pretrained(dtype=dtype, device="cuda")
    for decoder in ("auto", "fast", "transformers"):
        model.llm.decoder = decoder
        assert model.chat("Say hi.", max_new_tokens=2).strip(), (dtype, decoder)
    model.llm.decoder = "fast-q4"
    with pytest.raises(ConfigError, match="fast-q4 decoding cannot run this LLM"):
        model.chat("Say hi.", max_new_tokens=2)
