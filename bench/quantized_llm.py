"""Frozen-LLM precision side by side: fp32, bf16, int8, int4 — weight memory, peak RSS, step time, loss.

    python bench/quantized_llm.py [--steps 30] [--batch-size 8] [--data data/tuxpaint/train.jsonl]
    python bench/quantized_llm.py --steps 0      # only the frozen LLM's own loss on captions (fast)

Each variant trains the same image adapter (stage align, same seed, same samples, feature cache warm)
in its own process, so peak memory is that variant's alone. int8/int4 hold the LLM's linear layers
quantized (optimum-quanto) with bf16 compute; see anymal/llm/quantize.py. Targets: int4 weight
memory <= fp32 / 4, and int4's final loss within 5% of fp32's. Also reported: the frozen LLM's own
language-model loss on 64 training captions (no adapter, no training), which isolates what the
quantization does to the LLM. Writes results.json and results.md.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {"fp32": {"llm_train_dtype": "null"}, "bf16": {"llm_train_dtype": "bfloat16"},
            "int8": {"llm_train_dtype": "bfloat16", "llm_quantize": "int8"},
            "int4": {"llm_train_dtype": "bfloat16", "llm_quantize": "int4"}}


def caption_lm_loss(llm, data: str, n: int = 64) -> float:
    """Mean token loss of the frozen LLM on `n` captions as chat answers (no media, no training)."""
    import torch

    caps = [json.loads(line)["meta"]["caption"] for line in open(data)][:n]
    texts = [llm.tokenizer.apply_chat_template([{"role": "user", "content": "Describe the picture."},
                                                {"role": "assistant", "content": c}], tokenize=False) for c in caps]
    enc = llm.tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        return float(llm.model(**enc, labels=enc.input_ids.masked_fill(enc.attention_mask == 0, -100)).loss)


def worker(variant: str, a) -> dict:
    from anymal.config import load_train_config
    from anymal.llm import load_llm
    from anymal.llm.quantize import quantize_llm, weight_bytes
    from anymal.train.loop import train

    over = [f"{k}={v}" for k, v in VARIANTS[variant].items()]
    over += [f"data.train={a.data}", "data.val=null", f"optim.max_steps={a.steps}", f"optim.batch_size={a.batch_size}",
             "optim.warmup_steps=3", "log_every=1", "eval_every=0", "save_every=0", f"output_dir={a.out}/{variant}"]
    cfg = load_train_config(a.recipe, over)
    out = {"variant": variant}
    if a.steps:
        t0 = time.time()
        res = train(cfg, progress=False, log=lambda *_: None)
        rows = [json.loads(l) for l in (Path(a.out) / variant / "metrics.jsonl").read_text().splitlines()]
        losses = [r["loss"] for r in rows if "loss" in r]
        rate = [r for r in rows if "samples_per_s" in r][-1]["samples_per_s"]
        out.update(step_s=a.batch_size / rate, final_loss=sum(losses[-5:]) / len(losses[-5:]),
                   first_loss=res.first_loss, wall_s=time.time() - t0)
    llm = load_llm(cfg.model.llm.id, cfg.llm_train_dtype or "float32")
    if cfg.llm_quantize:
        quantize_llm(llm, cfg.llm_quantize)
    return {**out, "llm_weight_mb": weight_bytes(llm.model) / 1e6, "lm_loss": caption_lm_loss(llm, a.data),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--data", default="data/tuxpaint/train.jsonl")
    p.add_argument("--recipe", default="anymal/recipes/tuxpaint-align.yaml")
    p.add_argument("--out", default="runs/bench/quantized")
    p.add_argument("--worker", choices=list(VARIANTS))
    a = p.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a)))
        return
    if not Path(a.data).is_file():
        sys.exit(f"{a.data} not found: build it first (anymal data build tuxpaint)")
    rows = []
    for v in VARIANTS:
        print(f"[{v}] training {a.steps} steps ...", file=sys.stderr, flush=True)
        r = subprocess.run([sys.executable, __file__, "--worker", v, "--steps", str(a.steps), "--batch-size",
                            str(a.batch_size), "--data", a.data, "--recipe", a.recipe, "--out", a.out],
                           capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"[{v}] failed:\n{r.stderr[-3000:]}")
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    base = rows[0]
    trained = bool(a.steps)
    for r in rows:
        r["weight_x_smaller"] = base["llm_weight_mb"] / r["llm_weight_mb"]
        r["lm_loss_vs_fp32"] = r["lm_loss"] / base["lm_loss"] - 1
        if trained:
            r["loss_vs_fp32"] = r["final_loss"] / base["final_loss"] - 1
            r["step_time_vs_fp32"] = r["step_s"] / base["step_s"]
    int4 = rows[-1]
    verdict = {"int4_weight_x_smaller": int4["weight_x_smaller"], "target_4x": int4["weight_x_smaller"] >= 4}
    if trained:
        verdict.update(int4_loss_vs_fp32=int4["loss_vs_fp32"], target_loss_within_5pct=abs(int4["loss_vs_fp32"]) <= 0.05)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"steps": a.steps, "batch_size": a.batch_size, "rows": rows,
                                                  "verdict": verdict}, indent=1))
    head = "| frozen LLM | LLM weights MB | x smaller | peak RSS MB | LLM caption loss | vs fp32 |"
    lines = [head + (" s/step | x fp32 time | loss after training | vs fp32 |" if trained else ""),
             "|---" * (6 + 4 * trained) + "|"]
    for r in rows:
        line = (f"| {r['variant']} | {r['llm_weight_mb']:.0f} | {r['weight_x_smaller']:.2f} | {r['peak_rss_mb']:.0f} | "
                f"{r['lm_loss']:.3f} | {r['lm_loss_vs_fp32']:+.1%} |")
        if trained:
            line += (f" {r['step_s']:.2f} | {r['step_time_vs_fp32']:.2f} | {r['final_loss']:.3f} | "
                     f"{r['loss_vs_fp32']:+.1%} |")
        lines.append(line)
    summary = (f"\nint4 weights {verdict['int4_weight_x_smaller']:.2f}x smaller (target >= 4: "
               f"{'met' if verdict['target_4x'] else 'NOT met'}), LLM caption loss {int4['lm_loss_vs_fp32']:+.1%} vs fp32")
    if trained:
        summary += (f"; after {a.steps} steps of batch {a.batch_size}: loss {verdict['int4_loss_vs_fp32']:+.1%} vs fp32 "
                    f"(target within 5%: {'met' if verdict['target_loss_within_5pct'] else 'NOT met'})")
    lines.append(summary)
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
