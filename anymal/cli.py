"""The `anymal` command: chat, train, eval, data, info, demo."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import AnymalError

MODALITY_FLAGS = ["image"]  # later issues add audio, video, imu, points


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _settings(a):
    from .model.generation import GenerationSettings

    return GenerationSettings(max_new_tokens=a.max_new_tokens, temperature=a.temperature, top_p=a.top_p,
                              repetition_penalty=a.repetition_penalty, seed=a.seed, stop=a.stop or [])


def _load_model(path: str | None):
    from .model.anymal import AnyMAL

    return AnyMAL.from_pretrained(path)


def cmd_chat(a) -> int:
    from .model.messages import MediaPart, from_prompt

    media = [MediaPart(m, p) for m in MODALITY_FLAGS for p in (getattr(a, m) or [])]
    for part in media:  # fail fast, before the model loads, on unreadable inputs
        if not Path(part.source).is_file():
            raise AnymalError(f"{part.source}: no such file")
    model = _load_model(a.model)
    s = _settings(a)
    if a.prompt is not None:
        messages = from_prompt(a.prompt, media)
        if a.json:
            reply = model.generate([messages], s)[0]
            print(json.dumps({"reply": reply, "model": str(a.model or "default"),
                              "inputs": [{"type": m.modality, "path": str(m.source)} for m in media]}))
        else:
            for piece in model.stream(messages, s):
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
        return 0
    return _repl(model, s, media)


def _repl(model, s, media) -> int:
    from .model.messages import MediaPart

    print("anymal chat — /image PATH attaches an image to the next message, /reset clears, /quit exits.",
          file=sys.stderr)
    history: list[dict] = []
    pending = list(media)
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            return 0
        if not line:
            continue
        if line in ("/quit", "/exit"):
            return 0
        if line == "/reset":
            history, pending = [], []
            continue
        cmd, _, arg = line.partition(" ")
        if cmd.lstrip("/") in MODALITY_FLAGS and cmd.startswith("/"):
            if not Path(arg).is_file():
                print(f"error: {arg}: no such file", file=sys.stderr)
            else:
                pending.append(MediaPart(cmd[1:], arg))
            continue
        parts = [{"type": m.modality, "path": m.source} for m in pending] + [{"type": "text", "text": line}]
        pending = []
        history.append({"role": "user", "content": parts})
        sys.stdout.write("anymal> ")
        try:
            reply = ""
            for piece in model.stream(history, s):
                reply += piece
                sys.stdout.write(piece)
                sys.stdout.flush()
        except AnymalError as e:
            history.pop()
            print(f"\nerror: {e}", file=sys.stderr)
            continue
        sys.stdout.write("\n")
        history.append({"role": "assistant", "content": reply})


def cmd_train(a) -> int:
    from .config import load_train_config
    from .train.loop import train

    cfg = load_train_config(a.recipe, a.set or [])
    train(cfg, progress=not a.no_progress, log=lambda m: print(m, file=sys.stderr))
    return 0


def cmd_eval(a) -> int:
    from .eval.captioning import evaluate_captions

    model = _load_model(a.model)
    res = evaluate_captions(model, a.data, a.out, limit=a.limit, batch_size=a.batch_size, progress=not a.no_progress)
    print((Path(a.out) / "results.md").read_text(), end="")
    print(f"wrote {a.out}/results.json, results.md, predictions.jsonl, object_named_by_category.png "
          f"(n={res['n']}, skipped={res['skipped']})", file=sys.stderr)
    return 0


def cmd_data(a) -> int:
    if a.name == "emoji":
        from .data.emoji import build_emoji

        print(json.dumps(build_emoji(a.out, variants=a.variants, seed=a.seed, limit=a.limit, progress=not a.no_progress)))
        return 0
    from .data.tuxpaint import build_tuxpaint

    counts = build_tuxpaint(a.out, a.stamps, size=a.size, train_variants=a.train_variants, seed=a.seed,
                            include_symbols=a.include_symbols, splits=tuple(a.splits.split(",")),
                            progress=not a.no_progress)
    print(json.dumps(counts))
    return 0


def cmd_info(a) -> int:
    from .model.checkpoint import read_manifest
    from .paths import DEFAULT_CHECKPOINT

    path = Path(a.model) if a.model else DEFAULT_CHECKPOINT
    m = read_manifest(path)
    if a.json:
        print(json.dumps(m, indent=2))
        return 0
    print(f"checkpoint: {path}\nstage: {m['stage']}   anymal {m.get('anymal_version', '?')}")
    print(f"LLM: {m['llm']['id']} (hidden {m['llm']['hidden_size']})")
    for mod, rec in m["modalities"].items():
        e, p = rec["encoder"], rec["projector"]
        print(f"{mod}: encoder {e['id']} ({e['dim']}-d x {e['num_tokens']} tokens) -> "
              f"{p['kind']} projector ({p['params']:,} params) -> {p['num_tokens']} LLM tokens")
    if "training" in m:
        print("training: " + ", ".join(f"{k}={v}" for k, v in m["training"].items()))
    return 0


def cmd_demo(a) -> int:
    from .paths import PACKAGE_DIR

    model = _load_model(a.model)
    examples = sorted((PACKAGE_DIR / "assets" / "examples").glob("*.png"))
    for img in examples:
        reply = model.chat("What is this?", image=str(img), max_new_tokens=32)
        print(f"{img.name}: What is this? -> {reply}")
    print(model.chat("In one sentence, what can you do?", max_new_tokens=40))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anymal", description="Any-modality augmented language models.")
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("chat", help="ask about images (one prompt, or an interactive REPL without one)")
    c.add_argument("prompt", nargs="?")
    c.add_argument("--model", help="checkpoint directory (default: the shipped adapters)")
    for m in MODALITY_FLAGS:
        c.add_argument(f"--{m}", action="append", metavar="PATH", help=f"{m} input (repeatable)")
    c.add_argument("--max-new-tokens", type=int, default=128)
    c.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    c.add_argument("--top-p", type=float, default=1.0)
    c.add_argument("--repetition-penalty", type=float, default=1.1)
    c.add_argument("--seed", type=int)
    c.add_argument("--stop", action="append", help="stop string (repeatable)")
    c.add_argument("--json", action="store_true", help="print {'reply': ...} as JSON")
    c.set_defaults(fn=cmd_chat)

    t = sub.add_parser("train", help="train adapters from a YAML recipe")
    t.add_argument("recipe")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe value, e.g. optim.lr=1e-4")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("eval", help="captioning metrics on a manifest (pinned greedy decoding)")
    e.add_argument("--model", help="checkpoint directory (default: the shipped adapters)")
    e.add_argument("--data", required=True, help="JSONL manifest, e.g. data/tuxpaint/test.jsonl")
    e.add_argument("--out", default="runs/eval")
    e.add_argument("--limit", type=int)
    e.add_argument("--batch-size", type=int, default=8)
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(fn=cmd_eval)

    d = sub.add_parser("data", help="build datasets from installed packages")
    dsub = d.add_subparsers(dest="what", required=True)
    builders = dsub.add_parser("build", help="build a dataset").add_subparsers(dest="name", required=True)
    tx = builders.add_parser("tuxpaint", help="Tux Paint stamps -> captioning set split by caption")
    tx.add_argument("--out", default="data/tuxpaint")
    tx.add_argument("--stamps", default="/usr/share/tuxpaint/stamps")
    tx.add_argument("--size", type=int, default=224)
    tx.add_argument("--train-variants", type=int, default=2, help="augmented copies of each train image")
    tx.add_argument("--seed", type=int, default=0)
    tx.add_argument("--include-symbols", action="store_true")
    tx.add_argument("--splits", default="train,val,test", help="comma-separated subset to write")
    tx.add_argument("--no-progress", action="store_true")
    tx.set_defaults(fn=cmd_data)
    em = builders.add_parser("emoji", help="Noto Color Emoji + CLDR names -> broad-vocabulary captioning set")
    em.add_argument("--out", default="data/emoji")
    em.add_argument("--variants", type=int, default=1)
    em.add_argument("--seed", type=int, default=0)
    em.add_argument("--limit", type=int, help="only the first N emoji")
    em.add_argument("--no-progress", action="store_true")
    em.set_defaults(fn=cmd_data)

    i = sub.add_parser("info", help="what a checkpoint holds")
    i.add_argument("model", nargs="?")
    i.add_argument("--json", action="store_true")
    i.set_defaults(fn=cmd_info)

    dm = sub.add_parser("demo", help="answer about the bundled example images with the shipped model")
    dm.add_argument("--model")
    dm.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    try:
        return args.fn(args)
    except AnymalError as e:
        print(f"anymal: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
