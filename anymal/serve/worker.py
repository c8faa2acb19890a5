"""The engine in its own process: `anymal serve` decodes in a child process, the HTTP front end stays here.

Why: Python runs one thread at a time. The decode loop hands the interpreter back at every tensor
operation, and while request threads parse a flood of bodies it waits for it each time: a text
request's answer took 7-10x longer under 32 clients sending refused bombs (docs/serving.md). In its own
process the engine has an interpreter to itself; here, the event loop, request parsing and the safety
checks share the other one.

`EngineProcess` has the Engine's interface (`submit`, `close`, `queued`, `batches`, `modalities`,
`context_window`). The child loads the model itself (the parent never holds a copy), runs an `Engine`,
and sends each job's events back through a pipe; a cancelled job is cancelled there too. The child is
*spawned* (a fresh interpreter: no copy of the parent's threads or OpenMP state, CUDA-safe), and imports
the modules outside anymal that registered parts in the parent first, so a custom encoder serves too.
If the child dies, its requests fail with a 500 and later ones get a 503 naming the exit code.
"""
from __future__ import annotations

import asyncio
import importlib
import itertools
import logging
import multiprocessing
import os
import signal
import threading
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

from ..registry import foreign_modules
from .engine import Engine, Job, busy
from .events import Failed, Finish
from .protocol import ChatRequest, Limits, ServeError, parse_chat_body

log = logging.getLogger("anymal.serve")
NO_LIMIT = 1 << 30  # the child's own queue: the front end bounds how many requests wait
UPLOAD_NICE = 10
UPLOAD_WORKERS = max(1, (os.cpu_count() or 2) // 2)  # half the cores: the rest stay with decoding


class _Cancel(threading.Event):
    """A job's cancel flag that also tells the child (once)."""

    def __init__(self, tell: Callable[[], None]):
        super().__init__()
        self._tell = tell

    def set(self) -> None:
        if not self.is_set():
            super().set()
            self._tell()


class EngineProcess:
    def __init__(self, load: Callable[[], object], max_batch: int = 8, max_queue: int = 64,
                 start_timeout_s: float = 600.0):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_child, args=(child, load, max_batch, foreign_modules()),
                                name="anymal-engine", daemon=True)
        self.proc.start()
        child.close()
        if not self.conn.poll(start_timeout_s):
            self.proc.kill()
            raise RuntimeError(f"the engine process did not load the model within {start_timeout_s:g} s")
        kind, info = self.conn.recv()
        if kind != "ready":  # the loader's own error (a missing checkpoint is a ConfigError, as in-process)
            self.proc.join(timeout=10)
            raise info
        self.modalities, self.context_window = info["modalities"], info["context_window"]
        self.max_queue, self.batches = max_queue, 0
        self.jobs: dict[int, tuple[Job, set[int]]] = {}  # id -> (job, its choices still decoding)
        self.waiting: set[int] = set()  # submitted, nothing heard back yet
        self.ids, self.lock, self.send_lock, self.dead = itertools.count(), threading.Lock(), threading.Lock(), None
        self.reader = threading.Thread(target=self._read, name="anymal-engine-reader", daemon=True)
        self.reader.start()

    @property
    def queued(self) -> int:
        return len(self.waiting)

    def submit(self, request: ChatRequest) -> Job:
        if self.dead:
            raise ServeError(503, self.dead, code="engine_exited", type="server_error")
        if len(self.waiting) >= self.max_queue:
            raise busy(self.max_queue)
        jid = next(self.ids)
        job = Job(request, asyncio.get_running_loop(), cancelled=_Cancel(lambda: self._send(("cancel", jid))))
        with self.lock:
            self.jobs[jid] = (job, set(range(request.n)))
            self.waiting.add(jid)
        self._send(("submit", jid, request))
        return job

    def close(self) -> None:
        self.dead = "the server is shutting down"
        self._send(("close",))
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.kill()

    def _send(self, message) -> None:
        try:
            with self.send_lock:
                self.conn.send(message)
        except (OSError, ValueError):  # the child is gone: _read fails its jobs
            pass

    def _read(self) -> None:
        while True:
            try:
                jid, event, self.batches = self.conn.recv()
            except (EOFError, OSError):
                return None if self.dead else self._lost()
            with self.lock:
                entry = self.jobs.get(jid)
                self.waiting.discard(jid)
                if _ends(entry, event):
                    self.jobs.pop(jid)
            if entry is not None:
                entry[0].emit(event)

    def _lost(self) -> None:
        self.proc.join(timeout=5)
        self.dead = f"the model's process exited (code {self.proc.exitcode}); restart the server"
        log.error(self.dead)
        with self.lock:
            jobs, self.jobs = self.jobs, {}
            self.waiting.clear()
        for job, _ in jobs.values():
            job.emit(Failed(ServeError(500, self.dead, type="server_error", code="engine_exited")))


