"""`anymal eval` (a task, a suite, a resolution sweep, bind retrieval) and `anymal bind-cache`."""
from __future__ import annotations

import sys
from pathlib import Path

from ..devices import device_args
from ..errors import AnymalError
from .common import load_model, model_args


def _model_name(a) -> str:
    """The folder a model's results go under: its checkpoint's folder name, or `shipped`."""
    if not a.model:
        return "shipped"
    p = Path(a.model)
    return p.parent.name if p.name == "checkpoint" else p.name


def _claim(out: str | Path, a, results: str = "results.json") -> str:
    """`out`, unless it holds an earlier evaluation's results and --overwrite was not given."""
    if (Path(out) / results).exists() and not a.overwrite:
        raise AnymalError(f"{out} holds the results of an earlier evaluation: pass --overwrite to replace them, "
                          "or --out DIR to write elsewhere")
    return str(out)


def _eval_model(a):
    """The model to evaluate, with the visual-cache settings of the command line applied."""
    model = load_model(a)
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
    out = _claim(a.out or f"runs/eval/{_model_name(a)}/suite-{a.suite}", a)
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


def cmd_eval(a) -> int:
    from ..eval.runner import evaluate
    from ..eval.tasks import get_task

    if a.suite:
        return _eval_suite(a)
    if a.task == "bind-retrieval":
        from ..eval.retrieval import bind_retrieval

        out = _claim(a.out or f"runs/eval/{_model_name(a)}/bind-retrieval", a)
        print(bind_retrieval(load_model(a), out, limit=a.limit)["table"], end="")
        print(f"wrote {out}/: results.json, results.md, retrieval.png", file=sys.stderr)
        return 0
    t = get_task(a.task)  # an unknown task, or a benchmark without its files, fails before the model loads
    if t.reader and not t.manifest and not (a.data and Path(a.data).exists()):
        raise AnymalError(f"task {t.name} reads the benchmark's own files: " +
                          (f"{a.data} does not exist" if a.data else "--data is needed; " + t.build))
    model = _eval_model(a)
    if a.sides:
        from ..eval.resolution import resolution_sweep

        out = a.out or f"runs/eval/{a.task}-resolution"
        label = a.label or _model_name(a)
        _claim(Path(out) / label, a, "sweep.json")  # the sweep's folder is shared: one model's runs per label
        res = resolution_sweep(model, a.task, a.sides, out, label, limit=a.limit, batch_size=a.batch_size,
                               progress=not a.no_progress, manifest=a.data)
        print(res["table"], end="")
        print(f"wrote {out}/: results.md, results.json, resolution.png ({label}: {out}/{label}/)", file=sys.stderr)
        return 0
    out = _claim(a.out or f"runs/eval/{_model_name(a)}/{a.task}", a)
    benchmark = {k: v for k, v in (("annotations", a.annotations and Path(a.annotations)), ("split", a.split)) if v}
    res = evaluate(model, a.task, a.data, out, limit=a.limit, batch_size=a.batch_size, progress=not a.no_progress,
                   baselines=a.baselines, benchmark=benchmark, media_root=a.media_root)
    print((Path(out) / "results.md").read_text(), end="")
    for reason, n in res["skipped_by_reason"].items():
        print(f"skipped {n} x {reason}, e.g. {res['skip_examples'][reason][0]}", file=sys.stderr)
    print(f"wrote {out}/: results.json, results.md, predictions.jsonl, plots "
          f"(n={res['n']}, skipped={res['skipped']})", file=sys.stderr)
    return 0


def cmd_bind_cache(a) -> int:
    from ..train.visual_cache import build_visual_cache

    model = load_model(a)
    cache = build_visual_cache(model, a.data, progress=not a.no_progress)
    cache.save(a.model)
    print(f"wrote the visual cache ({len(cache)} images of {a.data}) into {a.model}", file=sys.stderr)
    return 0


def add_parsers(sub) -> None:
    from ..data.builders import manifest
    from ..eval.tasks import TASKS

    e = sub.add_parser("eval", help="run an evaluation task (pinned greedy decoding) and write a report")
    model_args(e)
    e.add_argument("--task", default="image-caption", choices=sorted(TASKS) + ["bind-retrieval"])
    e.add_argument("--suite", help="run every task of a suite with baselines (default: the built-in tasks)")
    e.add_argument("--baselines", action="store_true",
                   help="add chance, a blind run (input removed), a linear probe and the task's reference system")
    e.add_argument("--no-baselines", action="store_true", help="with --suite: skip the baselines")
    e.add_argument("--readme", help="with --suite: write the table between the suite markers of this file")
    e.add_argument("--data", help="JSONL manifest (default: the task's own, e.g. data/tuxpaint/test.jsonl); a "
                                  "standard benchmark's own file or folder (coco-caption, vqav2, textvqa, pope, mme, "
                                  "mmbench, scienceqa, audiocaps, clotho: docs/evaluation.md)")
    e.add_argument("--media-root", help="the folder relative media paths resolve in (default: --data's folder)")
    e.add_argument("--annotations", help="a benchmark's second file: VQAv2's annotations, ScienceQA's pid_splits.json "
                                         "(default: the official name beside --data)")
    e.add_argument("--split", help="ScienceQA's split (default: test)")
    e.add_argument("--out", help="report directory (default: runs/eval/MODEL/TASK, MODEL = the checkpoint's "
                                 "folder name or `shipped`)")
    e.add_argument("--overwrite", action="store_true", help="replace the results of an earlier evaluation in --out")
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

    bc = sub.add_parser("bind-cache", help="build the ImageBind-LLM visual cache of a bind checkpoint")
    bc.add_argument("model", help="checkpoint directory with an image bind head (the cache is written into it)")
    bc.add_argument("--data", default=manifest("tuxpaint", "train"), help="image manifest (the training set)")
    bc.add_argument("--no-progress", action="store_true")
    device_args(bc)
    bc.set_defaults(revision=None)
    bc.set_defaults(fn=cmd_bind_cache)
