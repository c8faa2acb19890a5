"""The `anymal` command: chat, train, eval, data, info, demo."""
from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from pathlib import Path

from ..errors import AnymalError

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
        rate = a.imu_rate if modality == "imu" and a.imu_rate else None
        media.append(MediaPart(modality, (path, rate) if rate else path))
        if modality == "video" and getattr(a, "video_audio", False):
            media += soundtrack(path, {"audio"}, f"--video {path}")
    return media


def _path_of(part) -> str:
    src = part.source[0] if isinstance(part.source, tuple) else part.source
    return str(src) if isinstance(src, (str, Path)) else "<in-memory waveform>"


def _quiet_libraries() -> None:
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # peft calls a transformers API that transformers now flags as deprecated: not the user's concern
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _settings(a):
    from ..model.generation import GenerationSettings

    return GenerationSettings(max_new_tokens=a.max_new_tokens, temperature=a.temperature, top_p=a.top_p,
                              repetition_penalty=a.repetition_penalty, seed=a.seed, stop=a.stop or [])


def _load_model(path: str | None):
    from ..model.anymal import AnyMAL

    return AnyMAL.from_pretrained(path)


def cmd_chat(a) -> int:
    from ..model.messages import from_prompt

    media = _media(a)
    model = _load_model(a.model)
    s = _settings(a)
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


def _repl(model, s, media, imu_rate: float | None = None) -> int:
    from ..model.messages import MediaPart

    print("anymal chat — /image PATH (or /audio, /video, /imu, /points) attaches an input to the next "
          "message, /reset clears, /quit exits.", file=sys.stderr)
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
                rate = imu_rate if cmd == "/imu" else None
                pending.append(MediaPart(cmd[1:], (arg, rate) if rate else arg))
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
    from ..config import load_train_config
    from ..train.loop import train

    cfg = load_train_config(a.recipe, a.set or [])
    train(cfg, progress=not a.no_progress, log=lambda m: print(m, file=sys.stderr), resume=a.resume)
    return 0


def _eval_model(a):
    """The model to evaluate, with the visual-cache settings of the command line applied."""
    model = _load_model(a.model)
    if a.cache_weight is not None or a.cache_k is not None:
        if model.bind is None:
            raise AnymalError("--cache-weight/--cache-k apply to ImageBind-LLM models (modalities with projector: bind)")
        if model.visual_cache is None and a.cache_weight:
            raise AnymalError(f"{a.model}: no visual cache in the checkpoint; build it with `anymal bind-cache {a.model}`")
        model.config.bind.cache_weight = a.cache_weight if a.cache_weight is not None else model.config.bind.cache_weight
        model.config.bind.cache_k = a.cache_k or model.config.bind.cache_k
    return model


def _eval_suite(a) -> int:
    from ..eval.suite import run_suite, suite_tasks, update_readme

    suite_tasks(a.suite)  # an unknown suite fails before the model loads
    if a.data:
        raise AnymalError("--data names one task's manifest; a suite uses each task's own")
    out = a.out or f"runs/eval/suite-{a.suite}"
    res = run_suite(_eval_model(a), a.suite, out, limit=a.limit, batch_size=a.batch_size,
                    baselines=not a.no_baselines, progress=not a.no_progress)
    print(res["table"], end="")
    if a.readme:
        cmd = "anymal eval --suite " + a.suite + (f" --model {a.model}" if a.model else "") + \
              (f" --limit {a.limit}" if a.limit else "") + f" --readme {a.readme}"
        update_readme(a.readme, res["table"], cmd)
        print(f"updated the suite table in {a.readme}", file=sys.stderr)
    print(f"wrote {out}/: results.json, results.md and one report folder per task", file=sys.stderr)
    return 0


def cmd_export(a) -> int:
    from ..model.export import export_merged

    if not a.merge:
        raise AnymalError("export: nothing to do; --merge folds the LoRA layers into the LLM")
    print(f"wrote {export_merged(a.model, a.out)} (LoRA merged; the LLM is in its llm/ folder)", file=sys.stderr)
    return 0


