"""The training loop on tiny backbones: loss falls, artefacts are written, bad samples are counted."""
import json
from pathlib import Path

import pytest
import yaml

from anymal import AnyMAL
from anymal.config import load_train_config, to_dict
from anymal.errors import DataError
from anymal.train.loop import train


def _dataset(tmp_path, images, extra=()):
    answers = ["A red square.", "A green square.", "A blue square.", "A yellow square."]
    recs = [{"image": str(p), "conversations": [{"from": "human", "value": "<image>\nWhat is this?"},
                                                {"from": "gpt", "value": a}]} for p, a in zip(images, answers)]
    f = tmp_path / "train.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in [*recs, *extra]) + "\n")
    return f


def _recipe(tmp_path, llm_dir, train_file, **optim):
    r = {"model": {"llm": {"id": str(llm_dir)}, "modalities": {"image": {"encoder": "tiny-cnn", "projector": "mlp",
                                                                        "num_tokens": 4}}},
         "data": {"train": str(train_file), "val": str(train_file)},
         "optim": {"lr": 1e-2, "max_steps": 30, "batch_size": 4, "warmup_steps": 2, **optim},
         "output_dir": str(tmp_path / "run"), "log_every": 5, "eval_every": 10}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(r))
    return tmp_path / "r.yaml"


def test_short_run_lowers_loss_and_writes_artefacts(tmp_path, images, tiny_llm_dir, monkeypatch):
    monkeypatch.setenv("ANYMAL_CACHE", str(tmp_path / "cache"))
    cfg = load_train_config(_recipe(tmp_path, tiny_llm_dir, _dataset(tmp_path, images)))
    res = train(cfg, progress=False, log=lambda *_: None)
    assert res.final_loss < 0.9 * res.first_loss  # a frozen *random* LLM: only the prefix can move
    run = tmp_path / "run"
    for f in ("config.yaml", "plan.txt", "metrics.jsonl", "curves.png", "checkpoint/anymal_config.json",
              "checkpoint/adapters.safetensors"):
        assert (run / f).is_file(), f
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("val_loss" in r for r in rows) and all(r["lr"] >= 0 for r in rows if "lr" in r)
    assert "projectors.image  yes" in (run / "plan.txt").read_text()
    model = AnyMAL.from_pretrained(run / "checkpoint")
    assert model.stage == "align" and model.lineage[-1]["steps"] == 30
    assert any((tmp_path / "cache" / "features").rglob("*.safetensors"))  # feature cache was used