def _child(conn, load: Callable[[], object], max_batch: int, modules: list[str]) -> None:
    """The engine process: load, report what it serves, then run jobs until told to close."""
    try:
        _prepare_child(modules)
        engine = Engine(load(), max_batch, NO_LIMIT)
    except Exception as e:
        try:
            conn.send(("error", e))
        except Exception:  # an error that does not pickle
            conn.send(("error", RuntimeError(f"the engine process could not load the model: {type(e).__name__}: {e}")))
        return
    conn.send(("ready", {"modalities": engine.modalities, "context_window": engine.context_window}))
    lock, jobs = threading.Lock(), {}  # id -> (job, its choices still decoding)

    def sink(jid: int, event) -> None:
        with lock:
            conn.send((jid, event, engine.batches))
            if _ends(jobs.get(jid), event):
                jobs.pop(jid, None)

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the front end is gone
            break
        if message[0] == "close":
            break
        with lock:
            if message[0] == "submit":
                _, jid, request = message
                job = Job(request, None, sink=lambda ev, jid=jid: sink(jid, ev))
                jobs[jid] = (job, set(range(request.n)))
            elif message[0] == "cancel" and message[1] in jobs:
                job = None
                jobs.pop(message[1])[0].cancelled.set()
        if message[0] == "submit":
            engine.enqueue(job)
    engine.close()


def _ends(entry: tuple[Job, set[int]] | None, event) -> bool:
    """Whether `event` is its job's last (a failure, or the last open choice finishing)."""
    if entry is None:
        return False
    if isinstance(event, Finish):
        entry[1].discard(event.choice)
    return isinstance(event, Failed) or (isinstance(event, Finish) and not entry[1])


class UploadLane:
    """Where large request bodies (base64 media, thousands of parts) are parsed: `processes` worker
    processes (`anymal serve`: half the cores), or with 0 as many threads here. Apart and few, a flood of
    uploads waits its turn without CPU, and its JSON and base64 work no longer takes the interpreter from
    the other requests' safety checks and streams (measured: bench/serve_bombs.py, docs/serving.md). A
    worker that dies (a decoder's crash) fails the requests it held and is replaced."""

    def __init__(self, processes: int = 0):
        self.processes = processes
        self.pool = self._pool()

    def _pool(self) -> Executor:
        if not self.processes:
            return ThreadPoolExecutor(UPLOAD_WORKERS, thread_name_prefix="anymal-upload")
        return ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_prepare_upload_worker, initargs=(foreign_modules(),))

    async def parse(self, raw: bytes, modalities: set[str], limits: Limits) -> ChatRequest:
        pool = self.pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, parse_chat_body, raw, modalities, limits)
        except BrokenProcessPool:
            if self.pool is pool:
                self.pool = self._pool()
            raise ServeError(500, "the process reading this upload exited", type="server_error") from None

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _prepare_child(modules: list[str]) -> None:
    """A spawned child: Ctrl-C is the parent's to handle (it reaches the whole process group); the
    modules that registered parts in the parent are imported, so the registries match."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for m in modules:
        importlib.import_module(m)


def _prepare_upload_worker(modules: list[str]) -> None:
    """An upload worker also yields the CPU to decoding and to the requests already admitted (niced)."""
    _prepare_child(modules)
    os.nice(UPLOAD_NICE)
