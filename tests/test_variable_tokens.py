"""Inputs of different lengths get proportional token counts, end to end (encode, batch, train, generate)."""
import numpy as np
import pytest
import torch

from anymal import AnyMAL
from anymal.config import LLMConfig, ModalityConfig, ModelConfig
from anymal.data.dataset import collate, prepare
from anymal.data.feature_cache import FeatureCache
from anymal.data.jsonl import Sample, SkipReport
from anymal.model.generation import GenerationSettings


@pytest.fixture
def two_modal(tiny_llm_dir):
    torch.manual_seed(0)
    cfg = ModelConfig(llm=LLMConfig(id=str(tiny_llm_dir), max_length=256), modalities={
        "image": ModalityConfig(encoder="tiny-cnn", projector="mlp", num_tokens=4),
        "audio": ModalityConfig(encoder="tiny-seq", projector="linear", num_tokens=8)})
    return AnyMAL.from_config(cfg)


def convo(image, clip, answer=None):
    msgs = [{"role": "user", "content": [{"type": "audio", "audio": clip}, {"type": "text", "text": "and"},
                                          {"type": "image", "path": str(image)}, {"type": "text", "text": "What?"}]}]
    return msgs + ([{"role": "assistant", "content": answer}] if answer else [])


def test_slots_follow_each_inputs_length(two_modal, images):
    short, full = np.ones(8, np.float32), np.ones(64, np.float32)  # 2 and 16 encoder tokens
    enc_short = two_modal.encode_conversation(convo(images[0], short))
    enc_full = two_modal.encode_conversation(convo(images[0], full))
    assert enc_short.slots.count("audio") == 1 and enc_full.slots.count("audio") == 8
    assert enc_short.slots.count("image") == enc_full.slots.count("image") == 4
    batch = two_modal.processor.collate([enc_short, enc_full], padding_side="left")
    assert two_modal.embed(batch).shape[:2] == batch.input_ids.shape  # every slot filled exactly


def test_batched_generation_equals_one_by_one_with_mixed_lengths(two_modal, images):
    convs = [convo(images[0], np.linspace(-1, 1, 8, dtype=np.float32)),
             convo(images[1], np.linspace(1, -1, 60, dtype=np.float32))]
    s = GenerationSettings(max_new_tokens=6)
    assert two_modal.generate(convs, s) == [two_modal.generate([c], s)[0] for c in convs]


def test_cached_and_uncached_training_batches_agree(two_modal, images, tmp_path):
    clips = [tmp_path / f"c{i}.npy" for i in range(2)]
    for i, p in enumerate(clips):
        np.save(p, np.sin(np.arange(12 + 30 * i, dtype=np.float32)))
    samples = [Sample(convo(images[i], str(clips[i]), "A frog."), f"t:{i}") for i in range(2)]
    caches = {m: FeatureCache(two_modal.encoders[m], tmp_path / "cache") for m in two_modal.encoders}
    cached = prepare(samples, two_modal, caches, "fail", SkipReport(), progress=False)
    plain = prepare(samples, two_modal, None, "fail", SkipReport(), progress=False)
    assert [p.encoded.input_ids for p in cached] == [p.encoded.input_ids for p in plain]
    with torch.no_grad():
        a, b = two_modal(collate(two_modal, cached)).loss, two_modal(collate(two_modal, plain)).loss
    assert torch.allclose(a, b, atol=1e-5)
    assert caches["audio"].get(clips[0]).shape == (3, 12)  # cached features are trimmed to real signal


def test_cache_fill_batches_and_leaves_a_bad_file_to_get(two_modal, tmp_path):
    from anymal.errors import InputError

    clips = [tmp_path / f"c{i}.npy" for i in range(5)]
    for i, p in enumerate(clips):
        np.save(p, np.sin(np.arange(12 + 9 * i, dtype=np.float32)))
    np.save(bad := tmp_path / "bad.npy", np.ones(65, np.float32))  # longer than the encoder takes
    enc = two_modal.encoders["audio"]
    one_by_one = [FeatureCache(enc, tmp_path / "single").get(p) for p in clips]
    cache = FeatureCache(enc, tmp_path / "batched")
    cache.fill(clips[:2] + [bad] + clips[2:], batch_size=2, progress=False)
    assert cache.misses == 4  # [c0 c1] [bad c2] [c3 c4]: the batch with the bad file is left for `get`
    for p, want in zip(clips, one_by_one):
        torch.testing.assert_close(cache.get(p), want)
    with pytest.raises(InputError, match="expected 1 to 64 samples"):
        cache.get(bad)


def test_too_long_input_is_a_clear_error(two_modal, images):
    from anymal.errors import InputError

    with pytest.raises(InputError, match="expected 1 to 64 samples, got 65"):
        two_modal.chat("What?", audio=np.ones(65, np.float32))
