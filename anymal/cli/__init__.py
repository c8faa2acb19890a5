"""The `anymal` command: chat, train, eval, data, info, demo."""
from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from pathlib import Path

from ..errors import AnymalError
from ..modalities import IMU, POINTS
from . import chat, evaluate


def _quiet_libraries() -> None:
    """transformers' info lines and Hugging Face progress bars off, by the environment they read when
    first imported (importing transformers here would cost every command ~0.5 s)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def cmd_train(a) -> int:
    from ..config import load_train_config
    from ..train.loop import train

    cfg = load_train_config(a.recipe, a.set or [])
    train(cfg, progress=not a.no_progress, log=lambda m: print(m, file=sys.stderr), resume=a.resume,
          overwrite=a.overwrite)
    return 0


def cmd_export(a) -> int:
    from ..model.export import export_merged

    if not a.merge:
        raise AnymalError("export: nothing to do; --merge folds the LoRA layers into the LLM")
    print(f"wrote {export_merged(a.model, a.out)} (LoRA merged; the LLM is in its llm/ folder)", file=sys.stderr)
    return 0


def cmd_push(a) -> int:
    from ..model.hub import push_checkpoint

    print(push_checkpoint(a.model, a.repo_id, private=a.private, revision=a.revision))
    return 0


def cmd_data(a) -> int:
    import yaml

    from ..data.builders import build, dataset_dir

    options = {"progress": not a.no_progress}
    for kv in a.opt or []:
        key, eq, value = kv.partition("=")
        if not eq:
            raise AnymalError(f"--opt {kv!r}: expected KEY=VALUE, e.g. --opt seed=1")
        options[key.strip().replace("-", "_")] = yaml.safe_load(value)
    if a.what == "generate":
        from ..data.builders.instruct import generate

        known = set(inspect.signature(generate).parameters) - {"sources", "out"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise AnymalError(f"data generate has no option {', '.join(unknown)}; its options: {', '.join(sorted(known))}")
        print(json.dumps(generate(a.sources, a.out, **options)))
        return 0
    print(json.dumps(build(a.name, a.out or dataset_dir(a.name), **options)))
    return 0


def cmd_pretrain(a) -> int:
    from ..data.builders import dataset_dir
    from ..train import pretrain_encoders as pe
    from ..train.pretrain_sounds import pretrain_sounds

    from ..train.runlog import PRETRAIN_EVIDENCE, PRETRAIN_FILES, claim_run_dir

    fn, data = {IMU.name: (pe.pretrain_imu, dataset_dir("hapt")),
                POINTS.name: (pe.pretrain_points, dataset_dir("furniture")),
                "sounds": (pretrain_sounds, dataset_dir("audio"))}[a.encoder]
    out = a.out or f"runs/pretrain-{a.encoder}"
    with claim_run_dir(Path(out), resume=False, overwrite=a.overwrite, files=PRETRAIN_FILES,
                       evidence=PRETRAIN_EVIDENCE):  # locked while it runs
        res = fn(a.data or data, out, ship=a.ship)
    print(json.dumps(res, indent=1, default=str))
    return 0


def cmd_info(a) -> int:
    from ..model.checkpoint import read_manifest
    from ..model.hub import resolve_checkpoint
    from ..paths import DEFAULT_CHECKPOINT

    path = resolve_checkpoint(a.model, a.revision) if a.model else DEFAULT_CHECKPOINT
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


def cmd_recipes(a) -> int:
    """The shipped recipes, each with the first line of its leading comment."""
    from ..paths import RECIPES_DIR

    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        about = next((line.lstrip("# ").strip() for line in path.read_text().splitlines() if line.startswith("#")), "")
        print(f"{path.stem:28s} {about}")
    print(f"(in {RECIPES_DIR}; `anymal train NAME` runs one, `--set key=value` changes a value)", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anymal", description="Any-modality augmented language models.")
    sub = p.add_subparsers(dest="cmd", required=True)
    chat.add_parsers(sub)

    t = sub.add_parser("train", help="train adapters from a YAML recipe")
    t.add_argument("recipe", help="a recipe file, or the name of a shipped one (`anymal train tuxpaint-align`)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe value, e.g. optim.lr=1e-4")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in the recipe's output_dir from its last saved state (save_every)")
    t.add_argument("--overwrite", action="store_true",
                   help="replace an earlier run in the recipe's output_dir (without it or --resume, one is refused)")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(fn=cmd_train)

    sub.add_parser("recipes", help="list the shipped training recipes (`anymal train NAME` runs one)").set_defaults(
        fn=cmd_recipes)

    x = sub.add_parser("export", help="write a standalone checkpoint with the LoRA layers merged into the LLM")
    x.add_argument("model", help="an instruct (LoRA) checkpoint directory")
    x.add_argument("--merge", action="store_true", help="fold LoRA into the base weights (W + BA * alpha/r)")
    x.add_argument("--out", required=True, help="output checkpoint directory")
    x.set_defaults(fn=cmd_export)

    pu = sub.add_parser("push", help="upload a checkpoint directory to the Hugging Face Hub (huggingface_hub login)")
    pu.add_argument("model", help="a checkpoint directory")
    pu.add_argument("repo_id", help="org/name (created if missing)")
    pu.add_argument("--private", action="store_true", help="create the repository private")
    pu.add_argument("--revision", help="branch to commit to (default: main)")
    pu.set_defaults(fn=cmd_push)

    d = sub.add_parser("data", help="build datasets from installed packages")
    dsub = d.add_subparsers(dest="what", required=True)
    builders = dsub.add_parser("build", help="build a dataset").add_subparsers(dest="name", required=True)
    from ..data.builders import BUILDERS, dataset_dir

    for name in BUILDERS:
        b = builders.add_parser(name, help=BUILDERS.about(name).replace("%", "%%"))  # argparse formats help with %
        b.add_argument("--out", help=f"output directory (default: {dataset_dir(name)})")
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

    pt = sub.add_parser("pretrain", help="pretrain the small IMU / 3-D encoders (contrastively, against MiniLM) "
                                         "or fit the sound-kind head on Whisper's pooled features")
    pt.add_argument("encoder", choices=[IMU.name, POINTS.name, "sounds"])
    pt.add_argument("--data", help="built dataset (default: data/hapt, data/furniture or data/audio)")
    pt.add_argument("--out", help="run directory (default: runs/pretrain-ENCODER)")
    pt.add_argument("--ship", action="store_true", help="also replace the weights shipped in the package")
    pt.add_argument("--overwrite", action="store_true", help="replace an earlier run in the run directory")
    pt.set_defaults(fn=cmd_pretrain)

    i = sub.add_parser("info", help="what a checkpoint holds")
    i.add_argument("model", nargs="?", help="checkpoint directory or Hugging Face Hub id (default: the shipped one)")
    i.add_argument("--revision", help="with a Hub id: the branch, tag or commit")
    i.add_argument("--json", action="store_true")
    i.set_defaults(fn=cmd_info)

    evaluate.add_parsers(sub)
    from ..serve.cli import add_parser as add_serve_parser

    add_serve_parser(sub)
    from ..safety.cli import add_parser as add_safety_parser

    add_safety_parser(sub)

    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    try:
        return args.fn(args)
    except AnymalError as e:  # one line, whatever a library put into the message
        print("anymal: error: " + " ".join(line.strip() for line in str(e).splitlines() if line.strip()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
