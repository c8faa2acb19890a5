"""Any-resolution images: encoder-free pixel patches (OtterHD/Fuyu) and tiles + thumbnail through the
pretrained encoder — geometry on odd sizes, the token guard, positions, adoption of a trained adapter."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from anymal import AnyMAL
from anymal.config import ModalityConfig, load_train_config
from anymal.encoders import load_encoder
from anymal.errors import ConfigError, InputError
from anymal.projectors.patch import patch_positions
from anymal.train.loop import train
from conftest import tiny_config


def _noise(path, w, h, seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def test_pixel_patches_geometry_on_an_odd_size(tmp_path):
    enc = load_encoder("pixel-patches", "image")
    img = _noise(tmp_path / "a.png", 95, 61)
    x, n = enc.load(img)
    assert (n, x.shape) == (3 * (4 + 1), (15, 3 * 30 * 30 + 1))  # 3 rows x 4 cols + a break per row
    assert x[:, -1].nonzero().flatten().tolist() == [4, 9, 14]
    pixels = np.asarray(Image.open(img), dtype=np.float32) / 127.5 - 1
    patch = x[6, :-1].reshape(30, 30, 3).numpy()  # row 1, col 1
    assert np.allclose(patch, pixels[30:60, 30:60], atol=1e-6)
    corner = x[13, :-1].reshape(30, 30, 3).numpy()  # row 2, col 3: 5 x 1 real pixels, the rest white padding
    assert np.allclose(corner[:1, :5], pixels[60:61, 90:95], atol=1e-6) and (corner[1:] == 1).all() and (corner[:, 5:] == 1).all()
    row, col = patch_positions(x[None, :, -1] > 0.5)
    assert row[0].tolist() == [0] * 5 + [1] * 5 + [2] * 5 and col[0].tolist() == [0, 1, 2, 3, 4] * 3


def test_patch_token_guard_names_the_fix(tmp_path):
    enc = load_encoder("pixel-patches", "image")
    big = _noise(tmp_path / "big.png", 1800, 1500)
    with pytest.raises(InputError, match=r"big.png: a 1800x1500 image is 50x60 patches of 30 px = 3050 tokens.*limit is 2048.*sides"):
        enc.load(big)
    enc.set_sides([900])
    assert enc.load(big)[1] == 25 * (30 + 1)
    assert "sides=900" in enc.preprocess_id


def test_patch_projector_one_token_per_patch_with_2d_positions(tiny_llm_dir, tmp_path):
    cfg = tiny_config(tiny_llm_dir)
    cfg.modalities["image"] = ModalityConfig(encoder="pixel-patches", projector="patch", num_tokens=None)
    m = AnyMAL.from_config(cfg)
    Image.new("RGB", (90, 60), (20, 120, 200)).save(tmp_path / "flat.png")  # every patch identical
    feats = m.encode_media(m.processor.media([{"role": "user", "content": [{"type": "image", "image": str(tmp_path / "flat.png")}]}]))
    tokens = m.project("image", feats)
    assert tokens.shape == (2 * 4, 32)
    assert not torch.allclose(tokens[0], tokens[1]) and not torch.allclose(tokens[0], tokens[4])  # positions differ
    with torch.no_grad():
        m.projectors["image"].row_pos.weight.zero_()
        m.projectors["image"].col_pos.weight.zero_()
    same = m.project("image", feats)
    assert torch.allclose(same[0], same[1]) and torch.allclose(same[3], same[7])  # breaks: one learned token
    cfg.modalities["image"].num_tokens = 16
    with pytest.raises(ConfigError, match="num_tokens: null"):
        AnyMAL.from_config(cfg)


@pytest.mark.parametrize("size,grid", [((500, 300), (2, 3)), ((224, 224), (1, 1)), ((225, 10), (1, 2)),
                                       ((5000, 300), (1, 4)), ((3000, 3000), (4, 4))])
def test_tile_layout_covers_the_image_on_odd_sizes(size, grid):
    enc = load_encoder("efficientnet-lite0-tiles", "image")
    rows, cols, scale = enc.layout(*size)
    assert (rows, cols) == grid
    w, h = round(size[0] * scale), round(size[1] * scale)
    assert max(w, h) <= 4 * 224 + 1 and all(-(-s // 224) == g for s, g in zip((h, w), grid))


def test_tiles_encoder_features_mark_positions_and_thumbnail(tmp_path):
    enc = load_encoder("efficientnet-lite0-tiles", "image")
    img = _noise(tmp_path / "wide.png", 500, 300)
    [f] = enc.encode([img])
    assert f.shape == ((1 + 6) * 49, 1282)
    pos = f[::49, -2:].tolist()
    assert pos == [[0, 0], [1, 1], [1, 2], [1, 3], [2, 1], [2, 2], [2, 3]]
    plain = load_encoder("efficientnet-lite0", "image").encode([img])[0]
    assert torch.allclose(f[:49, :-2], plain, atol=1e-5)  # the thumbnail is the plain encoder's view


def test_tiles_adopt_a_trained_mlp_image_adapter(tmp_path):
    """The tiles projector starts from an mlp adapter over EfficientNet-Lite0: its thumbnail tokens are
    that projector's tokens exactly; tiles add tokens; a mismatched encoder is refused."""
    from anymal.config import ModelConfig

    torch.manual_seed(0)
    shipped = AnyMAL.from_config(ModelConfig(modalities={"image": ModalityConfig(encoder="efficientnet-lite0",
                                                                                 projector="mlp", num_tokens=9)}))
    mlp_dir = shipped.save_pretrained(tmp_path / "mlp", stage="align")
    cfg = ModelConfig(modalities={"image": ModalityConfig(encoder="efficientnet-lite0-tiles", projector="tiles", num_tokens=9)})
    tiled = AnyMAL.from_config(cfg)
    assert tiled.init_adapters_from(mlp_dir, ["image"]) == ["image"]
    img = _noise(tmp_path / "wide.png", 500, 300)
    with torch.no_grad():
        ours = tiled.project("image", tiled.encoders["image"].encode([img]))
        ref = shipped.project("image", shipped.encoders["image"].encode([img]))
    assert ours.shape == (7 * 9, shipped.llm.hidden_size) and torch.allclose(ours[:9], ref, atol=1e-5)
    cfg.modalities["image"].encoder = "pixel-patches"
    with pytest.raises(ConfigError, match="tiled encoder"):
        AnyMAL.from_config(cfg)


