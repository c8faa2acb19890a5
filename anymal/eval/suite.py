"""`anymal eval --suite default`: every built-in task with baselines, one table, optionally written
into the README between two marker lines (so the README's numbers are regenerated, never typed).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import ConfigError, DataError
from .runner import evaluate
from ..registry import Registry
from .tasks import TASKS, get_task

SUITES: Registry[list[str]] = Registry("suite")
SUITES.add("default", ["image-caption", "image-vqa", "magnifier", "speech-transcribe", "sound-name", "video-motion",
                       "imu-activity", "points-category", "interleaved"], "every modality's task, with baselines")
SUITES.add("bind", ["image-caption", "sound-name", "imu-activity", "points-category"],
           "ImageBind-LLM: the trained modality (image) and three reached zero-shot through the bind space")
BEGIN = "<!-- anymal eval --suite default: begin (generated; do not edit by hand) -->"
END = "<!-- anymal eval --suite default: end -->"
LOWER_IS_BETTER = {"WER", "CER"}


def suite_tasks(name: str) -> list[str]:
    return SUITES.get(name)


def run_suite(model, name: str = "default", out_dir: str | Path = "runs/eval/suite", limit: int | None = None,
              batch_size: int = 8, baselines: bool = True, progress: bool = True) -> dict:
    tasks = [get_task(t) for t in suite_tasks(name)]
    missing = [f"{t.manifest} (`{t.build}`)" for t in tasks if not Path(t.manifest).is_file()]
    if missing:
        raise DataError("the suite needs these manifests; build them first: " + "; ".join(missing))
    out = Path(out_dir)
    results = {t.name: evaluate(model, t, None, out / t.name, limit=limit, batch_size=batch_size,
                                progress=progress, baselines=baselines) for t in tasks}
    table = suite_table(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"suite": name, "limit": limit, "batch_size": batch_size,
                                                  "results": results}, indent=1))
    (out / "results.md").write_text(table)
    return {"table": table, "results": results}


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.3f}"


def suite_table(results: dict[str, dict]) -> str:
    """One row per (task, reported metric): ours next to each baseline on the same items."""
    names = list(dict.fromkeys(b for r in results.values() for b in r["baselines"]
                               if not b.startswith("blind") and not b.startswith("linear probe")
                               and b not in ("chance", "majority class")))
    head = ["task", "n", "metric", "anymal", "chance", "majority class", "blind (input removed)",
            "linear probe (frozen encoder)", "reference system"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task, r in results.items():
        b = r["baselines"]
        blind = next((v for k, v in b.items() if k.startswith("blind")), {})
        probe = next((v for k, v in b.items() if k.startswith("linear probe")), {})
        for metric in TASKS[task].report or (r["primary"],):
            if metric not in r["scores"]:
                continue
            ref = "; ".join(f"{n}: {_cell(b[n].get(metric))}" for n in names if n in b and metric in b[n])
            arrow = " (lower is better)" if metric in LOWER_IS_BETTER else ""
            lines.append(f"| {task} | {r['n']} | {metric}{arrow} | **{_cell(r['scores'][metric])}** | "
                         f"{_cell(b.get('chance', {}).get(metric))} | {_cell(b.get('majority class', {}).get(metric))} | "
                         f"{_cell(blind.get(metric))} | {_cell(probe.get(metric))} | {ref or '—'} |")
    return "\n".join(lines) + "\n"


def update_readme(readme: str | Path, table: str, command: str) -> None:
    """Replace what lies between the suite's marker lines in `readme` with `table`."""
    path = Path(readme)
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise DataError(f"{path}: marker lines not found; add\n{BEGIN}\n{END}\nwhere the table belongs")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n\nRegenerate with `{command}`.\n\n{table}\n{END}{tail}")
