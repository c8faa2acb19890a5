"""Reproduce the shipped `imu-cnn` and `pointnet` weights, and measure them on held-out data.

    pretrain_imu("data/hapt", "runs/pretrain-imu", ship=True)          # build_hapt first
    pretrain_points("data/furniture", "runs/pretrain-points", ship=True)  # build_furniture first

Each run dir gets metrics.jsonl, loss.png, weights.safetensors, facts.json and eval.json;
`ship=True` also copies the weights + a config.json into the package's asset dir.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from ..data.builders import dataset_dir
from ..data.jsonl import read_jsonl
from ..errors import DataError
from ..modalities import IMU, POINTS
from ..objectives import group_ids, linear_probe, majority_accuracy
from ..text_embed import embed_texts
from .contrastive import ContrastiveConfig, ContrastiveSet, train_contrastive


def manifest_records(data_dir: Path, split: str, modality: str) -> list[tuple[str, str, dict]]:
    """(media path, caption, meta) of every line of `{split}.jsonl`."""
    samples, _ = read_jsonl(data_dir / f"{split}.jsonl", [modality])
    out = []
    for s in samples:
        path = next(p["path"] for m in s.messages for p in m["content"] if p["type"] == modality)
        caption = next(p["text"] for m in s.messages if m["role"] == "assistant" for p in m["content"]
                       if p["type"] == "text")
        out.append((path, caption, s.meta))
    if not out:
        raise DataError(f"{data_dir / f'{split}.jsonl'}: no samples")
    return out


def _copy_shipped(run: Path, dest: Path, config: dict) -> Path:
    """weights + config.json (arch, facts, training summary, eval) into `dest`, replacing it."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run / "weights.safetensors", dest / "weights.safetensors")
    (dest / "config.json").write_text(json.dumps(config, indent=1))
    return dest


# ---- IMU -----------------------------------------------------------------------------------
def _imu_arrays(data_dir: Path, split: str) -> tuple[list[np.ndarray], torch.Tensor]:
    from ..encoders.imu import fit_window, read_imu_item

    recs = manifest_records(data_dir, split, IMU.name)
    xs = [fit_window(read_imu_item(p))[0] for p, _, _ in recs]
    return xs, torch.tensor([m["label"] for _, _, m in recs])


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    """A small random rotation (sensor mounted slightly differently), applied to acc and gyro alike."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    a = np.deg2rad(rng.uniform(-max_deg, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def _imu_set(xs: list[np.ndarray], labels: torch.Tensor, mean: np.ndarray, std: np.ndarray) -> ContrastiveSet:
    """Targets: the 3 caption paraphrases of each row's activity (canonical first), all one group."""
    from ..data.builders.hapt_windows import CAPTIONS
    from ..encoders.imu import pack

    classes = sorted(CAPTIONS)
    table = torch.stack([embed_texts(CAPTIONS[c]) for c in classes])  # [12, 3, 384]

    def batch(idx: np.ndarray, rng: np.random.Generator, train: bool) -> torch.Tensor:
        out = []
        for i in idx:
            x = xs[i]
            if train:
                if labels[i] <= 6 and len(x) > 96 and rng.random() < 0.5:  # activities survive cropping
                    n = int(rng.integers(96, len(x) + 1))
                    s = int(rng.integers(0, len(x) - n + 1))
                    x = x[s:s + n]
                r = _rotation(rng, 15.0)
                x = np.concatenate([x[:, :3] @ r.T, x[:, 3:] @ r.T], 1) * rng.uniform(0.9, 1.1)
                x = x + rng.normal(0, 0.02, x.shape) * std
            out.append(pack(x.astype(np.float32), mean, std))
        return torch.stack(out)

    return ContrastiveSet(batch, table[torch.searchsorted(torch.tensor(classes), labels)], labels.clone())


def _evaluate_and_ship(out: Path, config: dict, make_encoder, evaluate, data_dir, shipped_dir: Path,
                       ship: bool) -> dict:
    """Write the run's config, evaluate the encoder rebuilt from its saved weights, optionally ship it."""
    (out / "config.json").write_text(json.dumps(config, indent=1))
    enc = make_encoder(_copy_shipped(out, out / "encoder", config)).freeze()
    metrics = evaluate(enc, data_dir)
    (out / "eval.json").write_text(json.dumps(metrics, indent=1))
    if ship:
        _copy_shipped(out, shipped_dir, {**config, "eval": metrics})
    return metrics


