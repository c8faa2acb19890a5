"""Load on `anymal serve` over loopback: continuous batching vs one request at a time, side by side.

    python bench/serve_load.py [--requests 24] [--concurrency 8] [--max-tokens 24] [--rounds 4] [--model DIR]

For each setting (`--max-batch 8`, then `--max-batch 1`, i.e. requests served one at a time) a fresh
server process is started on 127.0.0.1, warmed up with one request of each kind, then `--concurrency` client
threads send `--requests` chat completions (the bundled examples: pictures, a sound, IMU recordings,
greedy, `--max-tokens` each), through the default safety checks as a deployed server would. Reported per setting: p50/p99 latency, completion tokens/s, requests/s,
errors (expected 0), and the server's RSS after warm-up and after each of `--rounds` identical rounds
(round 1 holds the allocator's growth to batch-sized tensors; a leak shows as growth in every later
round, a plateau as none). Throughput is round 1's; latencies cover every round. Bounded: each setting stops after `--time-limit` s. Writes runs/bench/serve/results.{json,md}.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

EXAMPLES = Path(__file__).resolve().parents[1] / "anymal" / "assets" / "examples"


def _parts() -> list[list[dict]]:
    b64 = lambda p: base64.b64encode((EXAMPLES / p).read_bytes()).decode()  # noqa: E731
    img = lambda p: {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(p)}}  # noqa: E731
    return [[img(p), {"type": "text", "text": q}] for p in ("truck.png", "goat.png", "umbrella.png", "strawberry.png")
            for q in ("What is this?", "Describe the image briefly.")] + [
        [{"type": "input_audio", "input_audio": {"data": b64("goat-sound.flac"), "format": "flac"}},
         {"type": "text", "text": "What makes this sound?"}],
        [{"type": "imu", "imu": {"data": b64("walking-upstairs.csv"), "format": "csv"}},
         {"type": "text", "text": "What is the person doing?"}],
        [{"type": "imu", "imu": {"data": b64("lying-down.csv"), "format": "csv"}},
         {"type": "text", "text": "What is the person doing?"}]]


def _memory_mb(pid: int) -> tuple[float, float]:
    """The server's memory, MB, over its process and its children (the engine, the upload workers):
    (RSS summed, PSS summed). RSS counts the pages of shared libraries (torch's) once in every process;
    PSS splits each shared page between the processes that map it: the memory the server really holds."""
    import psutil

    try:
        top = psutil.Process(pid)
        procs = [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return float("nan"), float("nan")
    rss = pss = 0
    for p in procs:
        try:
            info = p.memory_full_info()
        except psutil.NoSuchProcess:  # a worker that just exited
            continue
        rss, pss = rss + info.rss, pss + info.pss
    return rss / 2**20, pss / 2**20


def _rss_mb(pid: int) -> float:
    return _memory_mb(pid)[0]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(a, max_batch: int, queue: int) -> tuple[subprocess.Popen, str]:
    """`anymal serve` in its own process on a free loopback port, once /health answers."""
    port = _port()
    cmd = [sys.executable, "-m", "anymal.cli", "serve", "--port", str(port), "--max-batch", str(max_batch),
           "--max-queue", str(queue)] + (["--model", a.model] if a.model else [])
    # its log goes to a file: a pipe nobody reads fills up with access lines (64 KB) and then blocks the
    # server's event loop on its next log write, which stalls every request
    log = tempfile.NamedTemporaryFile("w+", prefix="anymal-serve-", suffix=".log", delete=False)
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited ({log.name}): {Path(log.name).read_text()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.5)
    server.terminate()
    raise SystemExit("the server did not start within 300 s")


def run_setting(max_batch: int, a) -> dict:
    server, url = start_server(a, max_batch, a.requests + 1)
    try:
        parts = _parts()
        body = lambda i: {"model": "anymal-default" if not a.model else Path(a.model).resolve().name,  # noqa: E731
                          "messages": [{"role": "user", "content": parts[i % len(parts)]}],
                          "max_tokens": a.max_tokens, "temperature": 0}
        client = httpx.Client(timeout=a.time_limit)
        for i in range(len(parts)):  # warm-up: every kind of input once (first-call costs, allocator growth)
            client.post(url + "/v1/chat/completions", json=body(i)).raise_for_status()
        rss_before = _rss_mb(server.pid)
        stop_at = time.time() + a.time_limit

        def one(i: int) -> tuple[float, int, str | None]:
            if time.time() > stop_at:
                return 0.0, 0, "skipped: time limit"
            t = time.perf_counter()
            r = client.post(url + "/v1/chat/completions", json=body(i))
            dt = time.perf_counter() - t
            if r.status_code != 200:
                return dt, 0, f"HTTP {r.status_code}: {r.text[:200]}"
            return dt, r.json()["usage"]["completion_tokens"], None

        results, rss = [], []
        for round_ in range(a.rounds):  # round 1 includes allocator growth to batch size; later rounds show a leak
            t0 = time.perf_counter()
            with ThreadPoolExecutor(a.concurrency) as pool:
                results += pool.map(one, range(a.requests))
            if round_ == 0:
                wall = time.perf_counter() - t0  # throughput from round 1; latencies and errors of every round
            rss.append(_rss_mb(server.pid))
        health = httpx.get(url + "/health").json()
    finally:
        server.terminate()
        server.wait(timeout=30)
    lat = sorted(r[0] for r in results if r[2] is None)
    errors = [r[2] for r in results if r[2] is not None]
    tokens = sum(r[1] for r in results[:a.requests])
    q = lambda p: lat[min(len(lat) - 1, int(round(p * (len(lat) - 1))))] if lat else float("nan")  # noqa: E731
    return {"max_batch": max_batch, "requests": a.rounds * a.requests, "ok": len(lat), "errors": len(errors),
            "error_samples": errors[:3], "wall_s": wall, "p50_s": statistics.median(lat) if lat else float("nan"),
            "p99_s": q(0.99), "tokens": tokens, "tokens_per_s": tokens / wall,
            "requests_per_s": sum(r[2] is None for r in results[:a.requests]) / wall,
            "rss_before_mb": rss_before, "rss_rounds_mb": rss,
            "batches": health["batches"] - len(parts)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=24)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=24)
    p.add_argument("--rounds", type=int, default=4, help="identical rounds per setting (RSS after each)")
    p.add_argument("--model")
    p.add_argument("--time-limit", type=float, default=600.0)
    p.add_argument("--out", default="runs/bench/serve")
    a = p.parse_args()
    rows = []
    for mb in (8, 1):
        print(f"[max-batch {mb}] {a.requests} requests, {a.concurrency} clients ...", file=sys.stderr, flush=True)
        rows.append(run_setting(mb, a))
    speedup = rows[0]["tokens_per_s"] / rows[1]["tokens_per_s"]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"args": vars(a), "rows": rows, "batching_speedup": speedup}, indent=1))
    lines = ["| server | requests ok | errors | p50 s | p99 s | tokens/s | requests/s | admissions | RSS MB: warm, after each round |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| --max-batch {r['max_batch']} | {r['ok']}/{r['requests']} | {r['errors']} | {r['p50_s']:.2f} | "
              f"{r['p99_s']:.2f} | {r['tokens_per_s']:.1f} | {r['requests_per_s']:.2f} | {r['batches']} | "
              + ", ".join(f"{x:.0f}" for x in [r["rss_before_mb"], *r["rss_rounds_mb"]]) + " |" for r in rows]
    lines.append(f"\n{a.concurrency} concurrent clients, {a.max_tokens} tokens max each, greedy; continuous batching "
                 f"gives {speedup:.2f}x the tokens/s of one-at-a-time serving")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if any(r["errors"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
