"""Placeholder expansion, interleaving and the assistant-only loss mask."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from anymal import AnyMAL

from anymal.errors import InputError
from anymal.model.processor import IGNORE


def _conv(images, answer="A frog."):
    return [{"role": "user", "content": [{"type": "image", "path": str(images[0])},
                                         {"type": "text", "text": "What is this?"}]},
            {"role": "assistant", "content": answer}]


def test_each_image_expands_to_projector_token_count(tiny_model, images):
    enc = tiny_model.processor.encode(_conv(images))
    assert enc.slots.count("image") == tiny_model.projectors["image"].num_tokens == 4
    assert len(enc.media) == 1 and enc.media[0].source == str(images[0])
    assert all(l == IGNORE for l, s in zip(enc.labels, enc.slots) if s)


def test_interleaved_parts_keep_their_order(tiny_model, images):
    tok = tiny_model.llm.tokenizer
    msgs = [{"role": "user", "content": [
        {"type": "text", "text": "Hello"}, {"type": "image", "path": str(images[0])},
        {"type": "text", "text": "world"}, {"type": "image", "path": str(images[1])}, {"type": "text", "text": "fox"}]}]
    enc = tiny_model.processor.encode(msgs, add_generation_prompt=True)
    runs, prev = [], None  # collapse into [text, image, text, image, text, ...]
    for i, s in enumerate(enc.slots):
        kind = s or "text"
        if kind != prev:
            runs.append([kind, []])
            prev = kind
        runs[-1][1].append(enc.input_ids[i])
    kinds = [k for k, _ in runs]
    assert kinds == ["text", "image", "text", "image", "text"]
    assert "Hello" in tok.decode(runs[0][1]) and "world" in tok.decode(runs[2][1]) and "fox" in tok.decode(runs[4][1])
    assert [m.source for m in enc.media] == [str(images[0]), str(images[1])]
    assert tok.decode(runs[4][1]).endswith("<|im_start|>assistant\n")


def test_loss_only_on_assistant_turns(tiny_model, images):
    tok = tiny_model.llm.tokenizer
    msgs = _conv(images) + [{"role": "user", "content": "And the colour?"}, {"role": "assistant", "content": "Green."}]
    enc = tiny_model.processor.encode(msgs)
    kept = [t for t, l in zip(enc.input_ids, enc.labels) if l != IGNORE]
    # hand-checked: the two answers, each with its end-of-turn token and newline, nothing else
    assert tok.decode(kept) == "A frog.<|im_end|>\nGreen.<|im_end|>\n"
    assert all(l in (IGNORE, t) for t, l in zip(enc.input_ids, enc.labels))


@pytest.mark.parametrize("gathered", [True, False])
def test_loss_is_next_token_cross_entropy_on_labelled_positions_only(tiny_model, images, monkeypatch, gathered):
    # gathered: the LM head runs only on labelled positions; else the model's own head at every
    # position some row needs (the path for LLMs that post-process their logits)
    monkeypatch.setattr(AnyMAL, "_plain_head", property(lambda self: gathered))
    p = tiny_model.processor
    convs = [_conv(images, "A frog."), _conv(images[1:], "A duck on a pond, what do you see?")]
    batch = p.collate([p.encode(c) for c in convs], "right")
    with torch.no_grad():
        out = tiny_model(batch)
        full = tiny_model(dataclasses.replace(batch, labels=None)).logits  # every position
    by_hand, n = 0.0, 0
    for r in range(2):
        for t in range(batch.labels.shape[1] - 1):
            if batch.labels[r, t + 1] != IGNORE:
                by_hand += float(F.cross_entropy(full[r, t], batch.labels[r, t + 1]))
                n += 1
    assert out.num_labels == n == out.logits.shape[0] > 10
    assert float(out.loss_sum) == pytest.approx(by_hand, rel=1e-5)


def test_batch_masks_and_padding_sides(tiny_model, images):
    p = tiny_model.processor
    a = p.encode(_conv(images))
    b = p.encode(_conv(images, "A duck on a pond, what do you see?"))
    right = p.collate([a, b], "right")
    left = p.collate([a, b], "left")
    assert right.attention_mask[0, 0] == 1 and right.attention_mask[0, -1] == 0
    assert left.attention_mask[0, 0] == 0 and left.attention_mask[0, -1] == 1
    assert int(right.slots["image"].sum()) == 8 and len(right.media["image"]) == 2


def test_bad_messages_are_clear_errors(tiny_model):
    with pytest.raises(InputError, match=r"messages\[0\].content\[0\]: unknown part type 'audio'"):
        tiny_model.processor.encode([{"role": "user", "content": [{"type": "audio", "path": "x.wav"}]}])
    with pytest.raises(InputError, match="role"):
        tiny_model.processor.encode([{"role": "robot", "content": "hi"}])
    with pytest.raises(InputError, match="needs 'path'"):
        tiny_model.processor.encode([{"role": "user", "content": [{"type": "image"}]}])


def test_too_long_sample_is_refused(tiny_model):
    with pytest.raises(InputError, match="limit is 256"):
        tiny_model.processor.encode([{"role": "user", "content": "fox " * 400}])


def test_plain_template_for_models_without_one(tmp_path):
    """Base models (Gemma 3 270M) get a plain template: prefix-stable, EOS only after answers, a stop string."""
    from anymal.llm.templates import PLAIN_TEMPLATE, ensure_chat_template
    from anymal.model.processor import Processor
    from conftest import make_tokenizer

    tok = make_tokenizer()
    tok.chat_template = None
    assert ensure_chat_template(tok) == ["\nUser:"] and tok.chat_template == PLAIN_TEMPLATE
    enc = Processor(tok, {"image": 4}).encode([{"role": "user", "content": "What is this?"},
                                               {"role": "assistant", "content": "A frog."}])
    assert tok.decode(enc.input_ids) == "User: What is this?\nAssistant: A frog.<|im_end|>\n"
    assert tok.decode([t for t, l in zip(enc.input_ids, enc.labels) if l != IGNORE]) == " A frog.<|im_end|>\n"
    assert ensure_chat_template(make_tokenizer()) == []  # a model's own template is kept


def test_a_conversation_is_validated_once_per_generate(every_modality, monkeypatch):
    """A video's soundtrack is decoded while the messages are validated: once, not at every step
    that needs the conversation (fit check, features, prefill)."""
    from anymal.encoders import video
    from anymal.paths import PACKAGE_DIR

    calls = []
    real = video.load_video_audio
    monkeypatch.setattr(video, "load_video_audio", lambda item, *a, **k: calls.append(item) or real(item, *a, **k))
    clip = str(PACKAGE_DIR / "assets" / "examples" / "goat-moving-up.mp4")
    every_modality.generate([[{"role": "user", "content": [{"type": "video", "path": clip, "audio": True},
                                                          {"type": "text", "text": "What?"}]}]],
                            __import__("anymal").GenerationSettings(max_new_tokens=2))
    assert calls == [clip]