def test_sides_resize_images_and_are_refused_for_other_modalities(tmp_path):
    enc = load_encoder("efficientnet-lite0", "image", sides=[112])
    img = Image.new("RGB", (400, 200))
    assert enc.fit_side(img).size == (112, 56)
    multi = load_encoder("pixel-patches", "image", sides=[60, 90, 120])
    pictures = [Image.new("RGB", (400, 200), (i, 2 * i, 3 * i)) for i in range(30)]
    sizes = {multi.fit_side(p).size for p in pictures}
    assert sizes == {(60, 30), (90, 45), (120, 60)}  # dynamic resolution: drawn per picture...
    # ...by its pixels: the same picture under two paths and in memory gets one size (the feature cache
    # keys by file bytes, so a by-path draw would hand one copy the other's features)
    pictures[7].save(tmp_path / "a.png")
    (tmp_path / "b").mkdir()
    pictures[7].save(tmp_path / "b" / "copy.png")
    tokens = {multi.load(x)[1] for x in (tmp_path / "a.png", str(tmp_path / "b" / "copy.png"), pictures[7])}
    assert len(tokens) == 1
    assert multi.preprocess_id.endswith("sides=60,90,120/by-pixels") and enc.preprocess_id.endswith("sides=112")
    with pytest.raises(ConfigError, match="image encoders only"):
        load_encoder("tiny-seq", "audio", sides=[100])


