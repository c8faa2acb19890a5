"""OpenAI chat-completions requests -> anymal messages and generation settings, with limits.

Content parts: `text`; `image_url` (`{"url": "data:image/png;base64,..."}`; http(s) only when the
server allows the host); `input_audio` (`{"data": <base64>, "format": "wav"|"mp3"|"flac"|"ogg"}`);
and anymal's extension parts, each a base64 payload with its format:
`{"type": "video", "video": {"data": ..., "format": "mp4", "audio": false}}`,
`{"type": "imu", "imu": {"data": ..., "format": "csv"|"npy", "rate": 50}}`,
`{"type": "points", "points": {"data": ..., "format": "ply"|"obj"|"off"|"stl"|"npy"}}`.
No part may name a file on the server: there is no path field, and `file://` URLs are refused.
Every problem is a `ServeError` that names the parameter (`messages[0].content[1].image_url`).
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AnymalError, InputError, TooLargeError
from ..config import DEFAULT_CONTEXT
from ..model.settings import GREEDY_BELOW, GenerationSettings
from ..modalities import MODALITIES, Modality
from ..registry import import_target
from ..model.messages import check_text
from .errors import ServeError
from .shapes import common_shapes


@dataclass
class Limits:
    max_body_bytes: int = 32 * 2**20
    body_timeout_s: float = 60.0  # the whole body, once its head arrived (a body that never ends holds a socket)
    max_text_parts: int = 256  # text parts in one request: all are checked and tokenized
    max_text_chars: int = 400_000  # all its text; refused before the safety check reads any of it
    # the most one input may measure, in its record's unit (image MP, audio/video s, IMU samples)
    sizes: dict[str, float] = field(default_factory=lambda: {m.name: m.size.limit for m in MODALITIES.values()
                                                             if m.size})
    max_tokens: int | None = None  # answer tokens a request may ask for (None: the LLM's context window)
    max_n: int = 4
    max_parts: int = 16
    allow_url_hosts: tuple[str, ...] = ()  # http(s) image URLs: off unless hosts are listed
    url_max_bytes: int = 10 * 2**20
    url_timeout_s: float = 10.0
    max_fetches: int = 4  # URL fetches at once; more are refused (503), so slow sources never hold every worker
    fetch_slots: threading.BoundedSemaphore = field(init=False, repr=False, compare=False)
    # inputs measured (and images decoded) at once: a burst of crafted files cannot hold every request
    # thread, nor the memory a container's index takes while it is opened; others wait up to probe_wait_s
    max_probes: int = 4
    probe_wait_s: float = 30.0
    probe_slots: threading.BoundedSemaphore = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.fetch_slots = threading.BoundedSemaphore(self.max_fetches)
        self.probe_slots = threading.BoundedSemaphore(self.max_probes)

    def __getstate__(self) -> dict:  # to an upload process: its own slots there (semaphores do not pickle)
        return {k: v for k, v in self.__dict__.items() if k not in ("fetch_slots", "probe_slots")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__post_init__()


@dataclass
class ChatRequest:
    messages: list[dict]
    settings: GenerationSettings
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    model: str | None = None
    files: list[Path] = field(default_factory=list)  # temp files of this request, removed when it ends

    def cleanup(self) -> None:
        for f in self.files:
            f.unlink(missing_ok=True)


_DATA_URL = re.compile(r"^data:([\w/+.-]+)?(;[\w=.-]+)*;base64,(.*)$", re.S | re.I)  # schemes ignore case


def _b64(data, param: str) -> bytes:
    if not isinstance(data, str) or not data:
        raise ServeError(400, "expected a non-empty base64 string", param)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ServeError(400, "not valid base64", param) from None


def _image_bytes(url, limits: Limits, param: str) -> bytes:
    if not isinstance(url, str):
        raise ServeError(400, "expected a string URL (a data: URL or, where allowed, http(s))", param)
    m = _DATA_URL.match(url)
    if m:
        return _b64(m.group(3), param)
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("http", "https"):
        return _fetch(url, limits, param)
    if scheme == "data":  # percent-encoded, or base64 not marked as such
        raise ServeError(400, "a data: URL must carry its bytes as base64: data:image/png;base64,...", param)
    raise ServeError(400, f"unsupported URL scheme {scheme!r}: send the image as a data: URL "
                          "(data:image/png;base64,...); file paths are never read", param)


def _allowed(url, hosts: tuple[str, ...]) -> bool:
    """`host` allows the scheme's own port only; `host:port` that port only."""
    default = {"http": 80, "https": 443}[url.scheme]
    return url.host in hosts and url.port in (None, default) or f"{url.host}:{url.port or default}" in hosts


