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


def _solo_tokens(model, conv, s):
    return [int(t[0]) for t in model.decode(model.prepare([conv]), s)]


def test_rows_joining_and_leaving_a_running_batch_decode_as_alone(tiny_model, images):
    # continuous batching: row 0 starts alone, rows 1-2 join after 3 steps (longer prompts: the
    # running cache is left-padded), row 0 leaves after 6 (padding only it needed is trimmed), row 3
    # joins after 8; greedy and seeded-sampling rows must produce exactly what they produce alone
    m = tiny_model
    convs = _convs(images) + [[{"role": "user", "content": "Short."}]]
    greedy = GenerationSettings(max_new_tokens=14)
    sampled = GenerationSettings(max_new_tokens=14, temperature=1.3, seed=5)
    settings = [greedy, sampled, greedy, sampled]
    solo = [[t for t in _solo_tokens(m, c, s)] for c, s in zip(convs, settings)]
    batch, got, rows = m.decoder(), {r: [] for r in range(4)}, []

    def join(r):
        p = m.prepare([convs[r]])
        batch.join(p.embeds, p.mask, [settings[r]], p.bind)
        rows.append(r)

    join(0)
    for step in range(30):
        if step == 3:
            p = m.prepare([convs[1], convs[2]])
            batch.join(p.embeds, p.mask, [settings[1], settings[2]], p.bind)
            rows.extend([1, 2])
        if step == 8:
            join(3)
        for r, t in zip(rows, batch.sample()):
            got[r].append(t)
        keep = [not (r == 0 and step == 5) and len(got[r]) < 14 for r in rows]
        rows = [r for r, k in zip(rows, keep) if k]
        batch.advance(keep)
        if not rows:
            break
    assert got[0] == solo[0][:6]
    for r in (1, 2, 3):
        assert got[r] == solo[r][:14], r
    assert len(batch) == 0


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