def test_bad_samples_are_skipped_and_counted_or_fatal(tmp_path, images, tiny_llm_dir, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(images[0].read_bytes()[:70])
    extra = [{"image": str(bad), "conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "x"}]},
             "{oops"]
    recipe = _recipe(tmp_path, tiny_llm_dir, _dataset(tmp_path, images, extra), max_steps=2)
    logs = []
    res = train(load_train_config(recipe), progress=False, log=logs.append)
    assert res.skipped == 2 * 2  # train and val manifests are the same file: 2 bad lines each
    assert any("skipped 4 samples" in l and "broken.png" in l for l in logs)
    with pytest.raises(DataError, match="train.jsonl:6: expected a JSON object, got str"):
        train(load_train_config(recipe, ["data.on_error=fail"]), progress=False, log=lambda *_: None)


def test_add_a_modality_keeping_a_trained_adapter_frozen(tmp_path, images, tiny_llm_dir, monkeypatch):
    import numpy as np
    import torch

    monkeypatch.setenv("ANYMAL_CACHE", str(tmp_path / "cache"))
    first = train(load_train_config(_recipe(tmp_path, tiny_llm_dir, _dataset(tmp_path, images)),
                                    ["optim.max_steps=3"]), progress=False, log=lambda *_: None)
    clips = []
    for i in range(4):
        clips.append(tmp_path / f"clip{i}.npy")
        np.save(clips[-1], np.sin(np.arange(10 + 12 * i, dtype=np.float32) * (i + 1)))
    recs = [{"messages": [{"role": "user", "content": "<audio><image>What is this?"},
                          {"role": "assistant", "content": f"Sound {i}."}], "audios": [str(c)], "images": [str(im)]}
            for i, (c, im) in enumerate(zip(clips, images))]
    data = tmp_path / "av.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    recipe = _recipe(tmp_path, tiny_llm_dir, data)
    overrides = [f"init_from={first.checkpoint}", "freeze=[projectors.image]", f"output_dir={tmp_path / 'run2'}",
                 "model.modalities.audio={encoder: tiny-seq, projector: linear, num_tokens: 8}", "optim.max_steps=5"]
    cfg = load_train_config(recipe, overrides)
    res = train(cfg, progress=False, log=lambda *_: None)
    before, after = AnyMAL.from_pretrained(first.checkpoint), AnyMAL.from_pretrained(res.checkpoint)
    for k, v in before.projectors["image"].state_dict().items():
        assert torch.equal(v, after.projectors["image"].state_dict()[k]), k
    plan = (tmp_path / "run2" / "plan.txt").read_text()
    assert "projectors.image  frozen" in plan and "projectors.audio  yes" in plan
    assert after.lineage[0]["steps"] == 3 and after.lineage[-1]["init_from"] == str(first.checkpoint)
    with pytest.raises(Exception, match="no component 'projectors.video'; components: "):
        train(load_train_config(recipe, overrides[:-1] + ["freeze=[projectors.video]"]), progress=False,
              log=lambda *_: None)


def test_save_every_writes_intermediate_checkpoints(tmp_path, images, tiny_llm_dir, monkeypatch):
    monkeypatch.setenv("ANYMAL_CACHE", str(tmp_path / "cache"))
    saved = []
    real = AnyMAL.save_pretrained

    def spy(self, path, stage=None, extra=None, **kw):
        saved.append((extra or {}).get("training", {}).get("partial_step", "final"))
        return real(self, path, stage, extra, **kw)

    monkeypatch.setattr(AnyMAL, "save_pretrained", spy)
    cfg = load_train_config(_recipe(tmp_path, tiny_llm_dir, _dataset(tmp_path, images)),
                            ["optim.max_steps=5", "save_every=2"])
    train(cfg, progress=False, log=lambda *_: None)
    assert saved == [2, 4, "final"]


@pytest.mark.parametrize("recipe", sorted((Path(__file__).parents[1] / "anymal" / "recipes").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_shipped_recipes_load_and_fit_the_checkpoint_they_start_from(recipe):
    from anymal.model.checkpoint import read_manifest
    from anymal.train.stages import get_stage

    from anymal.config import ModalityConfig
    from anymal.registry import PROJECTORS

    cfg = load_train_config(recipe)
    get_stage(cfg.stage)
    if cfg.init_from and cfg.init_from.startswith("runs/"):  # chained: another shipped recipe writes it
        outputs = {f"{load_train_config(r).output_dir}/checkpoint" for r in recipe.parent.glob("*.yaml")}
        assert cfg.init_from in outputs, recipe.name
    elif cfg.init_from:
        shipped = read_manifest(Path(__file__).parents[1] / cfg.init_from)["config"]["modalities"]
        defaults = to_dict(ModalityConfig())
        for m in cfg.init_modalities or [m for m in cfg.model.modalities if m in shipped]:
            ours = yaml.safe_load(yaml.safe_dump(to_dict(cfg.model.modalities[m])))
            if ours["projector"] != shipped[m]["projector"]:  # adoption (tiles <- mlp), checked on load
                assert shipped[m]["projector"] in PROJECTORS._items[ours["projector"]].adopts, (recipe.name, m)
                continue
            assert ours == {**defaults, **shipped[m]}, (recipe.name, m)
