"""The dequantised-LLM cache: complete caches are reused, partial or truncated ones are rebuilt."""
import json

import pytest
import torch
from safetensors.torch import save_file

from anymal.llm import gguf_cache
from anymal.paths import replace_dir


def _fake_cache(d):
    d.mkdir(parents=True)
    save_file({"w": torch.ones(64)}, str(d / "model.safetensors"))
    (d / "config.json").write_text("{}")
    files = {p.name: p.stat().st_size for p in d.iterdir()}
    (d / gguf_cache.STAMP).write_text(json.dumps({"files": files}))
    return d


def test_valid_cache_is_accepted(tmp_path):
    assert gguf_cache._is_valid(_fake_cache(tmp_path / "c"))


def test_missing_stamp_means_partial(tmp_path):
    d = _fake_cache(tmp_path / "c")
    (d / gguf_cache.STAMP).unlink()
    assert not gguf_cache._is_valid(d)


def test_truncated_or_corrupt_weights_are_detected(tmp_path):
    d = _fake_cache(tmp_path / "c")
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[:40])
    assert not gguf_cache._is_valid(d)
    d2 = _fake_cache(tmp_path / "c2")
    raw = bytearray((d2 / "model.safetensors").read_bytes())
    raw[0:8] = b"\xff" * 8  # same size, header length garbage
    (d2 / "model.safetensors").write_bytes(bytes(raw))
    assert not gguf_cache._is_valid(d2)


def test_corrupt_cache_is_rebuilt_in_place(tmp_path, monkeypatch, tiny_llm_dir):
    """cached_gguf_model rebuilds a damaged cache through a temp dir + rename."""
    monkeypatch.setenv("ANYMAL_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 100)
    import transformers

    calls = []
    real_tok, real_lm = transformers.AutoTokenizer, transformers.AutoModelForCausalLM

    class FakeAuto:  # stands in for the GGUF dequantisation (the real one is covered by integration tests)
        @staticmethod
        def from_pretrained(path, gguf_file=None, dtype=None):
            calls.append(gguf_file)
            return (real_tok if len(calls) % 2 == 1 else real_lm).from_pretrained(tiny_llm_dir)

    monkeypatch.setattr(transformers, "AutoTokenizer", FakeAuto)
    monkeypatch.setattr(transformers, "AutoModelForCausalLM", FakeAuto)
    first = gguf_cache.cached_gguf_model("tiny", gguf)
    assert gguf_cache._is_valid(first) and len(calls) == 2
    assert gguf_cache.cached_gguf_model("tiny", gguf) == first and len(calls) == 2  # reused
    w = next(first.glob("*.safetensors"))
    w.write_bytes(w.read_bytes()[:100])  # truncated by a crash / full disk
    again = gguf_cache.cached_gguf_model("tiny", gguf)
    assert again == first and gguf_cache._is_valid(again) and len(calls) == 4
    assert not list(first.parent.glob(".*tmp*"))


def test_replace_dir_swaps_whole_directories(tmp_path):
    old = tmp_path / "final"
    old.mkdir()
    (old / "a").write_text("old")
    new = tmp_path / "tmp"
    new.mkdir()
    (new / "a").write_text("new")
    replace_dir(new, old)
    assert (old / "a").read_text() == "new" and not new.exists()


def test_split_weights_are_assembled_once_and_hash_checked(tmp_path):
    import hashlib

    from anymal.errors import ConfigError
    from anymal.paths import assemble_parts

    parts = []
    for i, chunk in enumerate([b"GGUF" + b"a" * 1000, b"b" * 777]):
        parts.append(tmp_path / f"part{i + 1:02d}.bin")
        parts[-1].write_bytes(chunk)
    whole = b"".join(p.read_bytes() for p in parts)
    target = tmp_path / "cache" / "model.gguf"
    assert assemble_parts(parts, target, hashlib.sha256(whole).hexdigest()).read_bytes() == whole
    target.write_bytes(b"x" * len(whole))  # a complete file is reused, not re-read
    assert assemble_parts(parts, target, "unused").read_bytes() == b"x" * len(whole)
    with pytest.raises(ConfigError, match="reinstall"):
        assemble_parts(parts[::-1], tmp_path / "other.gguf", hashlib.sha256(whole).hexdigest())
    assert not list(tmp_path.glob("*other*")) and not list(tmp_path.glob(".*tmp"))  # nothing half-made is left
