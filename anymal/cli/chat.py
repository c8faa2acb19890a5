"""`anymal chat` (one prompt or a REPL) and `anymal demo` (the bundled held-out examples)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import AnymalError
from .common import generation_args, load_model, settings

MODALITY_FLAGS = ["image", "audio", "video", "imu", "points"]


class _Input(argparse.Action):
    """`--image a.png --audio b.wav --image c.png`: one list, in command-line order."""

    def __call__(self, parser, namespace, value, option_string=None):
        items = list(getattr(namespace, "inputs", None) or [])
        items.append((self.dest, value))
        setattr(namespace, "inputs", items)


def _media(a) -> list:
    from ..model.messages import MediaPart, soundtrack

    media = []
    for modality, path in getattr(a, "inputs", None) or []:
        if not Path(path).is_file():  # fail fast, before the model loads
            raise AnymalError(f"{path}: no such file")
        rate = a.imu_rate if modality == "imu" else None
        media.append(MediaPart(modality, (path, rate) if rate is not None else path))
        if modality == "video" and getattr(a, "video_audio", False):
            media += soundtrack(path, {"audio"}, f"--video {path}")
    return media


def _path_of(part) -> str:
    src = part.source[0] if isinstance(part.source, tuple) else part.source
    return str(src) if isinstance(src, (str, Path)) else "<in-memory waveform>"


def cmd_chat(a) -> int:
    from ..model.messages import from_prompt

    s = settings(a)  # checked before the model loads, as the inputs are
    media = _media(a)
    model = load_model(a.model)
    if a.prompt is not None:
        messages = from_prompt(a.prompt, media)
        if a.json:
            reply = model.generate([messages], s)[0]
            print(json.dumps({"reply": reply, "model": str(a.model or "default"),
                              "inputs": [{"type": m.modality, "path": _path_of(m)} for m in media]}))
        else:
            for piece in model.stream(messages, s):
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
        return 0
    return _repl(model, s, media, a.imu_rate)


REPL_HELP = ("/image PATH (or /audio, /video, /imu, /points) attaches an input to the next message, "
             "/reset clears the conversation, /help shows this, /quit (or Ctrl-D) exits; Ctrl-C stops an answer.")


def _repl(model, s, media, imu_rate: float | None = None) -> int:
    print(f"anymal chat — {REPL_HELP}", file=sys.stderr)
    history: list[dict] = []
    pending = list(media)
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            return 0
        except KeyboardInterrupt:  # at the prompt: a fresh line, not the end of the session
            print("\n(/quit or Ctrl-D exits)", file=sys.stderr)
            continue
        if not line:
            continue
        if line.startswith("/"):  # a command never reaches the model
            if _command(line, pending, imu_rate):
                return 0
            if line == "/reset":
                history = []
            continue
        parts = [{"type": m.modality, "path": m.source} for m in pending] + [{"type": "text", "text": line}]
        pending.clear()
        history.append({"role": "user", "content": parts})
        reply = _answer(model, history, s)
        if reply is None:
            history.pop()
        else:
            history.append({"role": "assistant", "content": reply})


def _command(line: str, pending: list, imu_rate: float | None) -> bool:
    """Carry out a REPL command; whether it ends the session."""
    from ..model.messages import MediaPart

    cmd, _, arg = line.partition(" ")
    if cmd in ("/quit", "/exit"):
        return True
    if cmd == "/reset":
        pending.clear()
    elif cmd[1:] in MODALITY_FLAGS:
        if not Path(arg).is_file():
            print(f"error: {arg or 'PATH'}: no such file", file=sys.stderr)
        else:
            rate = imu_rate if cmd == "/imu" else None
            pending.append(MediaPart(cmd[1:], (arg, rate) if rate is not None else arg))
    else:
        print(("" if cmd == "/help" else f"unknown command {cmd}; ") + REPL_HELP, file=sys.stderr)
    return False


def _answer(model, history: list[dict], s) -> str | None:
    """Stream the reply to stdout; None when it failed or was stopped (the turn is then dropped)."""
    sys.stdout.write("anymal> ")
    reply = ""
    try:
        for piece in model.stream(history, s):
            reply += piece
            sys.stdout.write(piece)
            sys.stdout.flush()
    except AnymalError as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return None
    except KeyboardInterrupt:
        print("\n(stopped)", file=sys.stderr)
        return None
    sys.stdout.write("\n")
    return reply


# (inputs as (modality, example file), question): every example is from a held-out test split
DEMO = [
    *[([("image", f)], "What is this?") for f in ("goat.png", "strawberry.png", "truck.png", "umbrella.png",
                                                  "sheep.jpg", "hedgehog.jpg", "cup.jpg", "scissors.jpg")],
    ([("audio", "cow-sound.flac")], "What makes this sound?"),
    ([("audio", "goat-sound.flac")], "What makes this sound?"),
    ([("audio", "speech-call-forward.flac")], "Transcribe this audio."),
    ([("audio", "speech-unseen-voice.flac")], "Transcribe this audio."),
    ([("video", "goat-moving-up.mp4")], "Describe the video briefly."),
    ([("video", "horse-moving-right.mp4")], "Describe the video briefly."),
    ([("imu", "walking-upstairs.csv")], "What is the person doing?"),
    ([("points", "bench.npy")], "What is this 3D object?"),
    ([("image", "umbrella.png"), ("imu", "walking-upstairs.csv")], "Given what I see and how I'm moving, what am I doing?"),
]


def cmd_demo(a) -> int:
    from ..model.messages import MediaPart, from_prompt
    from ..paths import PACKAGE_DIR

    model = load_model(a.model)
    examples = PACKAGE_DIR / "assets" / "examples"
    for inputs, question in DEMO:
        if any(m not in model.projectors for m, _ in inputs):
            continue  # a checkpoint without that adapter
        media = [MediaPart(m, str(examples / f)) for m, f in inputs]
        reply = model.generate([from_prompt(question, media)], settings(a))[0]
        print(f"[{' + '.join(f for _, f in inputs)}] {question} -> {reply}")
    question = "In one sentence, what can you do?"
    print(f"[no input] {question} -> {model.chat(question, settings=settings(a))}")
    return 0


def add_parsers(sub) -> None:
    c = sub.add_parser("chat", help="ask about images, audio, video, IMU and 3-D inputs (one prompt, or a REPL)")
    c.add_argument("prompt", nargs="?")
    c.add_argument("--model", help="checkpoint directory (default: the shipped adapters)")
    for m in MODALITY_FLAGS:
        c.add_argument(f"--{m}", action=_Input, metavar="PATH", help=f"{m} input (repeatable; order is kept)")
    c.add_argument("--video-audio", action="store_true",
                   help="also give each --video's own audio track (as an audio input right after it)")
    c.add_argument("--imu-rate", type=float, metavar="HZ",
                   help="sample rate of --imu files that have no t column (.npy, CSV without t)")
    generation_args(c, max_new_tokens=128)
    c.add_argument("--json", action="store_true", help="print {'reply': ...} as JSON")
    c.set_defaults(fn=cmd_chat)

    dm = sub.add_parser("demo", help="answer about the bundled held-out examples (every modality) with the shipped model")
    dm.add_argument("--model")
    generation_args(dm, max_new_tokens=40)
    dm.set_defaults(fn=cmd_demo)
