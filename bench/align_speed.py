"""Stage-1 alignment throughput: anymal's trainer vs a straightforward loop, side by side in one run.

    python bench/align_speed.py [--steps 20] [--batch-size 8] [--set audio|image]

baseline   the encoder runs on every sample every step (no feature cache), samples in file order
           cut into batches (no length grouping), fp32 LLM
anymal     features from the warm feature cache, length-grouped batches, bf16 frozen LLM

Both train the same adapter from the same seed on the same samples for the same number of steps;
the report gives samples/s of each, the ratio (target >= 5x) and both final losses (which should
agree: the cache changes where features come from, not what they are). The cache is warmed
before timing (its one-off cost is reported separately: it is paid once per dataset, not per run).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

SETS = {  # name -> (recipe, manifest)
    "audio": ("anymal/recipes/all-modalities.yaml", "data/audio/train.jsonl"),
    "image": ("anymal/recipes/tuxpaint-align.yaml", "data/tuxpaint/train.jsonl"),
}
VARIANTS = {"baseline": ["data.feature_cache=false", "data.group_by_length=false"],
            "anymal": ["data.feature_cache=true", "data.group_by_length=true", "llm_train_dtype=bfloat16"]}


def worker(variant: str, a) -> dict:
    from anymal.config import load_train_config
    from anymal.train.loop import train

    recipe, data = SETS[a.set]
    over = VARIANTS[variant] + [f"data.train={a.subset}", f"data.media_root={Path(a.data or data).parent}", "data.val=null", f"optim.max_steps={a.steps}",
                                f"optim.batch_size={a.batch_size}", "optim.warmup_steps=2", "log_every=1",
                                "eval_every=0", "save_every=0", "init_from=null", "freeze=[]",
                                f"output_dir={a.out}/{a.set}-{variant}"]
    if variant == "baseline":
        over.append("llm_train_dtype=null")
    cfg = load_train_config(recipe, over)
    t0 = time.time()
    res = train(cfg, progress=False, log=lambda *_: None)
    rows = [json.loads(l) for l in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in rows if "samples_per_s" in r][-1]
    losses = [r["loss"] for r in rows if "loss" in r]
    return {"variant": variant, "samples_per_s": last["samples_per_s"], "tokens_per_s": last["tokens_per_s"],
            "final_loss": sum(losses[-5:]) / len(losses[-5:]), "first_loss": res.first_loss,
            "wall_s": time.time() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", choices=list(SETS), default="audio")
    p.add_argument("--data", help="manifest (default: the set's train split)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", default="runs/bench/align-speed")
    p.add_argument("--samples", type=int, default=256, help="the first N samples of the manifest")
    p.add_argument("--worker", choices=list(VARIANTS) + ["warm"])
    a = p.parse_args()
    a.subset = f"{a.out}/{a.set}-subset.jsonl"
    args = ["--set", a.set, "--steps", str(a.steps), "--batch-size", str(a.batch_size), "--out", a.out]
    if a.data:
        args += ["--data", a.data]
    if a.worker:
        if a.worker == "warm":  # one step with the cache on: encodes (or re-reads) every sample once
            t0 = time.time()
            a.steps = 1
            worker("anymal", a)
            print(json.dumps({"warm_s": time.time() - t0}))
        else:
            print(json.dumps(worker(a.worker, a)))
        return
    manifest = a.data or SETS[a.set][1]
    if not Path(manifest).is_file():
        sys.exit(f"{manifest} not found: build it first (anymal data build {a.set if a.set == 'audio' else 'tuxpaint'})")
    Path(a.out).mkdir(parents=True, exist_ok=True)
    Path(a.subset).write_text("".join(Path(manifest).read_text().splitlines(keepends=True)[:a.samples]))
    rows = {}
    for v in ["warm", "baseline", "anymal"]:
        print(f"[{v}] ...", file=sys.stderr, flush=True)
        r = subprocess.run([sys.executable, __file__, "--worker", v, *args], capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"[{v}] failed:\n{r.stderr[-3000:]}")
        rows[v] = json.loads(r.stdout.strip().splitlines()[-1])
    b, o = rows["baseline"], rows["anymal"]
    speedup = o["samples_per_s"] / b["samples_per_s"]
    res = {"set": a.set, "steps": a.steps, "batch_size": a.batch_size, "cache_warm_s": rows["warm"]["warm_s"],
           "baseline": b, "anymal": o, "speedup": speedup, "target_5x": speedup >= 5,
           "final_loss_rel_diff": o["final_loss"] / b["final_loss"] - 1}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{a.set}.json").write_text(json.dumps(res, indent=1))
    print(f"| {a.set} alignment | samples/s | tokens/s | final loss |\n|---|---|---|---|")
    for name, r in (("baseline (encoder every step, fp32, no grouping)", b), ("anymal (cache, bf16, grouped)", o)):
        print(f"| {name} | {r['samples_per_s']:.2f} | {r['tokens_per_s']:.0f} | {r['final_loss']:.3f} |")
    print(f"\nspeed-up {speedup:.1f}x (target >= 5x: {'met' if speedup >= 5 else 'NOT met'}); final loss "
          f"{res['final_loss_rel_diff']:+.1%} vs baseline; one-off cache warm-up {res['cache_warm_s']:.0f} s "
          f"({a.steps} steps of batch {a.batch_size})")


if __name__ == "__main__":
    main()
