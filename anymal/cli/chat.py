"""`anymal chat` (one prompt or a REPL) and `anymal demo` (the bundled held-out examples)."""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from pathlib import Path

from ..errors import AnymalError
from ..modalities import AUDIO, IMAGE, IMU, MODALITIES, POINTS, VIDEO
from .common import generation_args, load_model, model_args, settings


class _Input(argparse.Action):
    """`--image a.png --audio b.wav --image c.png`: one list, in command-line order."""

    def __call__(self, parser, namespace, value, option_string=None):
        items = list(getattr(namespace, "inputs", None) or [])
        items.append((self.dest, value))
        setattr(namespace, "inputs", items)


def _media(a) -> list:
    from ..model.messages import soundtrack

    media, rates = [], _rates(a)
    for name, path in getattr(a, "inputs", None) or []:
        if not Path(path).is_file():  # fail fast, before the model loads
            raise AnymalError(f"{path}: no such file")
        m = MODALITIES.get(name)
        media.append(_part(m, path, rates))
        if m.soundtrack and getattr(a, f"{name}_{m.soundtrack}", False):
            media += soundtrack(path, {m.soundtrack}, f"--{name} {path}")
    return media


def _rates(a) -> dict[str, float]:
    """The --NAME-rate values given, by modality."""
    return {m.name: r for m in MODALITIES.values() if m.takes_rate and (r := getattr(a, f"{m.name}_rate")) is not None}


def _part(m, path: str, rates: dict[str, float]):
    from ..model.messages import MediaPart

    return MediaPart(m.name, (path, rates[m.name]) if m.name in rates else path)


def _path_of(part) -> str:
    src = part.source[0] if isinstance(part.source, tuple) else part.source
    return str(src) if isinstance(src, (str, Path)) else "<in-memory waveform>"


def cmd_chat(a) -> int:
    from ..model.messages import from_prompt

    s = settings(a)  # checked before the model loads, as the inputs are
    media = _media(a)
    model = load_model(a, lazy=True)  # a text question never loads the encoders
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
    return _repl(model, s, media, _rates(a))


REPL_HELP = (f"/image PATH (or {', '.join('/' + m.name for m in MODALITIES.values() if m is not IMAGE)}) "
             "attaches an input to the next message, which then starts the conversation afresh; /reset "
             "clears the conversation, /help shows this, /quit (or Ctrl-D) exits; Ctrl-C stops an answer; "
             "Up/Down recall earlier lines (kept across sessions), Tab completes commands and paths.")


def history_file() -> Path:
    """Where the REPL keeps the lines typed across sessions: $ANYMAL_HISTORY, else the XDG state dir."""
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return Path(os.environ.get("ANYMAL_HISTORY") or state / "anymal" / "history")


def _complete(text: str, state: int) -> str | None:
    """Tab completion: /commands at the start of a line, file paths after a modality command."""
    import readline

    line = readline.get_line_buffer()
    if " " not in line.lstrip():
        options = [c for c in ["/" + m.name for m in MODALITIES.values()] + ["/reset", "/help", "/quit"]
                   if c.startswith(text)]
    else:
        options = [p + ("/" if os.path.isdir(p) else "") for p in sorted(glob.glob(os.path.expanduser(text) + "*"))]
    return options[state] if state < len(options) else None


def _line_editing() -> Path | None:
    """On a terminal: readline editing (arrows, Ctrl-A/E/R...), the history of earlier sessions and tab
    completion; the history file to write back at the end (None: not a terminal, or no readline)."""
    if not sys.stdin.isatty():
        return None
    try:
        import readline
    except ImportError:  # e.g. Windows without pyreadline3: plain input() still works
        return None
    path = history_file()
    try:
        readline.read_history_file(path)
    except OSError:
        pass  # the first session, or an unreadable file: start empty
    readline.set_history_length(1000)
    readline.set_completer(_complete)
    readline.set_completer_delims(" \t\n")
    readline.parse_and_bind("tab: complete")
    return path


def _save_history(path: Path | None) -> None:
    if path is None:
        return
    import readline

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        readline.write_history_file(path)
    except OSError as e:
        print(f"(history not saved: {path}: {e.strerror})", file=sys.stderr)


def _repl(model, s, media, rates: dict[str, float] | None = None) -> int:
    print(f"anymal chat — {REPL_HELP}", file=sys.stderr)
    saved = _line_editing()
    try:
        return _turns(model, s, media, rates)
    finally:
        _save_history(saved)


