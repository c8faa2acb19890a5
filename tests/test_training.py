"""The training loop on tiny backbones: loss falls, artefacts are written, bad samples are counted."""
import json
from pathlib import Path

import pytest
import torch
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


def test_samples_that_only_frozen_adapters_read_are_counted_not_trained(tmp_path, images, tiny_llm_dir):
    """With the LLM frozen, a sample whose inputs all go through frozen adapters gives no gradient: a skip with its
    reason, and a run of nothing else stops before training, saying why."""
    recipe = _recipe(tmp_path, tiny_llm_dir, _dataset(tmp_path, images), max_steps=1)
    r = yaml.safe_load(recipe.read_text())
    r["model"]["modalities"]["video"] = {"encoder": "tiny-cnn", "frames": 2, "projector": "mlp", "num_tokens": 4}
    recipe.write_text(yaml.safe_dump(r))
    with pytest.raises(DataError, match=r"reads only frozen adapters \(image\): no gradient"):
        train(load_train_config(recipe, ["freeze=[projectors.image]"]), progress=False, log=lambda *_: None)
    res = train(load_train_config(recipe), progress=False, log=lambda *_: None)
    assert res.skipped == 0  # the same samples train an image adapter that is not frozen


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
        train(load_train_config(recipe, ["data.on_error=fail"]), progress=False, log=lambda *_: None, overwrite=True)


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
    assert after.lineage[-1]["recipe"] == str(recipe)  # the lineage says which recipe made each run
    with pytest.raises(Exception, match="no component 'projectors.video'; components: "):
        train(load_train_config(recipe, overrides[:-1] + ["freeze=[projectors.video]"]), progress=False,
              log=lambda *_: None, overwrite=True)


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


def _system_dataset(tmp_path, images):
    """Messages with a system prompt: every sample starts with the same ~20 tokens."""
    recs = [{"messages": [{"role": "system", "content": "You are a careful assistant who names shapes."},
                          {"role": "user", "content": "<image>What is this?"},
                          {"role": "assistant", "content": a}], "images": [str(p)]}
            for p, a in zip(images, ["A red square.", "A green square.", "A blue square.", "A yellow square."])]
    f = tmp_path / "system.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    return f


def test_shared_prefix_length_by_hand():
    from anymal.model.processor import IGNORE, Encoded
    from anymal.model.prefix import shared_length

    a = Encoded([1, 2, 3, 4, 5, 6, 7, 8], [IGNORE] * 6 + [7, 8], [None] * 8)
    assert shared_length([a, a]) == 5  # the hidden state at 5 predicts the first label (6): it must run
    b = Encoded([1, 2, 3, 9, 5, 6, 7, 8], a.labels, [None] * 8)
    assert shared_length([a, b]) == 3  # first difference
    c = Encoded([1, 2, 3, 4, 5, 6, 7, 8], a.labels, [None, None, "image", "image"] + [None] * 4)
    assert shared_length([a, c]) == 2  # a modality slot is trainable input: it must run


def test_reusing_the_shared_prefix_gives_the_same_loss_and_gradients(tmp_path, images, tiny_llm_dir, monkeypatch):
    from anymal.data.jsonl import read_jsonl
    from anymal.model.prefix import find_shared_prefix

    monkeypatch.setenv("ANYMAL_CACHE", str(tmp_path / "cache"))
    cfg = load_train_config(_recipe(tmp_path, tiny_llm_dir, _system_dataset(tmp_path, images)))
    model = AnyMAL.from_config(cfg.model)
    samples, _ = read_jsonl(str(_system_dataset(tmp_path, images)), ["image"], None, "fail")
    enc = [model.processor.encode(s.messages) for s in samples]
    for e, s in zip(enc, samples):
        e.features = model.encode_media(model.processor.media(s.messages))
    prefix = find_shared_prefix(model.llm.model, enc)
    assert prefix is not None and len(prefix) >= 10
    batch = model.processor.collate(enc[:3], padding_side="right")
    outs = []
    for p in (None, prefix):
        model.zero_grad()
        out = model(batch, "lm", p)
        out.loss_sum.backward()
        outs.append((out, [q.grad.clone() for q in model.projectors["image"].parameters()]))
    (a, ga), (b, gb) = outs
    assert a.num_labels == b.num_labels and float(a.loss_sum.detach()) == pytest.approx(float(b.loss_sum.detach()), rel=1e-5)
    assert all(torch.allclose(x, y, atol=1e-6, rtol=1e-4) for x, y in zip(ga, gb))


def test_the_trainer_reuses_the_prefix_only_while_the_llm_is_frozen(tmp_path, images, tiny_llm_dir, monkeypatch):
    monkeypatch.setenv("ANYMAL_CACHE", str(tmp_path / "cache"))
    recipe = _recipe(tmp_path, tiny_llm_dir, _system_dataset(tmp_path, images), max_steps=6)
    runs = {}
    for name, over in (("on", []), ("off", ["reuse_prefix=false"]), ("lora", ["stage=instruct"])):
        logs = []
        train(load_train_config(recipe, over + [f"output_dir={tmp_path / name}"]), progress=False, log=logs.append)
        runs[name] = ([json.loads(l)["loss"] for l in (tmp_path / name / "metrics.jsonl").read_text().splitlines()
                       if "loss" in json.loads(l)], any("shared prompt prefix" in l for l in logs))
    assert runs["on"][1] and not runs["off"][1] and not runs["lora"][1]
    assert runs["on"][0] == pytest.approx(runs["off"][0], rel=1e-4)


@pytest.mark.parametrize("native", [True, False])
def test_auto_train_dtype_is_bf16_only_where_the_hardware_runs_it(monkeypatch, native):
    """An AVX2-only CPU runs bf16 matmuls ~70x slower than fp32: `auto` must not pick bf16 there."""
    import anymal.train.setup as setup

    monkeypatch.setattr(setup, "native_bf16", lambda device: native)
    lines = []
    assert setup.resolve_train_dtype("auto", torch.device("cpu"), lines.append) == ("bfloat16" if native else "float32")
    assert lines == [f"frozen LLM trains in {'bfloat16' if native else 'float32'} (llm_train_dtype auto: "
                     f"{'' if native else 'no '}native bf16 on cpu)"]
    lines.clear()
    assert setup.resolve_train_dtype("bfloat16", torch.device("cpu"), lines.append) == "bfloat16"  # asked for: kept
    assert bool(lines) != native  # ... with a note where it is slow
    assert setup.resolve_train_dtype(None, torch.device("cpu"), lines.append) is None
