"""Dynamic batching: concurrent requests decoded together in one batched generation.

One worker thread owns the model. Waiting jobs that share sampling settings (temperature, top_p,
seed) are taken together, up to `max_batch` rows (a request with `n` choices is `n` rows). Their
inputs are encoded in one batched call per modality (job by job if one is undecodable, so that only
its own request fails), then one left-padded batch is decoded step by step. Each row has its own
token budget and stop strings; text is handed to the job as soon as it is final (never half a
character or a possible stop-string prefix). A cancelled
job (client gone, timeout) stops receiving text at once and its rows stop counting; the batch ends
when every row is done. Jobs arriving during a batch wait for the next one (rows do not join a
running batch mid-decode).
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace

from ..errors import AnymalError
from ..model.generation import TextStream
from .protocol import ChatRequest, ServeError

log = logging.getLogger("anymal.serve")


@dataclass
class Job:
    request: ChatRequest
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    checked: float = field(default_factory=time.monotonic)  # last look at the client's connection

    def emit(self, *event) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    @property
    def key(self) -> tuple:
        s = self.request.settings
        return (s.temperature if s.temperature > 0 else 0.0, s.top_p if s.temperature > 0 else 1.0, s.seed)


class Engine:
    def __init__(self, model, max_batch: int = 8, max_queue: int = 64):
        self.model, self.max_batch, self.max_queue = model, max_batch, max_queue
        self.waiting: deque[Job] = deque()
        self.cond = threading.Condition()
        self.batches = 0  # batched generations run so far (for tests and /health)
        self.rows_decoded = 0
        self.rows_cancelled = 0  # rows dropped mid-decode (client gone, timeout)
        self.tokens_out = 0  # tokens decoded for rows still wanted
        self.busy = False
        self.running = True
        self.thread = threading.Thread(target=self._loop, name="anymal-engine", daemon=True)
        self.thread.start()

    def submit(self, request: ChatRequest) -> Job:
        job = Job(request, asyncio.get_running_loop())
        with self.cond:
            if len(self.waiting) >= self.max_queue:
                raise ServeError(503, f"the server is busy ({self.max_queue} requests waiting); retry later",
                                 code="server_busy", type="server_error")
            self.waiting.append(job)
            self.cond.notify()
        return job

    def close(self) -> None:
        with self.cond:
            self.running = False
            self.cond.notify()
        self.thread.join(timeout=10)

    @property
    def queued(self) -> int:
        return len(self.waiting)

    # ---------------------------------------------------------------- worker
    def _take(self) -> list[Job]:
        with self.cond:
            while self.running and not self.waiting:
                self.cond.wait()
            if not self.running:
                return []
            first = self.waiting.popleft()
            jobs, rows = [first], first.request.n
            for job in list(self.waiting):
                if job.key == first.key and rows + job.request.n <= self.max_batch:
                    self.waiting.remove(job)
                    jobs.append(job)
                    rows += job.request.n
            return jobs

    def _loop(self) -> None:
        while self.running:
            jobs = [j for j in self._take() if not j.cancelled.is_set()]
            if not jobs:
                continue
            self.busy = True
            try:
                self._run(jobs)
            except Exception as e:  # never kill the worker: fail the batch, keep serving
                log.exception("batch failed")
                for j in jobs:
                    j.emit("error", ServeError(500, f"generation failed: {type(e).__name__}", type="server_error"))
            finally:
                self.busy = False

    def _run(self, jobs: list[Job]) -> None:
        model = self.model
        ready = _encode_jobs(model, jobs)
        if not ready:
            return
        rows = [(job, i) for job, _ in ready for i in range(job.request.n)]
        convs = [job.request.messages for job, _ in rows]
        feats = [f for job, f in ready for _ in range(job.request.n)]
        try:
            prompt = model.prepare(convs, feats)
        except AnymalError as e:  # e.g. a prompt longer than the LLM's context
            for job, _ in ready:
                job.emit("error", ServeError(400, _client_message(str(e), job.request)))
            return
        for (job, choice), c in zip(rows, prompt.counts):
            if choice == 0:
                job.emit("usage_prompt", c)
        eos = model.llm.eos_token_ids
        streams = [TextStream(model.llm.tokenizer, job.request.settings.stop + model.llm.default_stop, eos)
                   for job, _ in rows]
        budget = [job.request.settings.max_new_tokens for job, _ in rows]
        used = [0] * len(rows)
        done = [False] * len(rows)
        settings = replace(rows[0][0].request.settings, max_new_tokens=max(budget), stop=[])
        self.batches += 1
        self.rows_decoded += len(rows)
        for step in model.decode(prompt, settings):
            for r, ((job, choice), tid) in enumerate(zip(rows, step.tolist())):
                if done[r]:
                    continue
                if job.cancelled.is_set():
                    done[r] = True
                    self.rows_cancelled += 1
                    continue
                used[r] += 1
                self.tokens_out += 1
                piece = streams[r].push(tid)
                if piece:
                    job.emit("delta", choice, piece, used[r])
                if streams[r].finished or used[r] >= budget[r]:
                    reason = "stop" if streams[r].finished else "length"
                    tail = streams[r].close()
                    if tail:
                        job.emit("delta", choice, tail, used[r])
                    done[r] = True
                    job.emit("finish", choice, reason, used[r] - (tid in eos))
            if all(done):  # every row ends within the loop: its budget is at most the batch's
                break


def _encode_jobs(model, jobs: list[Job]) -> list[tuple[Job, list]]:
    """Every job's media features: one batched encoder call per modality for the whole batch; if an
    input is undecodable, job by job, so that only its own request fails."""
    try:
        return list(zip(jobs, model.conversation_features([j.request.messages for j in jobs])))
    except AnymalError:
        out = []
        for job in jobs:
            try:
                out.append((job, model.conversation_features([job.request.messages])[0]))
            except AnymalError as e:
                job.emit("error", ServeError(400, _client_message(str(e), job.request)))
        return out


def _client_message(message: str, request: ChatRequest) -> str:
    """Our temp file names mean nothing to the client: say 'the payload' instead."""
    for f in request.files:
        message = message.replace(str(f), f"the uploaded {f.suffix.lstrip('.')} payload")
    return message