def test_dynamic_resolution_patch_training_runs_and_learns(tmp_path, tiny_llm_dir, monkeypatch):
    monkeypatch.setenv("ANYMAL_CACHE", str(tmp_path / "cache"))
    recs = []
    for i, (colour, answer) in enumerate([((220, 20, 20), "A red square."), ((20, 200, 40), "A green square."),
                                          ((20, 40, 220), "A blue square."), ((230, 210, 20), "A yellow square.")]):
        p = tmp_path / f"img{i}.png"
        Image.new("RGB", (97 + 13 * i, 71), colour).save(p)
        recs.append({"image": str(p), "conversations": [{"from": "human", "value": "<image>\nWhat is this?"},
                                                        {"from": "gpt", "value": answer}]})
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in recs * 2) + "\n")
    r = {"model": {"llm": {"id": str(tiny_llm_dir), "max_length": 256},
                   "modalities": {"image": {"encoder": "pixel-patches", "projector": "patch", "num_tokens": None,
                                            "sides": [60, 90, 120]}}},
         "data": {"train": str(tmp_path / "train.jsonl"), "feature_cache": False},
         "optim": {"lr": 1e-2, "max_steps": 20, "batch_size": 4, "warmup_steps": 1},
         "output_dir": str(tmp_path / "run"), "log_every": 1, "eval_every": 0}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(r))
    res = train(load_train_config(tmp_path / "r.yaml"), progress=False, log=lambda *_: None)
    assert res.final_loss < 0.9 * res.first_loss and res.skipped == 0  # a random LLM: only the prefix can move
    m = AnyMAL.from_pretrained(res.checkpoint)
    assert m.encoders["image"].sides == (60, 90, 120)
    counts = {len([s for s in m.encode_conversation([{"role": "user", "content": [{"type": "image", "image": r_["image"]}]}]).slots
                   if s == "image"]) for r_ in recs}
    assert len(counts) > 1  # inputs really came at different resolutions


def test_resolution_sweep_from_the_cli_tables_and_plots_every_label(tmp_path, tiny_llm_dir, monkeypatch):
    """`anymal eval --task magnifier --sides ...`: one run per side, image tokens grow with the side,
    two models swept by separate commands share one table and plot, the encoder's sides are restored."""
    from anymal.cli import main
    from anymal.eval.resolution import resolution_sweep

    recs = []
    for k in range(2):
        _noise(tmp_path / f"c{k}.png", 300 + 40 * k, 200, seed=k)
        recs.append({"images": [f"c{k}.png"], "meta": {"object": "frog", "form": "multiple-choice",
                                                         "options": ["frog", "duck", "goat", "rat"], "letter": "A"},
                     "messages": [{"role": "user", "content": "<image>What is it?\nA. frog\nB. duck\nC. goat\nD. rat"},
                                  {"role": "assistant", "content": "A"}]})
    man = tmp_path / "test.jsonl"
    man.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    cfg = tiny_config(tiny_llm_dir)
    cfg.modalities["image"] = ModalityConfig(encoder="pixel-patches", projector="patch", num_tokens=None)
    m = AnyMAL.from_config(cfg)
    m.save_pretrained(tmp_path / "patches")
    res = resolution_sweep(m, "magnifier", [60, 120], tmp_path / "out", "patches", manifest=man, progress=False)
    assert [(r["side"], r["image_tokens"], r["n"]) for r in res["rows"]] == [(60, 2 * 3, 2), (120, 3 * 5, 2)]
    assert m.encoders["image"].sides == () and "sides" not in m.encoders["image"].preprocess_id
    assert main(["eval", "--task", "magnifier", "--sides", "90", "--model", str(tmp_path / "patches"), "--label", "again",
                 "--data", str(man), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| patches | 60 | 6 |" in table and "| again | 90 | 8 |" in table
    sweep_again = ["eval", "--task", "magnifier", "--sides", "90", "--model", str(tmp_path / "patches"), "--label",
                   "again", "--data", str(man), "--out", str(tmp_path / "out"), "--no-progress"]
    assert main(sweep_again) == 2 and main(sweep_again + ["--overwrite"]) == 0  # a label's sweep is not replaced unasked

    monkeypatch.chdir(tmp_path)  # results land under the model's name, and are never silently replaced
    once = ["eval", "--task", "magnifier", "--model", str(tmp_path / "patches"), "--data", str(man), "--no-progress"]
    assert main(once) == 0 and (tmp_path / "runs/eval/patches/magnifier/results.json").is_file()
    before = (tmp_path / "runs/eval/patches/magnifier/results.json").read_text()
    assert main(once) == 2 and (tmp_path / "runs/eval/patches/magnifier/results.json").read_text() == before
    assert main(once + ["--overwrite"]) == 0
    assert (tmp_path / "out" / "resolution.png").is_file()
