"""A live server for tests: uvicorn on 127.0.0.1 in a thread, the official `openai` client, and the
request helpers the server tests share (the `server` fixture in conftest.py runs one)."""
from __future__ import annotations

import base64
import json
import socket
import threading
import time

import httpx
import openai

from anymal.serve.app import ServeConfig, create_app

KEY = "sk-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model, **cfg):
        import uvicorn

        self.app = create_app(model, ServeConfig(model_id="tiny", api_key=KEY, **cfg))
        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)
        assert self.server.started, "uvicorn did not start"
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, key: str = KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=60)


def data_url(path) -> str:
    return "data:image/png;base64," + base64.b64encode(open(path, "rb").read()).decode()


def _ours(image, text="What is this?"):
    """The same question as `_ask`, in the Python API's message form (for model.generate)."""
    return [{"role": "user", "content": [{"type": "image", "path": str(image)}, {"type": "text", "text": text}]}]


def _ask(image, text="What is this?"):
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(image)}},
                                         {"type": "text", "text": text}]}]


def _status(server, body=None, raw: bytes | None = None, key=KEY) -> tuple[int, dict]:
    r = httpx.post(server.url + "/v1/chat/completions", content=raw if raw is not None else json.dumps(body),
                   headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"}, timeout=60)
    return r.status_code, r.json()
