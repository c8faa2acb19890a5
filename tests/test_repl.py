"""The chat REPL in a real terminal (tmux): readline editing, history kept across sessions, tab
completion of commands, /help answered locally, Ctrl-D leaving cleanly; each question sent with the
input attached to it, not every earlier one."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time

import pytest
from conftest import LAUNCH, PRELUDE

from anymal.cli.chat import with_question
from anymal.model.messages import MediaPart

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (scripts/install.sh)")
# the anymal CLI, writing each conversation AnyMAL.stream is given to $SENT, one JSON line per answer
SPY = PRELUDE + """import json, os
from anymal import AnyMAL
_stream = AnyMAL.stream
def stream(self, messages, settings=None):
    with open(os.environ["SENT"], "a") as f:
        f.write(json.dumps(messages, default=str) + "\\n")
    return _stream(self, messages, settings)
AnyMAL.stream = stream
from anymal.cli import main; sys.exit(main(sys.argv[1:]))"""


class Terminal:
    """One tmux session on its own server socket, running a command; keys in, screen out."""

    def __init__(self, command: list[str], env: dict[str, str], name: str):
        self.tmux = ["tmux", "-L", f"anymal-test-{os.getpid()}-{name}"]
        line = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " " + shlex.join(command)
        subprocess.run([*self.tmux, "new-session", "-d", "-s", name, "-x", "200", "-y", "50", line], check=True)
        self.name = name

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.name, *keys], check=True)

    def screen(self) -> str:
        r = subprocess.run([*self.tmux, "capture-pane", "-p", "-t", self.name], capture_output=True, text=True)
        return r.stdout

    def wait_for(self, text: str, count: int = 1, timeout: float = 120) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            screen = self.screen()
            if screen.count(text) >= count:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} x{count} never appeared; screen:\n{self.screen()}")

    def alive(self) -> bool:
        return subprocess.run([*self.tmux, "has-session", "-t", self.name], capture_output=True).returncode == 0

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


def _session(tiny_checkpoint, tmp_path, name: str, code: str = LAUNCH) -> Terminal:
    env = {"ANYMAL_HISTORY": str(tmp_path / "history"), "ANYMAL_CACHE": str(tmp_path / "cache"),
           "OMP_NUM_THREADS": "1", "PATH": os.environ["PATH"], "HOME": str(tmp_path), "SENT": str(tmp_path / "sent")}
    return Terminal([sys.executable, "-c", code, "chat", "--model", str(tiny_checkpoint), "--max-new-tokens", "3"],
                    env, name)


@needs_tmux
def test_the_repl_edits_lines_keeps_history_and_completes_commands(tiny_checkpoint, tmp_path):
    t = _session(tiny_checkpoint, tmp_path, "first")
    try:
        t.wait_for("you>")
        t.keys("Hello thxre", "Left", "Left", "BSpace", "e", "End", " now", "Enter")  # edited in place
        t.wait_for("anymal>")
        t.wait_for("you>", 2)
        t.keys("/he", "Tab", "Enter")  # completed to /help, answered here, not by the model
        screen = t.wait_for("Tab completes commands")
        assert screen.count("anymal>") == 1
        t.keys("Up", "Up")  # back to the first line
        assert "you> Hello there now" in t.wait_for("you> Hello there now")
        t.keys("C-u", "C-d")
        deadline = time.time() + 30
        while t.alive() and time.time() < deadline:
            time.sleep(0.1)
        assert not t.alive()
    finally:
        t.close()
    assert (tmp_path / "history").read_text().splitlines()[-2:] == ["Hello there now", "/help"]

    t = _session(tiny_checkpoint, tmp_path, "second")  # a new session recalls the last one's lines
    try:
        t.wait_for("you>")
        t.keys("Up")
        assert "you> /help" in t.wait_for("you> /help")
    finally:
        t.close()


def _user(*media: str, text: str) -> dict:
    return {"role": "user", "content": [{"type": "image", "path": m} for m in media] + [{"type": "text", "text": text}]}


def test_a_question_with_new_input_starts_the_conversation_afresh():
    truck = [_user("truck.png", text="What is this?"), {"role": "assistant", "content": "A pickup truck."}]
    assert with_question(truck, [MediaPart("points", "bench.npy")], "And this?") == [
        {"role": "user", "content": [{"type": "points", "path": "bench.npy"}, {"type": "text", "text": "And this?"}]}]
    # a follow-up without input stays about the input attached last
    assert with_question(truck, [], "What color is it?") == [*truck, _user(text="What color is it?")]
    assert with_question([], [MediaPart("imu", ("walk.npy", 50.0))], "Hi")[0]["content"][0] == {
        "type": "imu", "path": ("walk.npy", 50.0)}  # a rate stays with its input


@needs_tmux
def test_the_repl_sends_each_question_with_its_own_input(tiny_checkpoint, images, tmp_path):
    t = _session(tiny_checkpoint, tmp_path, "inputs", SPY)
    try:
        for i, line in enumerate([f"/image {images[0]}", "What is this?", f"/image {images[1]}", "And this?",
                                  "What color is it?", "/reset", "Hello"]):
            t.wait_for("you>", i + 1)
            t.keys(line, "Enter")
        t.wait_for("anymal>", 4)
        t.wait_for("you>", 8)
    finally:
        t.close()
    sent = [json.loads(line) for line in (tmp_path / "sent").read_text().splitlines()]
    media = [[p["path"] for m in conv if m["role"] == "user" for p in m["content"] if p["type"] == "image"]
             for conv in sent]
    assert media == [[str(images[0])], [str(images[1])], [str(images[1])], []]
    assert [len(conv) for conv in sent] == [1, 1, 3, 1]  # the follow-up keeps its question and answer
