"""Runs that survive and scale: NaN handling, SIGKILL + --resume, 2-process DDP (gloo) == 1 process."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from anymal import AnyMAL
from anymal.config import load_train_config
from anymal.errors import TrainingError
from anymal.train.loop import train
from anymal.train.sampling import StepSampler, padding, random_padding
from anymal.train.setup import length_grouping
from conftest import LAUNCH, PRELUDE, TORCHRUN, run_child, run_cli



def _recipe(tmp_path, llm_dir, images, name, n_copies=2, **over):
    answers = ["A red square.", "A green square.", "A blue square.", "A yellow square."]
    recs = [{"image": str(p), "conversations": [{"from": "human", "value": "<image>\nWhat is this?"},
                                                {"from": "gpt", "value": a * (1 + k)}]}
            for k in range(n_copies) for p, a in zip(images, answers)]  # varied lengths
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    r = {"model": {"llm": {"id": str(llm_dir), "max_length": 256},
                   "modalities": {"image": {"encoder": "tiny-cnn", "projector": "mlp", "num_tokens": 4}}},
         "data": {"train": str(data)},
         "optim": {"lr": 1e-2, "max_steps": 12, "batch_size": 4, "warmup_steps": 1},
         "output_dir": str(tmp_path / name), "log_every": 1, "eval_every": 0}
    for k, v in over.items():
        node = r
        *path, last = k.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = v
    f = tmp_path / f"{name}.yaml"
    f.write_text(yaml.safe_dump(r))
    return f


def _env(tmp_path):
    return {**os.environ, "ANYMAL_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}


def _losses(run: Path) -> list[float]:
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def test_sampler_shards_one_global_order():
    lengths = [5, 9, 2, 7, 3, 8, 1, 6]
    one = StepSampler(lengths, 4, 1, 1, 0, seed=3)
    two = [StepSampler(lengths, 2, 1, 2, r, seed=3) for r in (0, 1)]
    for _ in range(5):  # crosses epoch boundaries
        whole = one.next_step()[0]
        parts = [s.next_step()[0] for s in two]
        assert sorted(whole) == sorted(parts[0] + parts[1])
        assert [lengths[i] for i in whole] == sorted((lengths[i] for i in whole), reverse=True)  # length-grouped
    resumed = StepSampler(lengths, 4, 1, 1, 0, seed=3)
    resumed.load_state_dict(one.state_dict())
    assert resumed.next_step() == one.next_step()


def test_length_grouping_windows_cut_padding_and_keep_epochs_and_resume():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(10, 300, (640,), generator=g).tolist()

    def epoch_padding(s, steps=80):
        return padding(lengths, [b for _ in range(steps) for b in s.next_step()])

    grouped, plain = StepSampler(lengths, 8, 1, 1, 0, seed=1, window=32), StepSampler(lengths, 8, 1, 1, 0, 1, False)
    assert epoch_padding(grouped) < 1.15 < 1.5 < epoch_padding(plain)  # padded/real tokens over one epoch
    assert epoch_padding(StepSampler(lengths, 8, 1, 1, 0, 1, False)) == pytest.approx(random_padding(lengths, 8, 1))
    s = StepSampler(lengths, 8, 1, 1, 0, seed=1, window=32)
    epoch = [i for _ in range(80) for b in s.next_step() for i in b]
    assert sorted(epoch) == list(range(640))  # each sample once per epoch, windows never straddle it
    two = [StepSampler(lengths, 4, 1, 2, r, seed=1, window=32) for r in (0, 1)]
    one = StepSampler(lengths, 8, 1, 1, 0, seed=1, window=32)
    for _ in range(45):
        assert sorted(one.next_step()[0]) == sorted(two[0].next_step()[0] + two[1].next_step()[0])
    resumed = StepSampler(lengths, 8, 1, 1, 0, seed=1, window=32)
    resumed.load_state_dict(one.state_dict())  # mid-window (45 = 32 + 13)
    assert [resumed.next_step() for _ in range(40)] == [one.next_step() for _ in range(40)]


def test_padding_by_hand():
    assert padding([3, 5, 2, 2], [[0, 1], [2, 3]]) == (2 * 5 + 2 * 2) / 12


@pytest.mark.parametrize("setting,lengths,expected", [
    ("auto", [40 + i % 7 for i in range(64)], False),  # fixed-size inputs, answers of 0-6 tokens: ~1.1x
    ("auto", [30 + (i * 37) % 270 for i in range(64)], True),  # clips of 3-30 s: ~1.6x
    (True, [40] * 64, True), (False, [30 + (i * 37) % 270 for i in range(64)], False)])
def test_auto_length_grouping_groups_only_data_that_would_pad(tmp_path, images, tiny_llm_dir, setting, lengths, expected):
    cfg = load_train_config(_recipe(tmp_path, tiny_llm_dir, images, "g", **{"data.group_by_length": setting,
                                                                              "optim.batch_size": 8}))
    said = []
    assert length_grouping(cfg, lengths, said.append) is expected
    if setting == "auto":  # the decision and its reason are logged
        pad = random_padding(lengths, 8, cfg.seed)
        assert (pad > 1.25) is expected and said == [
            f"length grouping {'on' if expected else 'off'}: random batches would hold {pad:.2f} batch positions "
            f"per real token ({'above' if expected else 'not above'} data.group_min_padding 1.25)"]
    else:
        assert said == []


def test_non_finite_loss_stops_with_step_and_samples_or_is_skipped(tmp_path, images, tiny_llm_dir, monkeypatch):
    monkeypatch.setenv("ANYMAL_CACHE", str(tmp_path / "cache"))
    real, calls = AnyMAL.forward, []

    def poisoned(self, batch, objective="lm", prefix=None):
        out = real(self, batch, objective, prefix)
        calls.append(1)
        if len(calls) == 3 and batch.labels is not None:
            out.loss_sum = out.loss_sum * float("nan")
        return out

    monkeypatch.setattr(AnyMAL, "forward", poisoned)
    cfg = load_train_config(_recipe(tmp_path, tiny_llm_dir, images, "nan"))
    with pytest.raises(TrainingError, match=r"step 3: non-finite loss \(nan\); samples: .*train.jsonl:\d+"):
        train(cfg, progress=False, log=lambda *_: None)
    calls.clear()
    res = train(load_train_config(_recipe(tmp_path, tiny_llm_dir, images, "nan", on_nan="skip")),
                progress=False, log=lambda *_: None, overwrite=True)  # the stopped run left its log there
    assert res.nan_steps == 1 and torch.isfinite(torch.tensor(res.final_loss))


def test_a_run_directory_holding_a_run_needs_resume_or_overwrite(tmp_path, images, tiny_llm_dir, monkeypatch):
    from anymal.cli import main

    monkeypatch.setenv("ANYMAL_CACHE", str(tmp_path / "cache"))
    recipe = _recipe(tmp_path, tiny_llm_dir, images, "run", **{"optim.max_steps": 2})
    assert main(["train", str(recipe), "--no-progress"]) == 0
    run = tmp_path / "run"
    first = (run / "metrics.jsonl").read_text()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(TrainingError, match=r"holds an earlier run \(metrics.jsonl, checkpoint\): pass --resume"):
        train(load_train_config(recipe), progress=False, log=lambda *_: None)
    assert main(["train", str(recipe), "--no-progress"]) == 2
    assert (run / "metrics.jsonl").read_text() == first  # refused before anything was written
    assert main(["train", str(recipe), "--no-progress", "--overwrite"]) == 0
    assert (run / "notes.txt").read_text() == "mine"  # only the run's own files are replaced
    assert len(list((run / "tensorboard").iterdir())) == 1  # no event files of the earlier run mixed in


@pytest.mark.resume
def test_sigkill_then_resume_gives_the_uninterrupted_weights(tmp_path, images, tiny_llm_dir):
    env = _env(tmp_path)
    steps = 400
    straight = _recipe(tmp_path, tiny_llm_dir, images, "straight", **{"optim.max_steps": steps, "save_every": 25})
    run_cli("train", str(straight), "--no-progress", env=env)
    killed = _recipe(tmp_path, tiny_llm_dir, images, "killed", **{"optim.max_steps": steps, "save_every": 25,
                                                                  "plot_every": 25})
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH, "train", str(killed), "--no-progress"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "resume.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.3)  # let it run past the saved state, so resuming must really rewind
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert (run / "curves.png").is_file()  # drawn on the way, not only at the end
    manifest = json.loads((run / "checkpoint" / "anymal_config.json").read_text())
    partial = manifest["training"]
    assert "partial_step" in partial and partial["partial_step"] < steps  # killed mid-way
    assert manifest["lineage"][-1]["partial_of"] == steps  # a partial save names its run in the lineage
    done = run_cli("train", str(killed), "--resume", "--no-progress", env=env)
    assert "resumed at step" in done.stderr
    a = load_file(str(tmp_path / "straight" / "checkpoint" / "adapters.safetensors"))
    b = load_file(str(run / "checkpoint" / "adapters.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit-exact
    assert _losses(run) == _losses(tmp_path / "straight")  # the log reads as one run
    wrong = run_cli("train", str(killed), "--resume", "--set", "optim.lr=0.5", env=env, ok=False)
    assert wrong.returncode != 0 and "belongs to a different recipe (differs in: optim)" in wrong.stderr


@pytest.mark.distributed
@pytest.mark.parametrize("accum, strategy", [(1, "ddp"), (2, "ddp"), (1, "fsdp")])
def test_two_processes_equal_one_with_twice_the_batch(tmp_path, images, tiny_llm_dir, accum, strategy):
    env = _env(tmp_path)
    common = {"optim.max_steps": 8, "optim.grad_accum": accum, "save_every": 0, "strategy": strategy}
    one = _recipe(tmp_path, tiny_llm_dir, images, "one", n_copies=4, **{**common, "optim.batch_size": 4})
    two = _recipe(tmp_path, tiny_llm_dir, images, "two", n_copies=4, **{**common, "optim.batch_size": 2})
    run_cli("train", str(one), "--no-progress", env=env)
    res = run_cli("train", str(two), "--no-progress", env=env, torchrun=tmp_path / "launch.py")
    assert "2 process(es)" in res.stderr
    l1, l2 = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(l1) == len(l2) == 8 and l1[-1] < l1[0]
    assert l1 == pytest.approx(l2, rel=1e-5, abs=1e-6)
    a = load_file(str(tmp_path / "one" / "checkpoint" / "adapters.safetensors"))
    b = load_file(str(tmp_path / "two" / "checkpoint" / "adapters.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert json.loads((tmp_path / "two" / "checkpoint" / "anymal_config.json").read_text())["training"]["processes"] == 2


@pytest.mark.distributed
def test_no_ddp_wrapper_outlives_its_process_group(tmp_path, images, tiny_llm_dir):
    """DDP's C++ reducer frees the process group holding the GIL; when it held the last reference, gloo's
    destructor waited for a worker thread waiting for the GIL, and a rank hung at the end of its run (CI, twice)."""
    recipe = _recipe(tmp_path, tiny_llm_dir, images, "ddp", **{"optim.max_steps": 2, "optim.batch_size": 2,
                                                                 "save_every": 0, "strategy": "ddp"})
    script = tmp_path / "checked.py"
    script.write_text(PRELUDE.replace("; ", "\n") + textwrap.dedent(f"""
        import gc
        import torch.distributed as tdist
        from torch.nn.parallel import DistributedDataParallel
        from anymal.cli import main
        destroy = tdist.destroy_process_group
        def checked_destroy():
            alive = [o for o in gc.get_objects() if isinstance(o, DistributedDataParallel)]
            assert not alive, "a DDP wrapper outlives its process group"
            destroy()
            print("checked", file=sys.stderr)
        tdist.destroy_process_group = checked_destroy
        main(["train", {str(recipe)!r}, "--no-progress"])
        """))
    res = run_child([*TORCHRUN, str(script)], _env(tmp_path))
    assert res.stderr.count("checked") == 2  # both ranks tore down through the check


@pytest.mark.resume
@pytest.mark.distributed
def test_fsdp_run_resumes_from_its_gathered_state(tmp_path, images, tiny_llm_dir):
    """FSDP2 on 2 processes: resuming from the step-3 state reproduces the uninterrupted steps 4-6."""
    env = _env(tmp_path)
    recipe = _recipe(tmp_path, tiny_llm_dir, images, "fsdp", n_copies=4,
                     **{"optim.max_steps": 6, "optim.batch_size": 2, "save_every": 3, "strategy": "fsdp"})
    cmd = ("train", str(recipe), "--no-progress")
    run_cli(*cmd, env=env, torchrun=tmp_path / "launch.py")
    run = tmp_path / "fsdp"
    straight = load_file(str(run / "checkpoint" / "adapters.safetensors"))
    straight_losses = _losses(run)
    assert torch.load(run / "resume.pt", weights_only=False)["step"] == 3  # the state a kill would leave
    again = run_cli(*cmd, "--resume", env=env, torchrun=tmp_path / "launch.py")
    assert "resumed at step 3" in again.stderr
    resumed = load_file(str(run / "checkpoint" / "adapters.safetensors"))
    assert all(torch.allclose(straight[k], resumed[k], atol=1e-6) for k in straight)
    assert _losses(run) == pytest.approx(straight_losses, rel=1e-6)


def test_pretrain_refuses_a_directory_holding_an_earlier_pretraining_run(tmp_path, capsys):
    from anymal.cli import main

    run = tmp_path / "pre"
    run.mkdir()
    (run / "eval.json").write_text("{}")
    (run / "notes.txt").write_text("mine")
    assert main(["pretrain", "imu", "--out", str(run), "--data", str(tmp_path / "no-data")]) == 2
    assert "holds an earlier run (eval.json): pass --overwrite" in capsys.readouterr().err
    assert (run / "eval.json").exists()  # refused before anything was touched
    main(["pretrain", "imu", "--out", str(run), "--data", str(tmp_path / "no-data"), "--overwrite"])
    assert not (run / "eval.json").exists() and (run / "notes.txt").read_text() == "mine"


def test_a_missing_manifest_is_named_with_its_build_command_before_the_model_loads(tmp_path, monkeypatch):
    """The README's quick start stopped at `data/emoji/train.jsonl: manifest not found` after the model
    had loaded: every manifest is checked first, and a project dataset's build command named."""
    from anymal.config import load_train_config
    from anymal.errors import DataError
    from anymal.train import loop

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "tuxpaint").mkdir(parents=True)
    (tmp_path / "data" / "tuxpaint" / "train.jsonl").write_text("{}\n")
    monkeypatch.setattr(loop, "build_model", lambda *a: pytest.fail("the model was built"))
    cfg = load_train_config("tuxpaint-align")
    with pytest.raises(DataError, match=r"data/emoji/train.jsonl, data/tuxpaint/val.jsonl: manifest not found; "
                                        r"build it with `anymal data build emoji && anymal data build tuxpaint`"):
        loop.train(cfg, progress=False, log=lambda *_: None)
