"""Batched = sequential greedy, streaming = non-streaming, stop strings, sampling seeds."""
import torch

from anymal import GenerationSettings
from anymal.model.generation import TextStream


def _convs(images):
    return [
        [{"role": "user", "content": [{"type": "image", "path": str(images[0])}, {"type": "text", "text": "What is this?"}]}],
        [{"role": "user", "content": "Hello world, the quick brown fox jumps over the lazy dog."}],
        [{"role": "user", "content": [{"type": "image", "path": str(images[1])}, {"type": "text", "text": "Hi"},
                                      {"type": "image", "path": str(images[2])}]}],
    ]


def test_batched_greedy_equals_one_by_one(tiny_model, images):
    s = GenerationSettings(max_new_tokens=12)
    convs = _convs(images)
    batched = tiny_model.generate(convs, s)
    single = [tiny_model.generate([c], s)[0] for c in convs]
    assert batched == single
    assert all(len(x) > 0 for x in batched)


def test_streaming_equals_non_streaming(tiny_model, images):
    s = GenerationSettings(max_new_tokens=12)
    for conv in _convs(images):
        pieces = list(tiny_model.stream(conv, s))
        assert "".join(pieces) == tiny_model.generate([conv], s)[0]
    assert len(list(tiny_model.stream(_convs(images)[1], s))) > 1  # really incremental


def test_sampling_is_seeded(tiny_model, images):
    conv = _convs(images)[1]
    s = GenerationSettings(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=3)
    a = tiny_model.generate([conv], s)[0]
    assert a == tiny_model.generate([conv], s)[0]
    outs = {tiny_model.generate([conv], GenerationSettings(max_new_tokens=10, temperature=1.5, seed=k))[0] for k in range(5)}
    assert len(outs) > 1


def test_chat_api_with_keyword_inputs(tiny_model, images):
    r = tiny_model.chat("What is this?", image=str(images[0]), max_new_tokens=5)
    msgs = [{"role": "user", "content": [{"type": "image", "path": str(images[0])}, {"type": "text", "text": "What is this?"}]}]
    assert r == tiny_model.chat(msgs, max_new_tokens=5)
    assert "".join(tiny_model.chat("What is this?", image=str(images[0]), max_new_tokens=5, stream=True)) == r


def test_text_stream_stop_strings_and_holdback(tiny_model):
    tok = tiny_model.llm.tokenizer
    ids = tok("Hello world. The quick fox", add_special_tokens=False)["input_ids"]
    st = TextStream(tok, ["The quick"], eos_ids=[])
    out = "".join(st.push(t) for t in ids) + st.close()
    assert out == "Hello world. "
    assert st.finished


def test_max_new_tokens_bounds_output(tiny_model):
    conv = [{"role": "user", "content": "Hello"}]
    s = GenerationSettings(max_new_tokens=3)
    n = len(tiny_model.llm.tokenizer(tiny_model.generate([conv], s)[0], add_special_tokens=False)["input_ids"])
    assert n <= 3


def test_generation_does_not_track_gradients(tiny_model, images):
    conv = _convs(images)[0]
    with torch.enable_grad():
        tiny_model.generate([conv], GenerationSettings(max_new_tokens=2))