def _turns(model, s, media, rates: dict[str, float] | None) -> int:
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
            if _command(line, pending, rates or {}):
                return 0
            if line == "/reset":
                history = []
            continue
        conversation = with_question(history, pending, line)
        pending.clear()
        reply = _answer(model, conversation, s)
        if reply is not None:  # a failed or stopped turn leaves the conversation as it was
            history = conversation + [{"role": "assistant", "content": reply}]


def with_question(history: list[dict], attached: list, line: str) -> list[dict]:
    """The conversation to send for a new line. A line that attaches input starts it afresh: the
    shipped model answers about every input it is shown, and earlier turns kept even as text (the
    old question and answer, "(earlier input: truck.png)") still pull its answer back to the old
    input. A line without input continues the conversation, about the input attached last."""
    parts = [{"type": m.modality, "path": m.source} for m in attached]  # (input, rate) pairs stay pairs
    earlier = [] if attached else history
    return earlier + [{"role": "user", "content": parts + [{"type": "text", "text": line}]}]


def _command(line: str, pending: list, rates: dict[str, float]) -> bool:
    """Carry out a REPL command; whether it ends the session."""
    cmd, _, arg = line.partition(" ")
    if cmd in ("/quit", "/exit"):
        return True
    if cmd == "/reset":
        pending.clear()
    elif cmd[1:] in MODALITIES:
        if not Path(arg).is_file():
            print(f"error: {arg or 'PATH'}: no such file", file=sys.stderr)
        else:
            pending.append(_part(MODALITIES.get(cmd[1:]), arg, rates))
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
    *[([(IMAGE.name, f)], "What is this?") for f in ("goat.png", "strawberry.png", "truck.png", "umbrella.png",
                                                  "sheep.jpg", "hedgehog.jpg", "cup.jpg", "scissors.jpg")],
    ([(IMAGE.name, "strawberry.png")], "What colour is it?"),
    ([(IMAGE.name, "truck.png")], "What colour is the truck?"),
    ([(IMAGE.name, "sheep.jpg")], "Is there a sheep in this picture?"),
    ([(IMAGE.name, "sheep.jpg")], "Is there a dog in this picture?"),
    ([(IMAGE.name, "scissors.jpg")], "How many pairs of scissors are there?"),
    ([(AUDIO.name, "cow-sound.flac")], "What makes this sound?"),
    ([(AUDIO.name, "goat-sound.flac")], "What makes this sound?"),
    ([(AUDIO.name, "speech-call-forward.flac")], "Transcribe this audio."),
    ([(AUDIO.name, "speech-unseen-voice.flac")], "Transcribe this audio."),
    ([(VIDEO.name, "goat-moving-up.mp4")], "Describe the video briefly."),
    ([(VIDEO.name, "horse-moving-right.mp4")], "Describe the video briefly."),
    ([(VIDEO.name, "horse-moving-right.mp4")], "What is in this video?"),
    ([(IMU.name, "walking-upstairs.csv")], "What is the person doing?"),
    ([(POINTS.name, "bench.npy")], "What is this 3D object?"),
    ([(IMAGE.name, "umbrella.png"), (IMU.name, "walking-upstairs.csv")], "Given what I see and how I'm moving, what am I doing?"),
]


def cmd_demo(a) -> int:
    from ..model.messages import MediaPart, from_prompt
    from ..paths import PACKAGE_DIR

    model = load_model(a)
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
    model_args(c)
    for m in MODALITIES.values():
        c.add_argument(f"--{m.name}", action=_Input, metavar="PATH", help=f"{m.summary} (repeatable; order is kept)")
        if m.soundtrack:
            c.add_argument(f"--{m.name}-{m.soundtrack}", action="store_true",
                           help=f"also give each --{m.name}'s own {m.soundtrack} track (as an input right after it)")
        if m.takes_rate:
            c.add_argument(f"--{m.name}-rate", type=float, metavar="HZ",
                           help=f"sample rate of --{m.name} files without their own clock (e.g. .npy, CSV without t)")
    generation_args(c, max_new_tokens=128)
    c.add_argument("--json", action="store_true", help="print {'reply': ...} as JSON")
    c.set_defaults(fn=cmd_chat)

    dm = sub.add_parser("demo", help="answer about the bundled held-out examples (every modality) with the shipped model")
    model_args(dm)
    generation_args(dm, max_new_tokens=40)
    dm.set_defaults(fn=cmd_demo)
