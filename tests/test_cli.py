"""`anymal` CLI on a tiny checkpoint: replies on stdout, errors as one line on stderr with exit 2."""
import json

import pytest

from anymal.cli import main


@pytest.fixture
def ckpt(tiny_model, tmp_path):
    return tiny_model.save_pretrained(tmp_path / "ck", stage="align")


def test_chat_prints_only_the_reply(ckpt, images, capsys):
    assert main(["chat", "--model", str(ckpt), "--image", str(images[0]), "--max-new-tokens", "4", "What is this?"]) == 0
    out, err = capsys.readouterr()
    assert out.endswith("\n") and len(out.splitlines()) >= 1 and "Loading" not in out


def test_chat_json_and_two_images(ckpt, images, capsys):
    args = ["chat", "--model", str(ckpt), "--image", str(images[0]), "--image", str(images[1]), "--json",
            "--max-new-tokens", "4", "Compare them."]
    assert main(args) == 0
    rec = json.loads(capsys.readouterr().out)
    assert isinstance(rec["reply"], str) and [i["path"] for i in rec["inputs"]] == [str(images[0]), str(images[1])]


@pytest.mark.parametrize("kind", ["corrupt", "missing", "notimage"])
def test_unreadable_image_is_one_line_error(ckpt, images, tmp_path, capsys, kind):
    bad = tmp_path / "bad.png"
    if kind == "corrupt":
        bad.write_bytes(images[0].read_bytes()[:70])
    elif kind == "notimage":
        bad.write_text("hello")
    code = main(["chat", "--model", str(ckpt), "--image", str(bad), "What?"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("anymal: error: ") and "bad.png" in err


def test_unknown_model_dir_and_manifest_mismatch(ckpt, tmp_path, capsys):
    assert main(["chat", "--model", str(tmp_path / "nope"), "Hi"]) == 2
    assert "no such directory" in capsys.readouterr().err
    mf = ckpt / "anymal_config.json"
    m = json.loads(mf.read_text())
    m["llm"]["hidden_size"] = 4096
    mf.write_text(json.dumps(m))
    assert main(["chat", "--model", str(ckpt), "Hi"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "hidden_size: checkpoint 4096, loaded 32" in err and "Fix:" in err


def test_info(ckpt, capsys):
    assert main(["info", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert "stage: align" in out and "tiny-cnn (24-d x 16 tokens) -> mlp projector" in out


def test_repl_multi_turn_with_attached_image(ckpt, images, monkeypatch, capsys):
    lines = iter([f"/image {images[0]}", "What is this?", "/image /does/not/exist.png", "And now?", "/quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert main(["chat", "--model", str(ckpt), "--max-new-tokens", "3"]) == 0
    out, err = capsys.readouterr()
    assert out.count("anymal> ") == 2 and "exist.png: no such file" in err


def test_mixed_inputs_keep_command_line_order(tiny_llm_dir, images, tmp_path, capsys):
    import numpy as np
    import torch

    from anymal import AnyMAL
    from anymal.config import LLMConfig, ModalityConfig, ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig(llm=LLMConfig(id=str(tiny_llm_dir), max_length=256), modalities={
        "image": ModalityConfig(encoder="tiny-cnn", num_tokens=4),
        "audio": ModalityConfig(encoder="tiny-seq", projector="linear", num_tokens=8)})
    ck = AnyMAL.from_config(cfg).save_pretrained(tmp_path / "ck2", stage="align")
    clip = tmp_path / "clip.npy"
    np.save(clip, np.ones(20, np.float32))
    args = ["chat", "--model", str(ck), "--audio", str(clip), "--image", str(images[0]), "--audio", str(clip),
            "--json", "--max-new-tokens", "3", "Which came first?"]
    assert main(args) == 0
    rec = json.loads(capsys.readouterr().out)
    assert [i["type"] for i in rec["inputs"]] == ["audio", "image", "audio"]
    assert main(["chat", "--model", str(ck), "--imu", str(clip), "Hi"]) == 2  # this model has no IMU adapter
    assert "unknown part type 'imu'" in capsys.readouterr().err


def test_data_build_options_are_checked(capsys):
    assert main(["data", "build", "emoji", "--out", "/tmp/x", "--opt", "colour=red"]) == 2
    err = capsys.readouterr().err
    assert "dataset 'emoji' has no option colour; its options:" in err and "variants" in err
    assert main(["data", "build", "emoji", "--opt", "novalue"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_eval_suite_cli_errors_are_clean(capsys):
    assert main(["eval", "--suite", "nope"]) == 2
    assert "unknown suite 'nope'" in capsys.readouterr().err
    assert main(["eval", "--suite", "default", "--data", "x.jsonl"]) == 2
    assert "--data names one task's manifest" in capsys.readouterr().err


def _commands(parser, path=()):
    """Every (sub)command path of the parser, e.g. ('data', 'build', 'magnifier')."""
    import argparse

    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, path + (name,))


def test_every_commands_help_prints(capsys):
    from anymal.cli import build_parser

    paths = list(_commands(build_parser()))
    assert ("data", "build", "magnifier") in paths and ("serve",) in paths  # the walk reaches the leaves
    for path in paths:
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args([*path, "--help"])
        assert e.value.code == 0, path
        assert "usage: anymal" in capsys.readouterr().out


def test_the_command_line_parses_without_loading_the_model_stack():
    """`import anymal` and building every subcommand's flags import neither torch nor transformers (so
    `anymal --help` and argument errors are instant); the model stack loads when a command needs it."""
    import subprocess
    import sys

    code = ("import sys, anymal; from anymal.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    from anymal import AnyMAL, GenerationSettings  # the facade still hands them out

    assert AnyMAL.__name__ == "AnyMAL" and GenerationSettings().max_new_tokens > 0


def test_recipes_lists_the_shipped_ones(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("all-modalities") and "tuxpaint-align               Stage 1 (alignment)" in out
