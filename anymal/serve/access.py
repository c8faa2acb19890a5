"""One access-log line per request (logger `anymal.serve.access`): client, method, path, status, seconds,
and for a chat completion its id and tokens (prompt + completion), as text or as one JSON object a line
(`anymal serve --log-format json`). A streamed answer is logged when its last byte has left.
"""
from __future__ import annotations

import json
import logging
import sys
import time

log = logging.getLogger("anymal.serve.access")


class AccessLog:
    """ASGI middleware: the status from the response's start, the rest from `scope["state"]["access"]`,
    a dict a handler fills (`request.state.access`)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.monotonic(), {"code": 500}

        async def sending(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client") or ("-", 0)
            entry = {"client": client[0], "method": scope["method"], "path": scope["path"], "status": status["code"],
                     "seconds": round(time.monotonic() - start, 3), **scope.get("state", {}).get("access", {})}
            log.info("%s", entry)


class _Format(logging.Formatter):
    def __init__(self, as_json: bool):
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        entry = record.args if isinstance(record.args, dict) else {"message": record.getMessage()}
        if self.as_json:
            return json.dumps({"time": round(record.created, 3), **entry}, ensure_ascii=False)
        extra = "".join(f" {k}={v}" for k, v in entry.items()
                        if k not in ("client", "method", "path", "status", "seconds"))
        return (f'{entry.get("client")} "{entry.get("method")} {entry.get("path")}" {entry.get("status")} '
                f'{entry.get("seconds")}s{extra}')


def configure(fmt: str = "text", stream=None) -> None:
    """Access lines to stderr (or `stream`) in `fmt` ("text" or "json"); once per process."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Format(fmt == "json"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