def _fetch(url: str, limits: Limits, param: str) -> bytes:
    """The image at an allowed URL, within `url_timeout_s` in all (not per read: a source that drips
    bytes cannot hold a worker longer) and `url_max_bytes`. Every failure reads the same, so that
    errors do not map which hosts and ports are open behind the server."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        raise ServeError(400, "not a valid URL", param) from None
    if not _allowed(parsed, limits.allow_url_hosts):
        raise ServeError(400, f"fetching image URLs from {parsed.host!r} (port {parsed.port or 'default'}) is not "
                              "allowed on this server (send a data: URL, or start it with --allow-url-host)", param)
    if not limits.fetch_slots.acquire(blocking=False):
        raise ServeError(503, f"{limits.max_fetches} image URLs are being fetched already; retry later, or send a "
                              "data: URL", param, code="server_busy", type="server_error")
    try:
        return _fetch_within(url, limits, param)
    finally:
        limits.fetch_slots.release()


def _fetch_within(url: str, limits: Limits, param: str) -> bytes:
    import httpx

    failed = ServeError(400, "could not fetch an image from the URL", param)
    deadline = time.monotonic() + limits.url_timeout_s
    try:
        # identity only, read raw: a gzip-in-gzip body of 1.8 KB inflated to 2.1 GB before the limit
        # counted the decoded bytes (images are compressed already; nothing is lost)
        with httpx.stream("GET", url, timeout=limits.url_timeout_s, follow_redirects=False,
                          headers={"Accept-Encoding": "identity"}) as r:
            if r.status_code != 200:
                raise failed
            encoding = r.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise ServeError(400, f"the URL's server sent the image with Content-Encoding {encoding!r} although "
                                      "asked for none; send the image as a data: URL", param)
            buf = bytearray()
            for chunk in r.iter_raw():
                buf += chunk
                if len(buf) > limits.url_max_bytes:
                    raise ServeError(413, f"the image at the URL exceeds {limits.url_max_bytes} bytes", param)
                if time.monotonic() > deadline:
                    raise failed
            return bytes(buf)
    except httpx.HTTPError:
        raise failed from None


def _check_size(m: Modality, source: bytes | Path, limits: Limits, files: list[Path], param: str) -> None:
    """Refuse an input over its modality's limit, measured by the record's cheap probe before queuing."""
    if m.size is None:
        return
    try:
        amount = import_target(m.size.probe)(source) or 0.0
    except AnymalError as e:
        raise input_error(e, files, param) from None
    except Exception as e:  # the decoders' own error types (PyAV, libsndfile, numpy)
        raise ServeError(400, f"undecodable {m.name} payload: {type(e).__name__}", param) from None
    limit = limits.sizes.get(m.name, m.size.limit)
    if amount > limit:
        raise ServeError(413, f"{m.name} is {amount:.4g} {m.size.unit}; this server takes up to {limit:g} {m.size.unit}",
                         param)


@contextmanager
def _probe_slot(limits: Limits, param: str):
    if not limits.probe_slots.acquire(timeout=limits.probe_wait_s):
        raise ServeError(503, f"{limits.max_probes} inputs are being read already; retry later", param,
                         code="server_busy", type="server_error")
    try:
        yield
    finally:
        limits.probe_slots.release()


def _decoded(m: Modality, data: bytes, param: str):
    """The input as its encoders read it, decoded here once (the safety checks and every encoder part
    then share it) rather than once per reader in the engine thread."""
    if m.decode is None:
        return data
    try:
        return import_target(m.decode)(data)
    except AnymalError as e:
        raise input_error(e, [], param) from None


def _temp_file(data: bytes, suffix: str, req: ChatRequest) -> Path:
    f = tempfile.NamedTemporaryFile(prefix="anymal-", suffix="." + suffix, delete=False)
    with f:
        f.write(data)
    path = Path(f.name)
    req.files.append(path)
    return path


def _text(text: str, param: str) -> str:
    try:
        return check_text(text, param)
    except InputError as e:
        raise ServeError(400, str(e), param) from None


def input_error(e: AnymalError, files: list[Path], param: str | None = None) -> ServeError:
    """An input fault as the client's error: 413 when over a limit, else 400; our temp file names,
    which mean nothing to the client, become 'the uploaded mp4 payload'."""
    message = str(e).replace("<in-memory bytes>: ", "")  # the parameter already says which input
    for f in files:
        message = message.replace(str(f), f"the uploaded {f.suffix.lstrip('.')} payload")
    return ServeError(413 if isinstance(e, TooLargeError) else 400, message, param)


def _part(part, modalities: set[str], limits: Limits, req: ChatRequest, param: str) -> dict:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise ServeError(400, "expected a content part object with a 'type'", param)
    part = common_shapes(part, param)
    kind = part["type"]
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise ServeError(400, "a text part needs a 'text' string", param + ".text")
        return {"type": "text", "text": _text(part["text"], param + ".text")}
    m = next((m for m in MODALITIES.values() if m.part == kind), None)
    if m is None:
        raise ServeError(400, f"unknown content part type {kind!r}; expected text, "
                              f"{', '.join(m.part for m in MODALITIES.values())}", param + ".type")
    if m.name not in modalities:
        raise ServeError(400, f"this model does not take {m.name} input (it takes: {', '.join(sorted(modalities))})",
                         param + ".type")
    body = part.get(kind)
    if not isinstance(body, dict):
        raise ServeError(400, f"a {kind} part needs a '{kind}' object", param + f".{kind}")
    if m.by_url:  # a URL (data: or an allowed http(s) host), its format sniffed
        data = _image_bytes(body.get("url"), limits, param + f".{kind}.url")
    else:
        fmt = body.get("format")
        if fmt not in m.formats:
            raise ServeError(400, f"format {fmt!r}: expected one of {', '.join(m.formats)}", param + f".{kind}.format")
        data = _b64(body.get("data"), param + f".{kind}.data")
    with _probe_slot(limits, param):
        if m.in_memory:
            _check_size(m, data, limits, [], param + f".{kind}")
            return {"type": m.name, m.name: _decoded(m, data, param + f".{kind}")}
        path = _temp_file(data, fmt, req)  # decoders that need a file get a temp file named by the format
        _check_size(m, path, limits, [path], param + f".{kind}")
    out = {"type": m.name, "path": str(path)}
    if m.takes_rate and body.get("rate") is not None:
        rate = body["rate"]
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 1 <= rate <= 10_000:
            raise ServeError(400, "rate: expected samples per second between 1 and 10000", param + f".{kind}.rate")
        out["rate"] = float(rate)
    if m.soundtrack and body.get(m.soundtrack):  # {"audio": true}: the clip's own sound track too
        out[m.soundtrack] = True
    return out


def _texts(msgs: list):
    """Every text of the messages, as sent (nothing checked yet): a cheap count before any work."""
    for m in msgs:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            yield content
        for p in content if isinstance(content, list) else []:
            if isinstance(p, dict) and isinstance(p.get("text"), str):
                yield p["text"]


def _flag(body: dict, key: str, prefix: str = "") -> bool:
    """A JSON boolean (absent or null: false); "false" as a string is refused, not read as true."""
    v = body.get(key)
    if v is not None and not isinstance(v, bool):
        raise ServeError(400, f"{prefix}{key}: expected true or false, got {v!r}", prefix + key)
    return bool(v)


def _number(body: dict, key: str, lo: float, hi: float, default, integer: bool = False):
    v = body.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)) or not lo <= v <= hi:
        raise ServeError(400, f"{key}: expected {'an integer' if integer else 'a number'} in [{lo}, {hi}], got {v!r}", key)
    return v


# the request parameters parse_chat_request reads
READ = {"messages", "model", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature",
        "top_p", "top_k", "min_p", "n", "stop", "seed", "repetition_penalty"}
IGNORED = {"user", "store", "metadata", "service_tier", "parallel_tool_calls"}  # bookkeeping, no effect on an answer
# OpenAI parameters anymal does not implement: accepted only with the value that asks for nothing
UNSUPPORTED = {"tools": [], "tool_choice": "none", "functions": [], "function_call": "none", "logprobs": False,
               "top_logprobs": 0, "logit_bias": {}, "frequency_penalty": 0, "presence_penalty": 0,
               "response_format": {"type": "text"}, "modalities": ["text"], "audio": None, "prediction": None,
               "reasoning_effort": None, "web_search_options": None}


def _check_parameters(body: dict) -> None:
    """A 400 naming the first parameter the server would otherwise have to ignore: a client asking for
    tools, JSON output or log-probabilities must learn that it will not get them."""
    for key, value in body.items():
        if key in READ or key in IGNORED:
            continue
        if key not in UNSUPPORTED:
            raise ServeError(400, f"{key}: unrecognized request argument", key)
        if value is not None and value != UNSUPPORTED[key]:
            raise ServeError(400, f"{key}: not supported by this server (anymal answers in plain text, without "
                                  "tools, structured output, log-probabilities or penalties); leave it out", key)


def _temperature(body: dict, n: int, default: float) -> float:
    """Greedy by default, as every front end (not OpenAI's 1.0); but `n` > 1 choices are sampled at 1.0
    unless a temperature is given, and asking for several greedy ones is refused (they would be the same)."""
    t = _number(body, "temperature", 0, 2, 1.0 if n > 1 else default)
    if n > 1 and t < GREEDY_BELOW:
        raise ServeError(400, f"n={n} with temperature {t}: greedy decoding gives one answer; ask for n=1, or sample "
                              "(temperature > 0, the default when n > 1)", "n")
    return t


def parse_chat_body(raw: bytes, modalities: set[str], limits: Limits) -> ChatRequest:
    """A request body as it arrived (bytes) -> ChatRequest, or the ServeError for the client."""
    return parse_chat_request(_json(raw), modalities, limits)


def _json(raw: bytes):
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ServeError(400, "the request body is not valid JSON") from None
    except ValueError as e:  # an integer of more digits than Python converts (4,300)
        raise ServeError(400, f"the request body's JSON holds a number it cannot read: {e}") from None
    except RecursionError:
        raise ServeError(400, "the request body's JSON is nested too deeply") from None


def parse_chat_request(body, modalities: set[str], limits: Limits) -> ChatRequest:
    if not isinstance(body, dict):
        raise ServeError(400, "the request body must be a JSON object")
    _check_parameters(body)
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ServeError(400, "messages: expected a non-empty list", "messages")
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else stop or []
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(x, str) and x for x in stop):
        raise ServeError(400, "stop: expected a string or up to 4 non-empty strings", "stop")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    cap = limits.max_tokens or DEFAULT_CONTEXT  # a server's app sets the LLM's context window
    max_tokens = _number({"max_tokens": max_tokens}, "max_tokens", 1, cap, 256, integer=True)
    seed = _number(body, "seed", -2**63, 2**63 - 1, None, integer=True)
    n = _number(body, "n", 1, limits.max_n, 1, integer=True)
    d = GenerationSettings()  # the defaults every front end shares (greedy), not OpenAI's temperature 1
    settings = GenerationSettings(max_new_tokens=max_tokens, temperature=_temperature(body, n, d.temperature),
                                  top_p=_number(body, "top_p", 1e-9, 1, d.top_p),
                                  top_k=max(_number(body, "top_k", -1, 10**6, d.top_k, integer=True), 0),  # vLLM: -1 = off
                                  min_p=_number(body, "min_p", 0, 0.999, d.min_p),
                                  repetition_penalty=_number(body, "repetition_penalty", 0.5, 2, d.repetition_penalty),
                                  stop=stop, seed=seed)
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise ServeError(400, "stream_options: expected an object like {\"include_usage\": true}", "stream_options")
    req = ChatRequest([], settings, n=n,
                      stream=_flag(body, "stream"), include_usage=_flag(options, "include_usage", "stream_options."),
                      model=body.get("model"))
    if len(msgs) > limits.max_text_parts:
        raise ServeError(413, f"more than {limits.max_text_parts} messages in one request", "messages")
    chars = sum(len(t) for t in _texts(msgs))
    if chars > limits.max_text_chars:
        raise ServeError(413, f"the messages hold {chars:,} characters of text; this server takes up to "
                              f"{limits.max_text_chars:,}", "messages")
    try:
        parts = texts = 0
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or m.get("role") not in ("system", "developer", "user", "assistant"):
                raise ServeError(400, "expected {role: system|developer|user|assistant, content}", f"messages[{i}]")
            role = "system" if m["role"] == "developer" else m["role"]
            content = m.get("content")
            if isinstance(content, str):
                req.messages.append({"role": role, "content": _text(content, f"messages[{i}].content")})
                continue
            if not isinstance(content, list):
                raise ServeError(400, "content: expected a string or a list of parts", f"messages[{i}].content")
            here = sum(1 for p in content if isinstance(p, dict) and p.get("type") == "text")
            texts, parts = texts + here, parts + len(content) - here
            if parts > limits.max_parts:
                raise ServeError(413, f"more than {limits.max_parts} media parts in one request", f"messages[{i}].content")
            if texts > limits.max_text_parts:
                raise ServeError(413, f"more than {limits.max_text_parts} text parts in one request",
                                 f"messages[{i}].content")
            req.messages.append({"role": role, "content": [
                _part(p, modalities, limits, req, f"messages[{i}].content[{j}]") for j, p in enumerate(content)]})
    except BaseException:
        req.cleanup()
        raise
    return req