def pretrain_imu(data_dir: str | Path, out_dir: str | Path, cfg: ContrastiveConfig | None = None,
                 ship: bool = False, channels: tuple[int, ...] = (32, 64, 128, 192), dim: int = 192) -> dict:
    """Contrastive IMU pretraining on the HAPT train users (val users pick the epoch); writes eval.json."""
    from ..encoders.imu import RATE, STRIDE, TOKENS, WEIGHTS_DIR, WINDOW, IMUEncoder, IMUNet

    data_dir, out = Path(data_dir), Path(out_dir)
    cfg = cfg or ContrastiveConfig(epochs=30, batch_size=128, lr=2e-3)
    xs, labels = _imu_arrays(data_dir, "train")
    allx = np.concatenate(xs)
    mean, std = allx.mean(0), allx.std(0) + 1e-6  # per-channel constants, shipped with the weights
    vx, vlabels = _imu_arrays(data_dir, "val")
    torch.manual_seed(cfg.seed)
    net = IMUNet(channels, dim)
    arch = {"channels": list(channels), "dim": dim, "window": WINDOW, "tokens": TOKENS, "stride": STRIDE, "rate": RATE}
    res = train_contrastive(net, dim, _imu_set(xs, labels, mean, std), _imu_set(vx, vlabels, mean, std),
                            cfg, out, extra_tensors={"norm.mean": torch.tensor(mean), "norm.std": torch.tensor(std)},
                            facts={"arch": arch, "data": str(data_dir)})
    config = {"arch": arch, "norm_id": "hapt-train-users-1-21", "data": "UCI HAPT users 1-21 (build_hapt)",
              "training": {k: res[k] for k in ("config", "best", "train_examples", "steps", "seconds", "params")}}
    return _evaluate_and_ship(out, config, lambda d: IMUEncoder("imu-cnn", IMU.name, weights_dir=d),
                              evaluate_imu_encoder, data_dir, WEIGHTS_DIR, ship)