def cmd_eval(a) -> int:
    from ..eval.runner import evaluate
    from ..eval.tasks import get_task

    if a.suite:
        return _eval_suite(a)
    if a.task == "bind-retrieval":
        from ..bind.retrieval import bind_retrieval

        out = a.out or "runs/eval/bind-retrieval"
        print(bind_retrieval(_load_model(a.model), out, limit=a.limit)["table"], end="")
        print(f"wrote {out}/: results.json, results.md, retrieval.png", file=sys.stderr)
        return 0
    get_task(a.task)  # an unknown task fails before the model loads
    model = _eval_model(a)
    if a.sides:
        from ..eval.resolution import resolution_sweep

        out = a.out or f"runs/eval/{a.task}-resolution"
        label = a.label or (Path(a.model).parent.name if a.model and Path(a.model).name == "checkpoint"
                            else Path(a.model).name if a.model else "default")
        res = resolution_sweep(model, a.task, a.sides, out, label, limit=a.limit, batch_size=a.batch_size,
                               progress=not a.no_progress, manifest=a.data)
        print(res["table"], end="")
        print(f"wrote {out}/: results.md, results.json, resolution.png ({label}: {out}/{label}/)", file=sys.stderr)
        return 0
    out = a.out or f"runs/eval/{a.task}"
    res = evaluate(model, a.task, a.data, out, limit=a.limit, batch_size=a.batch_size, progress=not a.no_progress,
                   baselines=a.baselines)
    print((Path(out) / "results.md").read_text(), end="")
    print(f"wrote {out}/: results.json, results.md, predictions.jsonl, plots "
          f"(n={res['n']}, skipped={res['skipped']})", file=sys.stderr)
    return 0


def cmd_bind_cache(a) -> int:
    from ..bind.cache import build_visual_cache

    model = _load_model(a.model)
    cache = build_visual_cache(model, a.data, progress=not a.no_progress)
    cache.save(a.model)
    print(f"wrote the visual cache ({len(cache)} images of {a.data}) into {a.model}", file=sys.stderr)
    return 0


