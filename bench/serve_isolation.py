"""Bad requests mixed into good ones on `anymal serve`: a bad request must never fail a good one.

    python bench/serve_isolation.py [--requests 32] [--concurrency 16] [--bad-every 2] [--max-tokens 16] [--model DIR]

One server process (the shipped model, default safety checks), `--concurrency` client threads. Two
rounds side by side: only good requests (the bundled examples, greedy), then the same good requests
with a bad one after every `--bad-every` of them (text with the processor's slot marker, a lone
surrogate, a truncated PNG, a non-UTF-8 IMU CSV, a .npy of strings as points, an ffconcat list posing
as MP4, an IMU rate of NaN, JSON nested 100,000 deep, a text/plain body). Reported per round: good
requests ok / failed, their p50 latency, and the bad requests' status codes (expected: 4xx only).
Good answers must equal round 1's (greedy). Writes runs/bench/isolation/results.{json,md}; exits 1
when a good request failed, changed its answer, or a bad one got a 5xx.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import _parts, start_server  # noqa: E402


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def bad_requests(model: str) -> list[tuple[str, bytes, str]]:
    """(name, raw body, content type) of each bad request."""
    png = (Path(__file__).resolve().parents[1] / "anymal" / "assets" / "examples" / "goat.png").read_bytes()
    ask = lambda *parts: json.dumps({"model": model, "max_tokens": 8, "messages": [  # noqa: E731
        {"role": "user", "content": [*parts, {"type": "text", "text": "What is this?"}]}]}).encode()
    csv = b"t,ax,ay,az,gx,gy,gz\n0,1,2,3,4,5,6\n0.02,caf\xe9,2,3,4,5,6\n"
    return [
        ("slot marker in text", ask({"type": "text", "text": "x \ue0000\ue001"}), "application/json"),
        ("lone surrogate", ask().replace(b"What is this?", b"What \\ud800 is this?"), "application/json"),
        ("truncated PNG", ask({"type": "image_url", "image_url": {"url": "data:image/png;base64," + _b64(png[:300])}}),
         "application/json"),
        ("non-UTF-8 IMU CSV", ask({"type": "imu", "imu": {"data": _b64(csv), "format": "csv"}}), "application/json"),
        ("points .npy of strings", ask({"type": "points", "points": {"data": _b64(_npy(np.array([["a"] * 3] * 8))),
                                                                     "format": "npy"}}), "application/json"),
        ("ffconcat as MP4", ask({"type": "video", "video": {"data": _b64(b"ffconcat version 1.0\nfile /etc/hostname\n"),
                                                            "format": "mp4"}}), "application/json"),
        ("IMU rate NaN", ask({"type": "imu", "imu": {"data": _b64(_npy(np.zeros((100, 6), np.float32))), "format": "npy",
                                                     "rate": float("nan")}}), "application/json"),
        ("JSON nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000, "application/json"),
        ("text/plain body", ask(), "text/plain"),
    ]


def run_round(client, url: str, good: list[dict], bad: list, bad_every: int, concurrency: int) -> dict:
    jobs = []
    for i, body in enumerate(good):
        jobs.append(("good", i, json.dumps(body).encode(), "application/json"))
        if bad and (i + 1) % bad_every == 0:
            name, raw, kind = bad[(i // bad_every) % len(bad)]
            jobs.append(("bad", name, raw, kind))

    def one(job):
        t = time.perf_counter()
        r = client.post(url + "/v1/chat/completions", content=job[2], headers={"Content-Type": job[3]})
        return job, r.status_code, time.perf_counter() - t, r.json() if r.headers.get("content-type", "").startswith(
            "application/json") else r.text

    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, jobs))
    answers, lat, failed, bad_codes = {}, [], [], Counter()
    for job, code, dt, body in results:
        if job[0] == "good":
            if code == 200:
                answers[job[1]] = body["choices"][0]["message"]["content"]
                lat.append(dt)
            else:
                failed.append(f"{code}: {str(body)[:200]}")
        else:
            bad_codes[f"{job[1]}: {code}"] += 1
    return {"good": len(good), "good_ok": len(lat), "good_failed": failed, "p50_s": statistics.median(lat) if lat else None,
            "bad": sum(bad_codes.values()), "bad_status": dict(bad_codes), "answers": answers}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=32, help="good requests per round")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--bad-every", type=int, default=2, help="one bad request after every K good ones")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--model")
    p.add_argument("--out", default="runs/bench/isolation")
    a = p.parse_args()
    name = "anymal-default" if not a.model else Path(a.model).resolve().name
    parts = _parts()
    good = [{"model": name, "messages": [{"role": "user", "content": parts[i % len(parts)]}], "max_tokens": a.max_tokens}
            for i in range(a.requests)]
    server, url = start_server(a, 8, 2 * a.requests + 8)
    try:
        client = httpx.Client(timeout=600)
        print(f"round 1: {a.requests} good requests, {a.concurrency} clients ...", file=sys.stderr, flush=True)
        alone = run_round(client, url, good, [], a.bad_every, a.concurrency)
        print("round 2: the same, with bad requests mixed in ...", file=sys.stderr, flush=True)
        mixed = run_round(client, url, good, bad_requests(name), a.bad_every, a.concurrency)
    finally:
        server.terminate()
        server.wait(timeout=30)
    changed = sorted(i for i in mixed["answers"] if alone["answers"].get(i) != mixed["answers"][i])
    server_faults = {k: v for k, v in mixed["bad_status"].items() if k.rsplit(": ", 1)[1].startswith("5")}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = {"good only": alone, "good + bad mixed": mixed}
    (out / "results.json").write_text(json.dumps({"args": vars(a), "rounds": rows, "changed_answers": changed}, indent=1))
    lines = ["| round | good ok | good failed | good p50 s | bad requests | bad requests' status |", "|---|---|---|---|---|---|"]
    for label, r in rows.items():
        status = "; ".join(f"{k} x{v}" for k, v in sorted(r["bad_status"].items())) or "-"
        lines.append(f"| {label} | {r['good_ok']}/{r['good']} | {len(r['good_failed'])} | {r['p50_s']:.2f} | {r['bad']} | {status} |")
    lines.append(f"\n{a.concurrency} concurrent clients; good answers changed by the bad traffic: {len(changed)}; "
                 f"bad requests answered 5xx: {sum(server_faults.values())}")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if mixed["good_failed"] or alone["good_failed"] or changed or server_faults:
        sys.exit(1)


if __name__ == "__main__":
    main()
