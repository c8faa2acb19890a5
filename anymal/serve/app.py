"""The OpenAI-compatible HTTP API: `POST /v1/chat/completions`, `GET /v1/models`, `GET /health`, and
the chat page at `/` (static/index.html: attach or drop files, the reply streams in).

Responses and stream chunks follow OpenAI's chat-completions shapes (`chat.completion`,
`chat.completion.chunk` over server-sent events: the role delta first, `data: [DONE]` last), so the
official `openai` client works unchanged. Errors are OpenAI error objects with the matching status
(400 bad request or undecodable media, 401 bad key, 404 unknown model or path, 405 wrong method,
413 too large, 415 not JSON, 503 queue full, 504 timed out); an unexpected failure is a 500 with no
traceback. Requests must be `application/json` (a cross-site form post is refused unread) and name
an allowed Host (`ServeConfig.allowed_hosts`; DNS rebinding). `usage` counts text prompt
tokens and each modality's tokens separately (`prompt_tokens_details.modality_tokens`).
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ..errors import AnymalError
from ..safety.guard import Guard, OutputFilter
from .access import AccessLog
from .engine import Engine, Job
from .events import Delta, Event, Failed, Finish, PromptUsage
from .protocol import Limits, ServeError, input_error, parse_chat_body
from .worker import UploadLane

log = logging.getLogger("anymal.serve")  # errors; one line per request goes to access.py's logger
PAGE = Path(__file__).with_name("static") / "index.html"


@dataclass
class ServeConfig:
    model_id: str = "anymal"
    api_key: str | None = None
    limits: Limits = field(default_factory=Limits)
    max_batch: int = 8
    max_queue: int = 64
    timeout_s: float = 300.0
    cors_origins: tuple[str, ...] = ()  # CORS is off unless origins are listed
    # Host header names served ("*": any). A page on another site that rebinds its DNS name to this
    # machine sends its own name, and is refused.
    allowed_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
    safety: Guard | None = None  # AnyMAL's input/output checks (anymal.safety.guard); None = off
    # processes that parse large bodies (0: a thread here). `anymal serve` uses them: parsing a flood of
    # uploads in this process took the interpreter from the safety checks of every other request
    upload_processes: int = 0


def create_app(model, config: ServeConfig | None = None) -> FastAPI:
    """The app serving `model`: an AnyMAL (decoded in a thread of this process) or an engine that
    decodes elsewhere (`worker.EngineProcess`, what `anymal serve` runs)."""
    cfg = config or ServeConfig()
    engine = model if hasattr(model, "submit") else Engine(model, cfg.max_batch, cfg.max_queue)
    if cfg.limits.max_tokens is None:
        cfg.limits.max_tokens = engine.context_window
    # request parsing (decoding media, fetching URLs) and input checks get their own threads: asyncio's
    # default pool has min(32, cores + 4) of them, which a few slow requests would otherwise fill
    workers = ThreadPoolExecutor(max_workers=32, thread_name_prefix="anymal-request")
    uploads = UploadLane(cfg.upload_processes)  # large bodies: parsed a few at a time, apart (worker.py)
    app = FastAPI(title="anymal", docs_url=None, redoc_url=None, openapi_url=None)  # no unauthenticated schema
    app.state.engine, app.state.config = engine, cfg
    app.router.add_event_handler("shutdown", engine.close)
    app.router.add_event_handler("shutdown", lambda: workers.shutdown(wait=False, cancel_futures=True))
    app.router.add_event_handler("shutdown", uploads.close)
    app.add_middleware(HostCheck, allowed=cfg.allowed_hosts)
    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cfg.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(AccessLog)  # outermost: refused hosts and CORS preflights get their line too

    @app.exception_handler(ServeError)
    async def _serve_error(_req, e: ServeError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_req, e: StarletteHTTPException):  # unknown path, wrong method: OpenAI error objects too
        return JSONResponse(ServeError(e.status_code, str(e.detail), code=_CODES.get(e.status_code)).body(),
                            status_code=e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_req, e: Exception):
        log.exception("unexpected error")
        return JSONResponse(ServeError(500, "internal server error", type="server_error").body(), status_code=500)

    def check_key(request: Request) -> None:
        if cfg.api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {cfg.api_key}".encode()):
            raise ServeError(401, "invalid or missing API key (Authorization: Bearer KEY)", code="invalid_api_key")

    @app.get("/", include_in_schema=False)
    async def page():  # the chat page; its API calls carry the key, the page itself is public
        return FileResponse(PAGE, media_type="text/html", headers=PAGE_HEADERS)

    @app.get("/health")
    async def health():
        if engine.dead:
            return JSONResponse({"status": "error", "error": engine.dead}, status_code=503)
        return {"status": "ok", "model": cfg.model_id, "queued": engine.queued, "batches": engine.batches}

    served = {"id": cfg.model_id, "object": "model", "created": 0, "owned_by": "anymal",
              "modalities": engine.modalities}

    @app.get("/v1/models")
    async def models(request: Request):
        check_key(request)
        return {"object": "list", "data": [served]}

    @app.get("/v1/models/{model_id:path}")
    async def one_model(model_id: str, request: Request):  # the SDKs' models.retrieve(id)
        check_key(request)
        if model_id != cfg.model_id:
            raise ServeError(404, f"model {model_id!r} not found; this server serves {cfg.model_id!r}", "model",
                             "model_not_found")
        return served

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        check_key(request)
        raw = await _read_body(request, cfg.limits)
        loop = asyncio.get_running_loop()
        # parsed in a request thread: a 30 MB body takes the event loop ~0.3 s, which every stream would wait
        modalities = set(engine.modalities)
        if len(raw) >= UPLOAD_BYTES:
            req = await uploads.parse(raw, modalities, cfg.limits)
        else:
            req = await loop.run_in_executor(workers, parse_chat_body, raw, modalities, cfg.limits)
        if req.model not in (None, cfg.model_id):
            req.cleanup()
            raise ServeError(404, f"model {req.model!r} not found; this server serves {cfg.model_id!r}",
                             "model", "model_not_found")
        guard = cfg.safety
        try:
            flag, image_score = await loop.run_in_executor(workers, guard.check_input, req.messages) if guard else (None, 0.0)
        except AnymalError as e:  # an input the safety check cannot read is the request's fault
            req.cleanup()
            raise input_error(e, req.files) from None
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        request.state.access = access = {"id": cid, "n": req.n}
        if flag:  # refused before the model sees it
            req.cleanup()
            events = _refused(req.n, flag.refusal(guard.config.refusal))
        else:
            try:
                job = engine.submit(req)
            except ServeError:
                req.cleanup()
                raise
            hold = None if req.stream else "answer"  # nothing reaches the client before the end anyway
            filters = [OutputFilter(guard, image_score, hold) for _ in range(req.n)] if guard else None
            events = _events(job, request, time.monotonic() + cfg.timeout_s, filters, guard)
        if req.stream:
            return StreamingResponse(_sse(events, req, cid, created, cfg.model_id, access), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            texts, reasons, usage = await _collect(events, req.n)
        finally:
            await events.aclose()
            req.cleanup()
        access["tokens"] = f"{usage['prompt_tokens']}+{usage['completion_tokens']}"
        return {"id": cid, "object": "chat.completion", "created": created, "model": cfg.model_id,
                "choices": [{"index": i, "message": {"role": "assistant", "content": texts[i]},
                             "finish_reason": reasons[i], "logprobs": None} for i in range(req.n)],
                "usage": usage}

    return app


UPLOAD_BYTES = 256 * 2**10  # a body this large carries media (or very many parts): parsed in the upload lane
_CODES = {404: "not_found", 405: "method_not_allowed"}
# The page runs only its own inline script and style, talks only to this server, loads nothing from
# elsewhere, and is never framed by another site (clickjacking)
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                               "connect-src 'self'; img-src 'self' data: blob:; media-src 'self' data: blob:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
# a Host header: a name or [IPv6], then at most a numeric port ("127.0.0.1:evil.com" is no host of ours)
_HOST = re.compile(r"^(\[[0-9a-f:.]+\]|[^:\[\]]+)(:\d{1,5})?$")


class HostCheck:
    """Refuses requests whose Host header names no allowed host (DNS rebinding), as an OpenAI error."""

    def __init__(self, app, allowed: tuple[str, ...]):
        self.app, self.allowed = app, {h.lower() for h in allowed}

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and "*" not in self.allowed:
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
            m = _HOST.match(host)
            name = m.group(1).strip("[]") if m else None
            if name not in self.allowed:
                response = JSONResponse(ServeError(400, f"Host {host!r} is not served here (start the server "
                                                        "with --allow-host NAME)", code="host_not_allowed").body(),
                                        status_code=400)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _read_body(request: Request, limits: Limits) -> bytes:
    """The body, refused with 413 as soon as it passes the size limit (chunked bodies too), with 408 when
    it has not all arrived within `body_timeout_s`, and only as JSON: a form or text/plain POST, which a
    browser sends cross-site without asking, is refused unread."""
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            return await _body_within(request, limits.max_body_bytes)
    except TimeoutError:
        raise ServeError(408, f"the request body did not arrive within {limits.body_timeout_s:g} s",
                         code="request_timeout") from None


async def _body_within(request: Request, limit: int) -> bytes:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise ServeError(415, f"Content-Type must be application/json, got {kind or 'none'!r}", code="unsupported_media_type")
    size = request.headers.get("content-length")
    if size and size.isdigit() and int(size) > limit:
        raise ServeError(413, f"request body over {limit} bytes")
    buf = bytearray()
    try:
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > limit:
                raise ServeError(413, f"request body over {limit} bytes")
    except ClientDisconnect:  # gone mid-upload: nobody to answer, nothing to log
        raise ServeError(499, "client closed the request") from None
    return bytes(buf)


def _usage(prompt: dict, completion: int) -> dict:
    text = prompt.get("text", 0)
    media = {k: v for k, v in prompt.items() if k != "text"}
    total_prompt = text + sum(media.values())
    return {"prompt_tokens": total_prompt, "completion_tokens": completion, "total_tokens": total_prompt + completion,
            "prompt_tokens_details": {"text_tokens": text, "modality_tokens": media}}


async def _next(job: Job, request, deadline: float) -> Event | None:
    """The job's next event, None when the client went away; cancels the job then or when the deadline
    passes (checked at least twice a second, also while events keep coming)."""
    while True:
        if time.monotonic() - job.checked > 0.5:
            job.checked = time.monotonic()
            if await request.is_disconnected():
                job.cancelled.set()
                return None
        if time.monotonic() > deadline:
            job.cancelled.set()
            raise ServeError(504, "the request timed out", type="server_error", code="timeout")
        try:
            return await asyncio.wait_for(job.events.get(), timeout=0.25)
        except asyncio.TimeoutError:
            continue


async def _refused(n: int, refusal: str):
    yield PromptUsage({})
    for i in range(n):
        yield Delta(i, refusal, 0)
        yield Finish(i, "content_filter", 0)


async def _events(job: Job, request, deadline: float, filters: list | None, guard):
    """The job's events for its client: PromptUsage, then Delta and Finish per choice, each choice's
    text passed through its safety filter (word by word, sentence by sentence or whole); a Failed job
    raises its error. A flagged choice ends with content_filter: with the refusal when none of its text
    was released, else with the checked text alone (a refusal is never spliced into an answer)."""
    closed, released = set(), set()
    try:
        while len(closed) < job.request.n:
            ev = await _next(job, request, deadline)
            if ev is None:
                return
            if isinstance(ev, Failed):
                raise ev.error
            if isinstance(ev, PromptUsage):
                yield ev
                continue
            if ev.choice in closed:
                continue
            f = filters[ev.choice] if filters else None
            if isinstance(ev, Delta):
                text = await asyncio.to_thread(f.push, ev.text) if f else ev.text
            else:
                text = await asyncio.to_thread(f.close, ev.reason == "length") if f else ""
            if text:
                released.add(ev.choice)
                yield Delta(ev.choice, text, ev.tokens)
            if f and f.flag:  # stop: the flagged words never reach the client
                closed.add(ev.choice)
                if ev.choice not in released:
                    yield Delta(ev.choice, f.flag.refusal(guard.config.refusal), ev.tokens)
                yield Finish(ev.choice, "content_filter", ev.tokens)
                if job.request.n == 1:
                    job.cancelled.set()
            elif isinstance(ev, Finish):
                closed.add(ev.choice)
                yield ev
    finally:
        job.cancelled.set()  # a no-op when finished; stops the rows when the client went away


async def _collect(events, n: int) -> tuple[list[str], list[str], dict]:
    texts, reasons, prompt, completion = [""] * n, [None] * n, {}, 0
    async for ev in events:
        if isinstance(ev, PromptUsage):
            prompt = ev.counts
        elif isinstance(ev, Delta):
            texts[ev.choice] += ev.text
        else:
            reasons[ev.choice] = ev.reason
            completion += ev.tokens
    if None in reasons:
        raise ServeError(499, "client closed the request")
    return texts, reasons, _usage(prompt, completion)


def _chunk(cid: str, created: int, model: str, choices: list[dict], usage: dict | None = None) -> str:
    body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices}
    if usage is not None:
        body["usage"] = usage
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


async def _sse(events, req, cid: str, created: int, model: str, access: dict):
    try:
        yield _chunk(cid, created, model, [{"index": i, "delta": {"role": "assistant", "content": ""},
                                            "finish_reason": None, "logprobs": None} for i in range(req.n)])
        prompt, completion = {}, 0
        try:
            async for ev in events:
                if isinstance(ev, PromptUsage):
                    prompt = ev.counts
                elif isinstance(ev, Delta):
                    yield _chunk(cid, created, model, [{"index": ev.choice, "delta": {"content": ev.text},
                                                        "finish_reason": None, "logprobs": None}])
                else:
                    completion += ev.tokens
                    yield _chunk(cid, created, model, [{"index": ev.choice, "delta": {}, "finish_reason": ev.reason,
                                                        "logprobs": None}])
        except ServeError as e:  # headers are sent: the error rides the stream
            yield f"data: {json.dumps(e.body())}\n\n"
            return
        usage = _usage(prompt, completion)
        access["tokens"] = f"{usage['prompt_tokens']}+{usage['completion_tokens']}"
        if req.include_usage:
            yield _chunk(cid, created, model, [], usage)
        yield "data: [DONE]\n\n"
    finally:
        await events.aclose()
        req.cleanup()
