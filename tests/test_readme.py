"""The README's examples run, and its demo output is what `anymal demo` prints today."""
from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import soundfile as sf

from anymal import AnyMAL
from anymal.cli import main
from anymal.paths import PACKAGE_DIR
from test_serve import KEY, Server

README = (PACKAGE_DIR.parent / "README.md").read_text()
EXAMPLES = PACKAGE_DIR / "assets" / "examples"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, re.S)


@pytest.fixture
def readme_files(tmp_path, monkeypatch):
    """The files the README's examples name, made from the bundled examples, in the working directory."""
    for name, src in (("duck.png", "goat.png"), ("goose.png", "sheep.jpg"), ("view.png", "umbrella.png"),
                      ("truck.png", "truck.png"), ("walk.csv", "walking-upstairs.csv")):
        shutil.copy(EXAMPLES / src, tmp_path / name)
    wave, rate = sf.read(EXAMPLES / "cow-sound.flac")
    sf.write(tmp_path / "quack.wav", wave, rate)
    np.save(tmp_path / "walk.npy", np.loadtxt(EXAMPLES / "walking-upstairs.csv", delimiter=",", skiprows=1)[:, 1:7])
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_python_api_example_runs(every_modality, readme_files, monkeypatch):
    real = AnyMAL.from_pretrained.__func__
    monkeypatch.setattr(AnyMAL, "from_pretrained", classmethod(
        lambda cls, path=None, **kw: every_modality if path is None else real(cls, path, **kw)))
    api = next(b for b in _python_blocks() if "AnyMAL.from_pretrained()" in b)
    namespace = {"other_messages": [{"role": "user", "content": "Hello?"}]}
    exec(compile(api, "README.md (Python API)", "exec"), namespace)  # noqa: S102 (our own README)
    assert (readme_files / "my-adapter" / "adapters.safetensors").is_file()


def test_the_openai_client_example_runs(every_modality, readme_files, capsys):
    client = next(b for b in _python_blocks() if "openai.OpenAI" in b)
    with Server(every_modality) as s:
        code = client.replace("http://127.0.0.1:8000", s.url).replace('"sk-..."', repr(KEY)).replace(
            '"anymal-default"', '"tiny"')
        exec(compile(code, "README.md (OpenAI client)", "exec"), {})  # noqa: S102
    assert "modality_tokens" in capsys.readouterr().out


@pytest.mark.integration
def test_the_readme_demo_output_is_current(default_model, monkeypatch, capsys):
    block = re.search(r"`anymal demo` answers about.*?```text\n(.*?)```", README, re.S).group(1)
    monkeypatch.setattr("anymal.cli.chat.load_model", lambda path: default_model)
    assert main(["demo"]) == 0
    assert capsys.readouterr().out == block


def _train_quick_start() -> list[list[str]]:
    """The `anymal` commands of the README's "Train, in one screen" block that run on this machine (not the
    torchrun or GPU lines, nor --resume of a finished run), split at `&&`, comments dropped."""
    import shlex

    block = re.search(r"## Train, in one screen\n\n```bash\n(.*?)```", README, re.S).group(1)
    commands = []
    for line in block.splitlines():
        line = line.split("  #")[0].strip()
        if line.startswith("anymal ") and "--resume" not in line:
            commands += [shlex.split(c)[1:] for c in line.split("&&")]
    return commands


@pytest.mark.integration
def test_the_readme_training_quick_start_runs_as_written(tmp_path, monkeypatch, capsys):
    """Build both datasets, train the shipped recipe by name, evaluate it with baselines: only the step count
    (100 -> 2) and the number of test items (--limit 4) are cut, for CI's time."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANYMAL_CACHE", str(tmp_path / "cache"))
    commands = _train_quick_start()
    assert [c[0] for c in commands] == ["data", "data", "train", "eval"]
    for argv in commands:
        argv = [a.replace("optim.max_steps=100", "optim.max_steps=2") for a in argv]
        argv += ["--limit", "4", "--no-progress"] if argv[0] == "eval" else ["--no-progress"] if argv[0] == "train" else []
        assert main(argv) == 0, argv
    assert "(n=4, skipped=0)" in capsys.readouterr().err
    assert (tmp_path / "runs" / "tuxpaint-align" / "checkpoint" / "adapters.safetensors").is_file()
