"""`anymal chat --image` end to end: the shipped checkpoint vs the same model without its perception
encoders (patch tokens only: the image path as it was before perception), side by side in one run.

    python bench/chat_image_latency.py [--image PATH] [--repeats 5] [--max-new-tokens 24]

Each repeat runs both commands once, alternating which goes first, as fresh processes (imports, model
load, the image read by every encoder, prefill and a greedy answer of at most --max-new-tokens): what a
user waits for. The patch-only checkpoint is the shipped one with `perception: []` and the image
projector's patch part (its `main.*` weights), written to a temporary folder. Reports the median
seconds of each and their ratio (target <= 1.5x) and both answers. `--also DIR` (repeatable) times more
checkpoints in the same rotation, e.g. one trained on another LLM, each with its ratio to the shipped one.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def patch_only_checkpoint(out: Path) -> Path:
    """The shipped default with the image perception removed (same LLM, same patch projector weights)."""
    from anymal import AnyMAL
    from anymal.config import ModelConfig, from_dict
    from anymal.model.checkpoint import read_manifest, read_weights
    from anymal.paths import DEFAULT_CHECKPOINT

    manifest = read_manifest(DEFAULT_CHECKPOINT)
    config = from_dict(ModelConfig, manifest["config"])
    config.modalities["image"].perception = []
    model = AnyMAL.from_config(config)
    state = {k.replace("projectors.image.main.", "projectors.image."): v for k, v in read_weights(DEFAULT_CHECKPOINT).items()
             if not k.startswith("projectors.image.words.")}
    model.load_adapter_state(state, DEFAULT_CHECKPOINT)
    model.save_pretrained(out, stage=manifest["stage"])
    return out


def run_chat(model: str | None, image: str, tokens: int) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "anymal.cli", "chat", "--image", image, "--max-new-tokens", str(tokens), "What is this?"]
    cmd += ["--model", model] if model else []
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return time.perf_counter() - t, out.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default=str(ROOT / "anymal/assets/examples/truck.png"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--also", action="append", default=[], metavar="DIR", help="another checkpoint to time")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        variants = {"shipped (patches + perception)": None,
                    "patch tokens only": str(patch_only_checkpoint(Path(tmp) / "patch-only")),
                    **{d: d for d in a.also}}
        for model in [None, *a.also]:  # warm the OS file cache and the LLM conversion caches
            run_chat(model, a.image, a.max_new_tokens)
        times: dict[str, list[float]] = {k: [] for k in variants}
        answers: dict[str, str] = {}
        for r in range(a.repeats):
            order = list(variants) if r % 2 == 0 else list(variants)[::-1]
            for name in order:
                secs, answers[name] = run_chat(variants[name], a.image, a.max_new_tokens)
                times[name].append(secs)
    med = {k: statistics.median(v) for k, v in times.items()}
    names = list(variants)
    report = {"image": a.image, "repeats": a.repeats, "median_s": med, "all_s": times, "answers": answers,
              "ratio": med[names[0]] / med[names[1]]}
    print(json.dumps(report, indent=1))
    for k in names:
        print(f"{k:32s} {med[k]:6.2f} s  {med[k] / med[names[0]]:5.2f}x shipped   {answers[k]!r}")
    print(f"ratio {report['ratio']:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
