"""Continuous batching: concurrent requests decoded together, joining and leaving a running batch.

One worker thread owns the LLM and one running DecodeBatch. Between two decode steps, waiting
jobs are admitted in arrival order while their rows fit (`max_batch` rows; a request with `n`
choices is `n` rows) and handed to a second thread, which encodes their inputs in one batched call
per modality (job by job if one is undecodable, so that only its own request fails) while the batch
goes on decoding: a slow input never stalls the streams already running. Encoded jobs have their
prompts prefilled and their rows join the batch mid-decode, so a request never waits for a running
batch to finish. Each row has its own
sampling settings and seeded generator, token budget and stop strings, and leaves the batch as soon
as it is done; text is handed to its job as soon as it is final (never half a character or a
possible stop-string prefix). A cancelled job (client gone, timeout) leaves at the next step.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from ..errors import AnymalError
from ..model.generation import TextStream
from ..model.messages import Conversation
from .events import Delta, Event, Failed, Finish, PromptUsage
from .protocol import ChatRequest, ServeError, input_error

log = logging.getLogger("anymal.serve")


@dataclass
class Job:
    request: ChatRequest
    loop: asyncio.AbstractEventLoop | None  # the handler's event loop, where `events` are read
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    checked: float = field(default_factory=time.monotonic)  # last look at the client's connection
    conversation: Conversation | None = None  # the request's messages, validated once
    sink: Callable[[Event], None] | None = None  # where events go instead (the engine process's pipe)

    def emit(self, event: Event) -> None:
        if self.sink is not None:
            self.sink(event)
        else:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)


@dataclass
class _Row:
    """One choice of one job, decoding in the running batch."""
    job: Job
    choice: int
    stream: TextStream
    used: int = 0


class Engine:
    dead: str | None = None  # why it stopped serving (an engine process can exit; this thread cannot)

    def __init__(self, model, max_batch: int = 8, max_queue: int = 64):
        self.model, self.max_batch, self.max_queue = model, max_batch, max_queue
        self.waiting: deque[Job] = deque()
        self.cond = threading.Condition()
        self.batches = 0  # admissions so far: groups of requests prefilled together (for tests and /health)
        self.joined_running = 0  # ... of which joined a batch that was already decoding
        self.rows_decoded = 0
        self.rows_cancelled = 0  # rows dropped mid-decode (client gone, timeout)
        self.tokens_out = 0  # tokens decoded for rows still wanted
        self.busy = False
        self.running = True
        # inputs are decoded and encoded here, beside the decode loop (one thread: the encoders batch)
        self.encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="anymal-encoder")
        self.encoding: list[tuple[list[Job], Future]] = []
        self.thread = threading.Thread(target=self._loop, name="anymal-engine", daemon=True)
        self.thread.start()

    @property
    def modalities(self) -> list[str]:
        return sorted(self.model.projectors)

    @property
    def context_window(self) -> int:
        return self.model.llm.context_window

    def submit(self, request: ChatRequest) -> Job:
        """Queue a request from the handler's event loop; its events arrive on `job.events`."""
        return self.enqueue(Job(request, asyncio.get_running_loop()))

    def enqueue(self, job: Job) -> Job:
        with self.cond:
            if len(self.waiting) >= self.max_queue:
                raise busy(self.max_queue)
            self.waiting.append(job)
            self.cond.notify()
        return job

    def close(self) -> None:
        with self.cond:
            self.running = False
            self.cond.notify()
        self.thread.join(timeout=10)
        self.encoder.shutdown(wait=False, cancel_futures=True)

    @property
    def queued(self) -> int:
        return len(self.waiting)

    # ---------------------------------------------------------------- worker
    def _take(self, rows: int, idle: bool) -> list[Job]:
        """Waiting jobs whose rows fit beside `rows` running or encoding ones (in arrival order; a job
        wider than max_batch runs alone). Blocks only while `idle`: nothing decoding, nothing encoded."""
        with self.cond:
            while self.running and not self.waiting and idle and not self._encoded():
                self.cond.wait()
            jobs = []
            while self.running and self.waiting and (rows == 0 or rows + self.waiting[0].request.n <= self.max_batch):
                job = self.waiting.popleft()
                if not job.cancelled.is_set():
                    jobs.append(job)
                    rows += job.request.n
            return jobs

    def _encoded(self) -> bool:
        return any(f.done() for _, f in self.encoding)

    def _encode(self, jobs: list[Job]) -> None:
        future = self.encoder.submit(_encode_jobs, self.model, jobs)
        future.add_done_callback(lambda _: self._wake())
        self.encoding.append((jobs, future))

    def _wake(self) -> None:
        with self.cond:
            self.cond.notify()

    def _ready(self) -> tuple[list[tuple[Job, list]], list[Job]]:
        """The jobs whose encoding finished: (encoded ones, ready to join; all of them)."""
        done, self.encoding = _partition(self.encoding, lambda e: e[1].done())
        ready = []
        for jobs, f in done:
            try:
                ready += f.result()
            except Exception as e:  # _encode_jobs fails jobs one by one; anything else fails its group
                for job in jobs:
                    _fail(job, e)
        return ready, [j for jobs, _ in done for j in jobs]

    def _loop(self) -> None:
        batch, active = self.model.decoder(), []
        while self.running:
            encoding = sum(j.request.n for jobs, _ in self.encoding for j in jobs)
            jobs = self._take(len(active) + encoding, idle=not active)
            if jobs:
                self._encode(jobs)
            ready, jobs = self._ready()
            try:
                if ready:
                    active += self._join(batch, ready, running=bool(active))
                if not active:
                    continue
                self.busy = True
                keep = [self._emit(row, tid) for row, tid in zip(active, batch.sample())]
                active = [row for row, k in zip(active, keep) if k]
                batch.advance(keep)
            except Exception as e:  # never kill the worker: fail what was decoding, keep serving
                log.exception("decoding failed")
                for j in {id(j): j for j in [r.job for r in active] + jobs}.values():
                    j.emit(Failed(ServeError(500, f"generation failed: {type(e).__name__}", type="server_error")))
                batch, active = self.model.decoder(), []
            finally:
                self.busy = bool(active or self.encoding)

    def _join(self, batch, ready: list[tuple[Job, list]], running: bool) -> list[_Row]:
        """Prefill encoded jobs, add their rows to the batch; the rows to follow. A job whose prompt
        cannot be prepared or joined fails alone; the others join."""
        rows = _isolated(lambda group: self._add(batch, *self._prepare(group)), ready)
        if rows:
            self.batches += 1
            self.joined_running += running
        return rows

    def _prepare(self, ready: list[tuple[Job, list]]):
        pairs = [(job, i) for job, _ in ready for i in range(job.request.n)]
        prompt = self.model.prepare([job.conversation for job, _ in pairs],
                                    [f for job, f in ready for _ in range(job.request.n)])
        return pairs, prompt

    def _add(self, batch, pairs: list[tuple[Job, int]], prompt) -> list[_Row]:
        batch.join(prompt.embeds, prompt.mask, [job.request.settings for job, _ in pairs], prompt.bind,
                   indices=[choice for _, choice in pairs])
        for (job, choice), c in zip(pairs, prompt.counts):
            if choice == 0:
                job.emit(PromptUsage(c))
        self.rows_decoded += len(pairs)
        return [_Row(job, choice, self.model.text_stream(job.request.settings.stop)) for job, choice in pairs]

    def _emit(self, row: _Row, tid: int | Exception) -> bool:
        """Hand a row's new token to its job; whether the row goes on decoding. A row whose own
        sampling failed fails its job alone."""
        job = row.job
        if isinstance(tid, Exception):
            if not job.cancelled.is_set():
                _fail(job, tid)
                job.cancelled.set()  # its other choices leave the batch too
            return False
        if job.cancelled.is_set():
            self.rows_cancelled += 1
            return False
        row.used += 1
        self.tokens_out += 1
        piece = row.stream.push(tid)
        if piece:
            job.emit(Delta(row.choice, piece, row.used))
        if not (row.stream.finished or row.used >= job.request.settings.max_new_tokens):
            return True
        reason = "stop" if row.stream.finished else "length"
        tail = row.stream.close()
        if tail:
            job.emit(Delta(row.choice, tail, row.used))
        job.emit(Finish(row.choice, reason, row.used - (tid in row.stream.eos)))
        return False