def cmd_data(a) -> int:
    import yaml

    from ..data.builders import build

    options = {"progress": not a.no_progress}
    for kv in a.opt or []:
        key, eq, value = kv.partition("=")
        if not eq:
            raise AnymalError(f"--opt {kv!r}: expected KEY=VALUE, e.g. --opt seed=1")
        options[key.strip().replace("-", "_")] = yaml.safe_load(value)
    if a.what == "generate":
        from ..data.instruct import generate

        known = set(inspect.signature(generate).parameters) - {"sources", "out"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise AnymalError(f"data generate has no option {', '.join(unknown)}; its options: {', '.join(sorted(known))}")
        print(json.dumps(generate(a.sources, a.out, **options)))
        return 0
    print(json.dumps(build(a.name, a.out or f"data/{a.name}", **options)))
    return 0


def cmd_pretrain(a) -> int:
    from ..train import pretrain_encoders as pe

    fn = {"imu": pe.pretrain_imu, "points": pe.pretrain_points}[a.encoder]
    data = a.data or {"imu": "data/hapt", "points": "data/furniture"}[a.encoder]
    res = fn(data, a.out or f"runs/pretrain-{a.encoder}", ship=a.ship)
    print(json.dumps(res, indent=1, default=str))
    return 0


def cmd_info(a) -> int:
    from ..model.checkpoint import read_manifest
    from ..paths import DEFAULT_CHECKPOINT

    path = Path(a.model) if a.model else DEFAULT_CHECKPOINT
    m = read_manifest(path)
    if a.json:
        print(json.dumps(m, indent=2))
        return 0
    print(f"checkpoint: {path}\nstage: {m['stage']}   anymal {m.get('anymal_version', '?')}")
    print(f"LLM: {m['llm']['id']} (hidden {m['llm']['hidden_size']})"
          + (" — fine-tuned, stored in the checkpoint's llm/ folder" if m["llm"]["id"] == "./llm" else ""))
    lora = m["config"].get("lora")
    if lora:
        print(f"LoRA: rank {lora['rank']}, alpha {lora['alpha']}, on {', '.join(lora['target_modules'])}")
    for mod, rec in m["modalities"].items():
        e, p = rec["encoder"], rec["projector"]
        out = ("the bind space (added to every layer by the bind network)" if p["kind"] == "bind"
               else f"{p['num_tokens']} LLM tokens" + (" at most" if p["kind"] in ("patch", "tiles") else ""))
        print(f"{mod}: encoder {e['id']} ({e['dim']}-d x {e['num_tokens']} tokens) -> "
              f"{p['kind']} projector ({p['params']:,} params) -> {out}")
    if "bind" in m:
        b = m["bind"]
        print(f"bind network: {b['dim']}-d bind space -> hidden {b['hidden_size']}, {b['layers']} zero-init layer gates "
              f"({b['params']:,} params)" + (", visual cache present" if (path / "visual_cache.json").is_file() else ""))
    if "training" in m:
        print("training: " + ", ".join(f"{k}={v}" for k, v in m["training"].items()))
    for i, step in enumerate(m.get("lineage", []), 1):
        print(f"lineage {i}: " + ", ".join(f"{k}={v}" for k, v in step.items()))
    return 0


# (inputs as (modality, example file), question): every example is from a held-out test split
DEMO = [
    *[([("image", f)], "What is this?") for f in ("goat.png", "strawberry.png", "truck.png", "umbrella.png")],
    ([("audio", "goat-sound.flac")], "What makes this sound?"),
    ([("audio", "speech-call-forward.flac")], "Transcribe this audio."),
    ([("video", "goat-moving-up.mp4")], "Describe the video briefly."),
    ([("imu", "walking-upstairs.csv")], "What is the person doing?"),
    ([("points", "bench.npy")], "What is this 3D object?"),
    ([("image", "umbrella.png"), ("imu", "walking-upstairs.csv")], "Given what I see and how I'm moving, what am I doing?"),
]


def cmd_demo(a) -> int:
    from ..model.messages import MediaPart, from_prompt
    from ..paths import PACKAGE_DIR

    model = _load_model(a.model)
    examples = PACKAGE_DIR / "assets" / "examples"
    for inputs, question in DEMO:
        if any(m not in model.projectors for m, _ in inputs):
            continue  # a checkpoint without that adapter
        media = [MediaPart(m, str(examples / f)) for m, f in inputs]
        reply = model.generate([from_prompt(question, media)], _settings(a))[0]
        print(f"[{' + '.join(f for _, f in inputs)}] {question} -> {reply}")
    print(model.chat("In one sentence, what can you do?", max_new_tokens=40))
    return 0


def _generation_args(p: argparse.ArgumentParser, max_new_tokens: int) -> None:
    p.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--repetition-penalty", type=float, default=1.1)
    p.add_argument("--seed", type=int)
    p.add_argument("--stop", action="append", help="stop string (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anymal", description="Any-modality augmented language models.")
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("chat", help="ask about images, audio, video, IMU and 3-D inputs (one prompt, or a REPL)")
    c.add_argument("prompt", nargs="?")
    c.add_argument("--model", help="checkpoint directory (default: the shipped adapters)")
    for m in MODALITY_FLAGS:
        c.add_argument(f"--{m}", action=_Input, metavar="PATH", help=f"{m} input (repeatable; order is kept)")
    c.add_argument("--video-audio", action="store_true",
                   help="also give each --video's own audio track (as an audio input right after it)")
    c.add_argument("--imu-rate", type=float, metavar="HZ",
                   help="sample rate of --imu files that have no t column (.npy, CSV without t)")
    _generation_args(c, max_new_tokens=128)
    c.add_argument("--json", action="store_true", help="print {'reply': ...} as JSON")
    c.set_defaults(fn=cmd_chat)

    t = sub.add_parser("train", help="train adapters from a YAML recipe")
    t.add_argument("recipe")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe value, e.g. optim.lr=1e-4")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in the recipe's output_dir from its last saved state (save_every)")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(fn=cmd_train)

    x = sub.add_parser("export", help="write a standalone checkpoint with the LoRA layers merged into the LLM")
    x.add_argument("model", help="an instruct (LoRA) checkpoint directory")
    x.add_argument("--merge", action="store_true", help="fold LoRA into the base weights (W + BA * alpha/r)")
    x.add_argument("--out", required=True, help="output checkpoint directory")
    x.set_defaults(fn=cmd_export)

    from ..eval.tasks import TASKS

    e = sub.add_parser("eval", help="run an evaluation task (pinned greedy decoding) and write a report")
    e.add_argument("--model", help="checkpoint directory (default: the shipped adapters)")
    e.add_argument("--task", default="image-caption", choices=sorted(TASKS) + ["bind-retrieval"])
    e.add_argument("--suite", help="run every task of a suite with baselines (default: the built-in tasks)")
    e.add_argument("--baselines", action="store_true",
                   help="add chance, a blind run (input removed), a linear probe and the task's reference system")
    e.add_argument("--no-baselines", action="store_true", help="with --suite: skip the baselines")
    e.add_argument("--readme", help="with --suite: write the table between the suite markers of this file")
    e.add_argument("--data", help="JSONL manifest (default: the task's own, e.g. data/tuxpaint/test.jsonl)")
    e.add_argument("--out", help="report directory (default: runs/eval/TASK)")
    e.add_argument("--limit", type=int)
    e.add_argument("--batch-size", type=int, default=8)
    e.add_argument("--sides", type=lambda v: [int(x) for x in v.split(",")], metavar="S1,S2,...",
                   help="score vs input resolution: run the task with images at each longest side (plot + table)")
    e.add_argument("--cache-weight", type=float, metavar="W",
                   help="ImageBind-LLM models: visual-cache blend weight for non-image inputs (0 = cache off)")
    e.add_argument("--cache-k", type=int, metavar="K", help="ImageBind-LLM models: visual-cache neighbours")
    e.add_argument("--label", help="with --sides: this model's name in the table and plot (default: its folder)")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(fn=cmd_eval)

    d = sub.add_parser("data", help="build datasets from installed packages")
    dsub = d.add_subparsers(dest="what", required=True)
    builders = dsub.add_parser("build", help="build a dataset").add_subparsers(dest="name", required=True)
    from ..data.builders import BUILDERS

    for name, (_, _, about) in BUILDERS.items():
        b = builders.add_parser(name, help=about.replace("%", "%%"))  # argparse formats help with %
        b.add_argument("--out", help=f"output directory (default: data/{name})")
        b.add_argument("--opt", action="append", metavar="KEY=VALUE",
                       help="a builder option, e.g. --opt seed=1 --opt limit=20 (unknown keys list the known ones)")
        b.add_argument("--no-progress", action="store_true")
        b.set_defaults(fn=cmd_data)
    g = dsub.add_parser("generate", help="instruction data (conversation, detail, reasoning) from built sets' labels")
    g.add_argument("--from", dest="sources", action="append", required=True, metavar="MANIFEST",
                   help="a built manifest, e.g. data/tuxpaint/train.jsonl (repeatable)")
    g.add_argument("--out", required=True, help="output JSONL, e.g. data/instruct/train.jsonl")
    g.add_argument("--opt", action="append", metavar="KEY=VALUE",
                   help="kinds=conversation,detail,reasoning | llm=true (LLM rephrasing, validated) | seed=N | limit=N")
    g.add_argument("--no-progress", action="store_true")
    g.set_defaults(fn=cmd_data)

    pt = sub.add_parser("pretrain", help="contrastively pretrain the small IMU / 3-D encoders against MiniLM")
    pt.add_argument("encoder", choices=["imu", "points"])
    pt.add_argument("--data", help="built dataset (default: data/hapt or data/furniture)")
    pt.add_argument("--out", help="run directory (default: runs/pretrain-ENCODER)")
    pt.add_argument("--ship", action="store_true", help="also replace the weights shipped in the package")
    pt.set_defaults(fn=cmd_pretrain)

    i = sub.add_parser("info", help="what a checkpoint holds")
    i.add_argument("model", nargs="?")
    i.add_argument("--json", action="store_true")
    i.set_defaults(fn=cmd_info)

    from ..serve.cli import add_parser as add_serve_parser

    add_serve_parser(sub)
    from ..safety.cli import add_parser as add_safety_parser

    add_safety_parser(sub)

    bc = sub.add_parser("bind-cache", help="build the ImageBind-LLM visual cache of a bind checkpoint")
    bc.add_argument("model", help="checkpoint directory with an image bind head (the cache is written into it)")
    bc.add_argument("--data", default="data/tuxpaint/train.jsonl", help="image manifest (the training set)")
    bc.add_argument("--no-progress", action="store_true")
    bc.set_defaults(fn=cmd_bind_cache)

    dm = sub.add_parser("demo", help="answer about the bundled held-out examples (every modality) with the shipped model")
    dm.add_argument("--model")
    _generation_args(dm, max_new_tokens=40)
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
