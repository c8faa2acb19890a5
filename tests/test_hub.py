"""Models by Hugging Face Hub id, offline: a hub cache this test populates itself (the layout
huggingface_hub writes: models--ORG--NAME/{refs,snapshots}), read with HF_HUB_OFFLINE=1 by the API and
the CLI in fresh processes; and `anymal push` handing a checkpoint folder to huggingface_hub."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from anymal.cli import main
from anymal.errors import CheckpointError
from anymal.model.hub import push_checkpoint, resolve_checkpoint
from conftest import run_cli, run_python



@pytest.fixture(scope="module")
def hub(tiny_llm_dir, tmp_path_factory):
    """A hub cache holding org/tiny at main (stage align) and at tag v1 (stage instruct-proj)."""
    from anymal import AnyMAL
    from conftest import tiny_config

    tiny_model = AnyMAL.from_config(tiny_config(tiny_llm_dir))
    root = tmp_path_factory.mktemp("hub")
    repo = root / "models--org--tiny"
    for commit, ref, stage in (("a" * 40, "main", "align"), ("b" * 40, "v1", "instruct-proj")):
        tiny_model.save_pretrained(repo / "snapshots" / commit, stage=stage)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return root


def _run(hub: Path, code: str = "", *cli: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return run_python(code, env, ok=False) if code else run_cli(*cli, env=env, ok=False)


def test_a_hub_id_loads_offline_from_the_cache_at_a_revision(hub):
    r = _run(hub, "from anymal import AnyMAL; print(AnyMAL.from_pretrained('org/tiny').stage, "
                  "AnyMAL.from_pretrained('org/tiny', revision='v1').stage)")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["align", "instruct-proj"]
    r = _run(hub, "", "chat", "--model", "org/tiny", "--revision", "v1", "Hi", "--max-new-tokens", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    r = _run(hub, "", "info", "org/tiny", "--revision", "v1")
    assert r.returncode == 0 and "stage: instruct-proj" in r.stdout, r.stderr[-2000:]
    r = _run(hub, "", "chat", "--model", "org/missing", "Hi")
    assert r.returncode == 2 and "org/missing: no such local directory" in r.stderr
    assert "not in the cache" in r.stderr and "HF_HUB_OFFLINE is set" in r.stderr


def test_a_local_directory_wins_over_a_hub_id_of_the_same_name(tmp_path, monkeypatch):
    (tmp_path / "org" / "tiny").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert resolve_checkpoint("org/tiny") == Path("org/tiny")
    with pytest.raises(CheckpointError, match="--revision applies to Hugging Face Hub ids"):
        resolve_checkpoint("org/tiny", revision="v1")


class FakeApi:
    calls: list = []

    def create_repo(self, repo_id, private=False, exist_ok=False):
        self.calls.append(("create_repo", repo_id, private, exist_ok))

    def upload_folder(self, repo_id, folder_path, revision=None, commit_message=""):
        self.calls.append(("upload_folder", repo_id, sorted(p.name for p in Path(folder_path).iterdir()), commit_message))
        return type("Info", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/c0ffee"})()


def test_push_hands_a_checkpoint_folder_to_huggingface_hub(hub, tmp_path, monkeypatch, capsys):
    """The upload itself needs the network: here huggingface_hub's API object is replaced by one that
    records what it was asked to do."""
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    FakeApi.calls = []
    ckpt = next((hub / "models--org--tiny" / "snapshots").iterdir())
    assert main(["push", str(ckpt), "me/tiny", "--private"]) == 0
    assert capsys.readouterr().out.strip() == "https://huggingface.co/me/tiny/commit/c0ffee"
    files = sorted(p.name for p in ckpt.iterdir())
    assert FakeApi.calls == [("create_repo", "me/tiny", True, True),
                             ("upload_folder", "me/tiny", files, "anymal checkpoint (stage align)")]
    (tmp_path / "junk").mkdir()
    with pytest.raises(CheckpointError, match="not an anymal checkpoint"):
        push_checkpoint(tmp_path / "junk", "me/junk")
    assert len(FakeApi.calls) == 2  # nothing was created for a folder that is not a checkpoint
