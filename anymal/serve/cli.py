"""`anymal serve`: the OpenAI-compatible server for a checkpoint."""
from __future__ import annotations

import os
import sys
from functools import partial
from pathlib import Path

from uvicorn.protocols.http.h11_impl import H11Protocol

from ..devices import device_args
from ..modalities import IMAGE, MODALITIES
from ..safety import HOLDS

REQUEST_HEAD_SECONDS = 10.0


class TimedH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, plus: a connection must send a request's head within
    REQUEST_HEAD_SECONDS of opening (or of its last response), or it is closed. uvicorn times out
    idle keep-alive connections only, so half-open ones would otherwise hold a socket forever."""

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(REQUEST_HEAD_SECONDS, self._head_timeout)

    def handle_events(self) -> None:
        super().handle_events()
        in_flight = self.cycle is not None and not self.cycle.response_complete
        if in_flight and self._head_timer is not None:  # a request's head arrived
            self._head_timer.cancel()
            self._head_timer = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(REQUEST_HEAD_SECONDS, self._head_timeout)

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()


def add_parser(sub) -> None:
    s = sub.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API (chat completions)")
    s.add_argument("--model", help="checkpoint directory or Hugging Face Hub id (default: the shipped adapters)")
    s.add_argument("--revision", help="with a Hub id: the branch, tag or commit")
    device_args(s)
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--api-key", default=os.environ.get("ANYMAL_API_KEY"),
                   help="require 'Authorization: Bearer KEY' (default: $ANYMAL_API_KEY, else no key)")
    s.add_argument("--model-id", help="the model name clients send (default: the checkpoint folder's name)")
    s.add_argument("--max-batch", type=int, default=8, help="rows decoded together (default 8)")
    s.add_argument("--max-queue", type=int, default=64, help="waiting requests before 503 (default 64)")
    s.add_argument("--timeout", type=float, default=300.0, help="seconds per request before 504 (default 300)")
    s.add_argument("--max-connections", type=int, default=512,
                   help="open connections served at once; more get 503 (default 512, under the usual limit of "
                        "1,024 open files, which is raised to its hard limit at start)")
    s.add_argument("--allow-url-host", action="append", default=[], metavar="HOST",
                   help="allow http(s) image URLs from HOST (repeatable; default: data: URLs only)")
    s.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests whose Host header is NAME (repeatable; default: localhost, "
                        "127.0.0.1, ::1 and --host; any when bound to 0.0.0.0 or :: without this flag)")
    s.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow browser calls from ORIGIN (repeatable; default: CORS off)")
    s.add_argument("--max-tokens-limit", type=int, metavar="N",
                   help="the most answer tokens a request may ask for (default: the LLM's context window)")
    s.add_argument("--max-n", type=int, default=4, help="the most choices (n) a request may ask for (default 4)")
    s.add_argument("--max-body-mb", type=float, default=32.0, help="the largest request body in MB (default 32)")
    s.add_argument("--input-limit", action="append", default=[], metavar="MODALITY=AMOUNT",
                   help="the most one input may measure, e.g. image=40 (MP), audio=60 (s), video=300 (s), imu=60000 "
                        "(samples); defaults: " + ", ".join(f"{m.name}={m.size.limit:g} {m.size.unit}"
                                                          for m in MODALITIES.values() if m.size))
    s.add_argument("--log-format", choices=["text", "json"], default="text",
                   help="the access log (one line per request on stderr): text or one JSON object a line")
    s.add_argument("--no-safety", action="store_true", help="switch every safety check off")
    s.add_argument("--safety-off", action="append", default=[], choices=["input_text", "output_text", "pair"],
                   help="switch one safety check off (repeatable)")
    s.add_argument("--image-check", action="store_true",
                   help="also refuse input images the weapon check flags (off by default: it measures poorly)")
    s.add_argument("--nudity-check", action="store_true",
                   help="also refuse input images NudeNet finds explicit in (pip install --no-deps nudenet==3.4.2 "
                        "onnxruntime; off by default: its detector's licence is unclear, docs/licences.md)")
    s.add_argument("--nudity-threshold", type=float, default=0.5,
                   help="NudeNet score of an exposed region that flags an image (0.5; docs/serving.md: false flags)")
    s.add_argument("--safety-text-threshold", type=float, default=None,
                   help="P(unsafe) that flags a text (default: the text head's own, calibrated on validation)")
    s.add_argument("--safety-image-threshold", type=float, default=0.5, help="P(weapon) that flags an image (0.5)")
    s.add_argument("--safety-hold", choices=list(HOLDS), default="words",
                   help="stream each word once the output check passed the sentence so far (default), only "
                        "whole sentences that passed, or the whole answer once it passed (a flagged answer is "
                        "then always a clean refusal); a refusal never follows released text")
    s.set_defaults(fn=cmd_serve)


def cmd_serve(a) -> int:
    import uvicorn

    from ..errors import ConfigError
    from ..model.anymal import AnyMAL
    from .access import configure as configure_access_log
    from .app import ServeConfig, create_app
    from .worker import UPLOAD_WORKERS, EngineProcess

    if a.max_batch < 1 or a.max_queue < 0 or a.timeout <= 0 or a.max_connections < 1:
        raise ConfigError("--max-batch >= 1, --max-queue >= 0, --timeout > 0 and --max-connections >= 1 expected")
    # the model loads and decodes in its own process (worker.py: request parsing and safety checks here
    # would otherwise take the interpreter from the decode loop); the parent never holds a copy
    engine = EngineProcess(partial(AnyMAL.from_pretrained, a.model, device=a.device, dtype=a.dtype,
                                   revision=a.revision, decoder=a.decoder), a.max_batch, a.max_queue)
    guard = None
    if not a.no_safety:
        from ..safety.guard import Guard, SafetyConfig
        from ..safety.image import build_image_check

        sc = SafetyConfig(text_threshold=a.safety_text_threshold, image_threshold=a.safety_image_threshold,
                          input_image=a.image_check, nudity=a.nudity_check, nudity_threshold=a.nudity_threshold,
                          hold=a.safety_hold, **{k: False for k in a.safety_off})
        wants_image = (sc.input_image or sc.pair) and IMAGE.name in engine.modalities
        image = build_image_check(sc.image_method, sc.image_threshold) if wants_image else None
        guard = Guard(sc, image=image)
    model_id = a.model_id or ("anymal-default" if not a.model else Path(a.model).resolve().name
                              if Path(a.model).exists() else a.model)  # a Hub id names itself
    cfg = ServeConfig(model_id=model_id, api_key=a.api_key, max_batch=a.max_batch, max_queue=a.max_queue,
                      timeout_s=a.timeout, cors_origins=tuple(a.cors_origin), allowed_hosts=_hosts(a),
                      limits=_limits(a), safety=guard, upload_processes=UPLOAD_WORKERS)
    if a.host not in ("127.0.0.1", "localhost", "::1") and not a.api_key:
        print(f"anymal: warning: serving on {a.host} without an API key", file=sys.stderr)
    checks = "off" if guard is None else ", ".join(k for k in ("input_text", "input_image", "output_text", "pair")
                                                    if getattr(guard.config, k)) or "off"
    print(f"serving {model_id!r} ({', '.join(engine.modalities)}) on http://{a.host}:{a.port}/v1; "
          f"safety checks: {checks}", file=sys.stderr)
    _raise_open_files(a.max_connections)
    configure_access_log(a.log_format)
    uvicorn.run(create_app(engine, cfg), host=a.host, port=a.port, log_level="warning", http=TimedH11, access_log=False,
                timeout_keep_alive=5, limit_concurrency=a.max_connections)
    return 0


def _limits(a):
    """Limits from the command line; answer tokens default to the LLM's context window."""
    from ..errors import ConfigError
    from .protocol import Limits

    sizes = dict(Limits().sizes)
    for item in a.input_limit:
        name, _, amount = item.partition("=")
        try:
            value = float(amount)
        except ValueError:
            value = -1.0
        if name not in sizes or value <= 0:
            raise ConfigError(f"--input-limit {item!r}: expected MODALITY=AMOUNT > 0, MODALITY one of {', '.join(sizes)}")
        sizes[name] = value
    limit = a.max_tokens_limit  # None: the LLM's context window (create_app)
    if (limit is not None and limit < 1) or a.max_n < 1 or a.max_body_mb <= 0:
        raise ConfigError("--max-tokens-limit >= 1, --max-n >= 1 and --max-body-mb > 0 expected")
    return Limits(allow_url_hosts=tuple(a.allow_url_host), max_tokens=limit, max_n=a.max_n, sizes=sizes,
                  max_body_bytes=int(a.max_body_mb * 2**20))


def _raise_open_files(connections: int) -> None:
    """Room for every allowed connection plus the model's own files: the soft limit up to the hard one."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = connections + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))


def _hosts(a) -> tuple[str, ...]:
    if a.host in ("0.0.0.0", "::", "") and not a.allow_host:
        return ("*",)  # reachable under any name the network gives it
    return ("localhost", "127.0.0.1", "::1", a.host, *a.allow_host)