@torch.no_grad()
def _imu_features(enc, data_dir: Path, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pooled features, MiniLM-space embeddings, labels) of a split, 256 windows at a time."""
    recs = manifest_records(data_dir, split, IMU.name)
    pooled, emb = [], []
    for i in range(0, len(recs), 256):
        x = torch.stack([enc.preprocess(p) for p, _, _ in recs[i:i + 256]])
        pooled.append(enc.net.pooled(x))
        emb.append(enc.embed(x))
    return torch.cat(pooled), torch.cat(emb), torch.tensor([m["label"] for _, _, m in recs])


def _accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    return round(float((pred == y).float().mean()), 4)


def evaluate_imu_encoder(encoder=None, data_dir: str | Path = dataset_dir("hapt"), split: str = "test") -> dict:
    """Held-out users: zero-shot 12-way accuracy (nearest canonical caption), linear probe, chance, majority."""
    from ..data.builders.hapt import LABELS
    from ..data.builders.hapt_windows import CAPTIONS
    from ..encoders import imu  # noqa: F401  (registers imu-cnn)
    from ..encoders import load_encoder

    enc = encoder or load_encoder("imu-cnn", IMU.name)
    data_dir = Path(data_dir)
    tr_pooled, _, tr_y = _imu_features(enc, data_dir, "train")
    te_pooled, te_emb, te_y = _imu_features(enc, data_dir, split)
    classes = torch.tensor(sorted(CAPTIONS))
    canon = embed_texts([CAPTIONS[int(c)][0] for c in classes])
    ens = torch.nn.functional.normalize(torch.stack([embed_texts(CAPTIONS[int(c)]).mean(0) for c in classes]), dim=-1)
    zs = classes[(te_emb @ canon.T).argmax(1)]
    probe = linear_probe(tr_pooled, tr_y, te_pooled)
    return {"split": split, "n": len(te_y), "classes": len(classes),
            "zero_shot_acc": _accuracy(zs, te_y),
            "zero_shot_acc_caption_ensemble": _accuracy(classes[(te_emb @ ens.T).argmax(1)], te_y),
            "linear_probe_acc": _accuracy(probe, te_y),
            "chance_acc": round(1 / len(classes), 4), "majority_acc": round(majority_accuracy(tr_y, te_y), 4),
            "zero_shot_per_class": {LABELS[int(c)]: _accuracy(zs[te_y == c], te_y[te_y == c])
                                    for c in classes if (te_y == c).any()}}


# ---- points --------------------------------------------------------------------------------
def _points_set(paths: list[str], captions: list[str], categories: list[str], n: int) -> ContrastiveSet:
    """Targets: the object's caption (variant 0) or its category's caption (1), drawn per step."""
    from ..encoders.geometry import normalize_cloud
    from ..encoders.points import random_yaw

    clouds = [np.load(p).astype(np.float32) for p in paths]  # [2048, 3] each, from build_furniture

    def batch(idx: np.ndarray, rng: np.random.Generator, train: bool) -> torch.Tensor:
        out = []
        for i in idx:
            c = clouds[i]
            if train:  # a fresh subset, random heading, mild stretch and jitter
                c = random_yaw(c[rng.choice(len(c), n, replace=len(c) < n)], rng)
                c = c * rng.uniform(0.9, 1.1, 3).astype(np.float32) + rng.normal(0, 0.005, c.shape).astype(np.float32)
            else:
                c = c[np.random.default_rng(0).choice(len(c), n, replace=len(c) < n)]
            out.append(torch.from_numpy(normalize_cloud(c)))
        return torch.stack(out)

    from ..data.builders.furniture import category_prompt

    cap_groups = group_ids(captions)
    cats = sorted(set(categories))
    text = torch.stack([embed_texts(captions), embed_texts([category_prompt(c) for c in categories])], 1)
    groups = torch.stack([cap_groups, int(cap_groups.max()) + 1 + torch.tensor([cats.index(c) for c in categories])], 1)
    return ContrastiveSet(batch, text, groups, val_variant=1)  # pick the epoch by held-out category accuracy


def pretrain_points(data_dir: str | Path, out_dir: str | Path, cfg: ContrastiveConfig | None = None,
                    ship: bool = False, groups: int = 16, neighbours: int = 32, width: int = 96,
                    dim: int = 256) -> dict:
    """Contrastive PointNet pretraining on the furniture train names (val names pick the epoch); writes eval.json."""
    from ..encoders.points import N_POINTS, WEIGHTS_DIR, PointNetEncoder, PointNetNet

    data_dir, out = Path(data_dir), Path(out_dir)
    cfg = cfg or ContrastiveConfig(epochs=40, batch_size=64, lr=2e-3)
    sets = {}
    for split in ("train", "val"):
        recs = manifest_records(data_dir, split, POINTS.name)
        sets[split] = _points_set([p for p, _, _ in recs], [c for _, c, _ in recs],
                                  [m["category"] for _, _, m in recs], N_POINTS)
    torch.manual_seed(cfg.seed)
    net = PointNetNet(groups, neighbours, width, dim)
    arch = {"groups": groups, "neighbours": neighbours, "width": width, "dim": dim, "points": N_POINTS}
    res = train_contrastive(net, dim, sets["train"], sets["val"], cfg, out, facts={"arch": arch, "data": str(data_dir)})
    config = {"arch": arch, "data": "sweethome3d-furniture train names (build_furniture)",
              "training": {k: res[k] for k in ("config", "best", "train_examples", "steps", "seconds", "params")}}
    return _evaluate_and_ship(out, config, lambda d: PointNetEncoder("pointnet", POINTS.name, weights_dir=d),
                              evaluate_points_encoder, data_dir, WEIGHTS_DIR, ship)


@torch.no_grad()
def _points_features(enc, data_dir: Path, split: str) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str]]:
    recs = manifest_records(data_dir, split, POINTS.name)
    pooled, emb = [], []
    for i in range(0, len(recs), 128):
        x = torch.stack([enc.preprocess(p) for p, _, _ in recs[i:i + 128]])
        pooled.append(enc.net.pooled(x))
        emb.append(enc.embed(x))
    return torch.cat(pooled), torch.cat(emb), [m["category"] for _, _, m in recs], [c for _, c, _ in recs]


def evaluate_points_encoder(encoder=None, data_dir: str | Path = dataset_dir("furniture"), split: str = "test") -> dict:
    """Held-out names: zero-shot category accuracy (nearest category prompt), linear probe, majority,
    chance; and caption retrieval (R@1, R@5 among the split's distinct captions)."""
    from ..data.builders.furniture import CATEGORY_PHRASES, category_prompt
    from ..encoders import points  # noqa: F401  (registers pointnet)
    from ..encoders import load_encoder

    enc = encoder or load_encoder("pointnet", POINTS.name)
    data_dir = Path(data_dir)
    cats = sorted(CATEGORY_PHRASES)
    tr_pooled, _, tr_cat, _ = _points_features(enc, data_dir, "train")
    te_pooled, te_emb, te_cat, te_caps = _points_features(enc, data_dir, split)
    tr_y = torch.tensor([cats.index(c) for c in tr_cat])
    te_y = torch.tensor([cats.index(c) for c in te_cat])
    prompts = embed_texts([category_prompt(c) for c in cats])
    zs = (te_emb @ prompts.T).argmax(1)
    distinct = sorted(set(te_caps))
    target = torch.tensor([distinct.index(c) for c in te_caps])
    ranks = (te_emb @ embed_texts(distinct).T).argsort(1, descending=True)
    hit = ranks == target[:, None]
    return {"split": split, "n": len(te_y), "categories": len(cats),
            "zero_shot_category_acc": _accuracy(zs, te_y),
            "linear_probe_category_acc": _accuracy(linear_probe(tr_pooled, tr_y, te_pooled), te_y),
            "chance_acc": round(1 / len(cats), 4), "majority_acc": round(majority_accuracy(tr_y, te_y), 4),
            "caption_retrieval": {"captions": len(distinct), "r@1": round(float(hit[:, :1].any(1).float().mean()), 4),
                                  "r@5": round(float(hit[:, :5].any(1).float().mean()), 4),
                                  "chance_r@1": round(1 / len(distinct), 4)}}


__all__ = ["evaluate_imu_encoder", "evaluate_points_encoder", "pretrain_imu", "pretrain_points"]
