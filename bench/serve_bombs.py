"""Issue 33's bomb mix on `anymal serve`: do good requests survive, how slow does a text request get, how
much memory does the server take?

    python bench/serve_bombs.py [--clients 32] [--seconds 60] [--max-tokens 8] [--model DIR]

One `anymal serve` (the shipped model, default safety checks; its engine and upload workers are child
processes). Three phases, side by side:
1. unloaded: text requests one at a time (their median latency is the reference);
2. the same text requests, one at a time, while `--clients` threads send bombs for `--seconds`, then
   while they send `GET /health` (nothing to parse or check) for half as long: what the volume alone costs
   when clients and server share the machine's cores (the senders run niced, standing in for clients on
   other machines: they get the CPU the server leaves; the probe's thread keeps its priority);
3. `--clients` threads sending, each in turn, a bomb and a good request with the settings JavaScript
   clients send ("temperature": 1, "repetition_penalty": 2, "temperature": 1e-300: integers and
   extremes that failed whole batches before), for `--seconds`: every good request must succeed.
Bombs: a 20,000-scan progressive JPEG, MP4s declaring 50 million samples or 1,000 tracks, 50,000 one-
character text parts, .npy headers declaring 10^10 rows, a 140,000-character CSV field, a PNG text bomb
(tests/bad_inputs.py builds them). Reported: good requests ok / failed, the bombs' status codes, the text
request's median latency loaded vs unloaded, and the server's peak memory over its processes (the
front end, the engine, the upload workers; PSS and RSS summed, sampled every 0.3 s). Writes
runs/bench/bombs/results.{json,md}; exits 1 when a good request failed or a bomb got a 500.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
from bad_inputs import (mp4_declaring_samples, mp4_of_tracks, npy_header, png_text_bomb,  # noqa: E402
                        progressive_jpeg)
from serve_load import _memory_mb, start_server  # noqa: E402

NICE_SENDERS = int(os.environ.get("NICE_SENDERS", 19))
TEXT = [{"role": "user", "content": "What is the capital of France?"}]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def bombs(model: str) -> list[tuple[str, dict]]:
    ask = lambda *parts: {"model": model, "max_tokens": 8, "messages": [  # noqa: E731
        {"role": "user", "content": [*parts, {"type": "text", "text": "What is this?"}]}]}
    image = lambda data, kind: ask({"type": "image_url", "image_url": {"url": f"data:image/{kind};base64,{_b64(data)}"}})  # noqa: E731
    video = lambda data: ask({"type": "video", "video": {"data": _b64(data), "format": "mp4"}})  # noqa: E731
    field = "t,ax,ay,az,gx,gy,gz\n0," + "1" * 140_000 + ",0,0,0,0,0\n"
    return [
        ("JPEG of 20,000 scans", image(progressive_jpeg(20_000), "jpeg")),
        ("PNG text bomb", image(png_text_bomb(), "png")),
        ("MP4 declaring 50 M samples", video(mp4_declaring_samples(50_000_000))),
        ("MP4 of 1,000 tracks", video(mp4_of_tracks(1000))),
        ("50,000 text parts", {"model": model, "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}] * 50_000}]}),
        (".npy declaring 10^10 rows", ask({"type": "imu", "imu": {"data": _b64(npy_header((10**10, 6)) + bytes(2400)),
                                                                  "format": "npy", "rate": 50}})),
        ("CSV field of 140,000 characters", ask({"type": "imu", "imu": {"data": _b64(field.encode()), "format": "csv"}})),
    ]


def goods(model: str, max_tokens: int) -> list[tuple[str, dict]]:
    body = lambda **s: {"model": model, "messages": TEXT, "max_tokens": max_tokens, **s}  # noqa: E731
    return [("temperature 1 (an integer)", body(temperature=1, seed=1)),
            ("repetition_penalty 2 (an integer)", body(repetition_penalty=2)),
            ("temperature 1e-300", body(temperature=1e-300)),
            ("greedy", body())]


class RSS:
    """The server's peak memory over its processes (RSS summed, and PSS: shared pages counted once),
    sampled in a thread."""

    def __init__(self, pid: int):
        self.pid, self.stop = pid, threading.Event()
        self.peak = _memory_mb(pid)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.3):
            self.peak = tuple(max(a, b) for a, b in zip(self.peak, _memory_mb(self.pid)))

    def close(self) -> tuple[float, float]:
        self.stop.set()
        self.thread.join()
        return self.peak


def probe(client, url: str, model: str, until: float | None, n: int) -> list[float]:
    """Text requests one at a time: their latencies (n of them, or until `until`)."""
    out = []
    while (until is None and len(out) < n) or (until is not None and time.time() < until):
        t = time.perf_counter()
        r = client.post(url + "/v1/chat/completions", json={"model": model, "messages": TEXT, "max_tokens": 8})
        r.raise_for_status()
        out.append(time.perf_counter() - t)
    return out


def _timed(client, url: str, body: dict, repeats: int = 3) -> tuple[int, float]:
    """(status, median seconds) of one request sent alone, `repeats` times."""
    times, code = [], 0
    for _ in range(repeats):
        t = time.perf_counter()
        code = client.post(url + "/v1/chat/completions", json=body).status_code
        times.append(time.perf_counter() - t)
    return code, statistics.median(times)


def storm(client, url: str, jobs: list[tuple[str, str, dict]], clients: int, until: float) -> list[tuple[str, str, int]]:
    """`clients` threads sending `jobs` in turn until `until`: (kind, name, status) of each."""
    def worker(k: int):
        # the senders stand in for clients on other machines: niced, they take only the CPU the server
        # leaves (on this thread alone; the probe's thread keeps its priority)
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE_SENDERS)
        out, i = [], k
        while time.time() < until:
            kind, name, body = jobs[i % len(jobs)]
            r = client.get(url + "/health") if body is None else client.post(url + "/v1/chat/completions", json=body)
            out.append((kind, name, r.status_code))
            i += clients
        return out

    with ThreadPoolExecutor(clients) as pool:
        return [r for rows in pool.map(worker, range(clients)) for r in rows]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--max-tokens", type=int, default=8)
    p.add_argument("--model")
    p.add_argument("--out", default="runs/bench/bombs")
    a = p.parse_args()
    model = "anymal-default" if not a.model else Path(a.model).resolve().name
    bad, good = bombs(model), goods(model, a.max_tokens)
    mixed = [job for g, b in zip(good * len(bad), bad * len(good)) for job in (("bomb", *b), ("good", *g))]
    server, url = start_server(a, max_batch=8, queue=4 * a.clients)
    client = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=a.clients + 8))
    try:
        probe(client, url, model, None, 3)  # warm-up
        each = {name: _timed(client, url, body) for name, body in bad}  # one at a time: what one bomb costs
        rss = RSS(server.pid)
        alone = probe(client, url, model, None, 10)
        rss_alone = rss.peak
        until = time.time() + a.seconds
        with ThreadPoolExecutor(1) as side:
            loaded_f = side.submit(probe, client, url, model, until, 0)
            bombs_only = storm(client, url, [("bomb", *b) for b in bad], a.clients, until)
            loaded = loaded_f.result()
        until = time.time() + a.seconds / 2  # the same number of clients asking for nothing: what volume costs
        with ThreadPoolExecutor(1) as side:
            health_f = side.submit(probe, client, url, model, until, 0)
            storm(client, url, [("health", "GET /health", None)], a.clients, until)
            health = health_f.result()
        rows = storm(client, url, mixed, a.clients, time.time() + a.seconds)
        peak = rss.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    status = Counter(f"{name}: {code}" for kind, name, code in rows + bombs_only if kind == "bomb")
    good_rows = [(n, c) for kind, n, c in rows if kind == "good"]
    failed = Counter(f"{n}: {c}" for n, c in good_rows if c != 200)
    result = {"args": vars(a), "unloaded_p50_s": statistics.median(alone), "loaded_p50_s": statistics.median(loaded),
              "loaded_n": len(loaded), "ratio": statistics.median(loaded) / statistics.median(alone),
              "health_flood_p50_s": statistics.median(health),
              "good": len(good_rows), "good_failed": dict(failed), "bombs": sum(status.values()),
              "bomb_status": dict(status), "bomb_alone": each, "rss_mb_unloaded": rss_alone[0], "rss_mb_peak": peak[0],
              "pss_mb_unloaded": rss_alone[1], "pss_mb_peak": peak[1]}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1))
    lines = ["| measure | value |", "|---|---|",
             f"| text request, unloaded: median latency | {result['unloaded_p50_s']:.2f} s |",
             f"| the same while {a.clients} clients send bombs ({a.seconds:g} s): median ({len(loaded)} requests) | "
             f"{result['loaded_p50_s']:.2f} s (x{result['ratio']:.2f}) |",
             f"| the same while {a.clients} clients send GET /health ({a.seconds / 2:g} s): median ({len(health)}) | "
             f"{result['health_flood_p50_s']:.2f} s (x{result['health_flood_p50_s'] / result['unloaded_p50_s']:.2f}) |",
             f"| then bombs and good requests in turn ({a.clients} clients, {a.seconds:g} s): good requests "
             f"(integer and extreme settings) ok | {len(good_rows) - sum(failed.values())}/{len(good_rows)} |",
             f"| bombs sent | {result['bombs']} |",
             f"| server memory, its processes' PSS summed (shared pages once): unloaded / peak | "
             f"{rss_alone[1]:.0f} / {peak[1]:.0f} MB |",
             f"| the same as RSS summed (torch's shared pages in each process) | {rss_alone[0]:.0f} / {peak[0]:.0f} MB |"]
    lines += ["", "| bomb | sent alone: status, seconds | in the storms: status x count |", "|---|---|---|"]
    lines += [f"| {name} | {code}, {dt:.3f} s | " + ", ".join(f"{k.rsplit(': ', 1)[1]} x{v}" for k, v in sorted(status.items())
                                                        if k.rsplit(": ", 1)[0] == name) + " |"
              for name, (code, dt) in each.items()]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if failed or any(k.endswith(": 500") for k in status) else 0


if __name__ == "__main__":
    sys.exit(main())