def busy(max_queue: int) -> ServeError:
    """The 503 a request gets when `max_queue` requests are waiting already."""
    return ServeError(503, f"the server is busy ({max_queue} requests waiting); retry later", code="server_busy",
                      type="server_error")


def _partition(items: list, test) -> tuple[list, list]:
    """(the items that pass `test`, the others), each item tested once."""
    yes, no = [], []
    for item in items:
        (yes if test(item) else no).append(item)
    return yes, no


def _encode_jobs(model, jobs: list[Job]) -> list[tuple[Job, list]]:
    """Every job's media features: one batched encoder call per modality for all the jobs (each job's
    messages are validated once, kept as its Conversation for the prefill)."""
    def encode(group: list[Job]) -> list[tuple[Job, list]]:
        for j in group:
            j.conversation = j.conversation or model.conversations([j.request.messages])[0]
        return list(zip(group, model.features_of([j.conversation for j in group])))

    return _isolated(encode, jobs)


def _isolated(work, items: list) -> list:
    """`work(items)` in one batched call; if that fails, item by item, so that a job's bad input
    becomes its own error (400 for input faults, 500 for ours) and the rest go on. An item is a
    job or a (job, features) pair."""
    if not items:
        return []
    try:
        return work(items)
    except Exception as e:
        if len(items) == 1:
            _fail(_job_of(items[0]), e)
            return []
    out = []
    for item in items:
        try:
            out += work([item])
        except Exception as e:
            _fail(_job_of(item), e)
    return out


def _job_of(item) -> Job:
    return item if isinstance(item, Job) else item[0]


def _fail(job: Job, e: Exception) -> None:
    if isinstance(e, AnymalError):
        job.emit(Failed(input_error(e, job.request.files)))
    else:
        log.error("request failed: %s: %s", type(e).__name__, e)
        job.emit(Failed(ServeError(500, f"generation failed: {type(e).__name__}", type="server_error")))
