"""`anymal serve`'s processes (serve/worker.py): the model decodes in a spawned engine process, large
bodies are parsed in upload worker processes; answers are the in-process ones, and a process that
dies fails only what it held."""
from __future__ import annotations

import asyncio
import base64
import io
import json
import pickle
import time
from functools import partial

import httpx
import numpy as np
import pytest
from PIL import Image

from anymal.model.generation import GenerationSettings
from anymal.registry import foreign_modules
from anymal.serve.protocol import Limits, ServeError, parse_chat_body
from anymal.serve.worker import EngineProcess, UploadLane
from serving import KEY, Server, _ask, _ours


@pytest.fixture(scope="module")
def engine_process(tiny_checkpoint):
    from anymal import AnyMAL

    engine = EngineProcess(partial(AnyMAL.from_pretrained, str(tiny_checkpoint)), max_batch=4, max_queue=8)
    yield engine
    engine.close()


def test_the_engine_process_answers_as_the_model_in_this_process(engine_process, tiny_checkpoint, images):
    from anymal import AnyMAL

    assert "conftest" in foreign_modules()  # the tiny test encoders: imported in the child too
    assert engine_process.modalities == ["image"] and engine_process.proc.pid
    want = AnyMAL.from_pretrained(str(tiny_checkpoint)).generate([_ours(images[0])], GenerationSettings(max_new_tokens=6))[0]
    with Server(engine_process) as s:
        c = s.client()
        r = c.chat.completions.create(model="tiny", messages=_ask(images[0]), temperature=0, max_tokens=6)
        assert r.choices[0].message.content == want
        two = c.chat.completions.create(model="tiny", messages=_ask(images[0]), temperature=0.8, seed=1, max_tokens=6, n=2)
        assert [ch.index for ch in two.choices] == [0, 1] and all(ch.finish_reason for ch in two.choices)
        assert r.usage.model_dump()["prompt_tokens_details"]["modality_tokens"] == {"image": 4}
        chunks = list(c.chat.completions.create(model="tiny", messages=_ask(images[0]), temperature=0, max_tokens=6,
                                                stream=True))
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == want
        assert httpx.get(s.url + "/health").json()["batches"] == engine_process.batches >= 2
    assert not engine_process.jobs and not engine_process.waiting  # nothing left behind either side


def test_a_model_that_cannot_load_is_the_loaders_own_error(tmp_path):
    from anymal import AnyMAL
    from anymal.errors import CheckpointError

    with pytest.raises(CheckpointError, match="nothing-here: not a checkpoint directory"):
        EngineProcess(partial(AnyMAL.from_pretrained, str(tmp_path / "nothing-here")))


def test_an_engine_process_that_dies_fails_its_requests_and_says_so(tiny_checkpoint, images):
    from anymal import AnyMAL

    engine = EngineProcess(partial(AnyMAL.from_pretrained, str(tiny_checkpoint)))
    with Server(engine) as s:
        assert s.client().chat.completions.create(model="tiny", messages=_ask(images[0]), max_tokens=2).choices
        engine.proc.kill()
        deadline = time.time() + 30
        while not engine.dead and time.time() < deadline:
            time.sleep(0.05)
        health = httpx.get(s.url + "/health")
        assert health.status_code == 503 and "exited" in health.json()["error"]
        r = httpx.post(s.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                       json={"model": "tiny", "messages": _ask(images[0]), "max_tokens": 2})
        assert r.status_code == 503 and r.json()["error"]["code"] == "engine_exited"
    engine.close()


def _upload(size=(900, 700)) -> bytes:
    """A request carrying a noisy PNG of ~2 MB: the upload lane's size."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(buf, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    return json.dumps({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                                 {"type": "text", "text": "What is this?"}]}]}).encode()


def test_uploads_parse_in_a_worker_process_as_they_do_here():
    raw, limits = _upload(), Limits(max_tokens=64)
    here = parse_chat_body(raw, {"image"}, limits)
    lane = UploadLane(processes=1)
    try:
        there = asyncio.run(lane.parse(raw, {"image"}, limits))
        assert pickle.dumps(there.messages) == pickle.dumps(here.messages) and there.settings == here.settings
        with pytest.raises(ServeError) as e:  # a refusal crosses back whole: status, message, parameter
            asyncio.run(lane.parse(raw, {"audio"}, limits))
        assert e.value.status == 400 and e.value.param == "messages[0].content[0].type"
        for worker in list(lane.pool._processes.values()):  # a worker dies mid-request...
            worker.kill()
        with pytest.raises(ServeError, match="exited"):
            asyncio.run(lane.parse(raw, {"image"}, limits))
        assert asyncio.run(lane.parse(raw, {"image"}, limits)).messages  # ... and the lane goes on
    finally:
        lane.close()


def test_limits_and_errors_cross_a_process_boundary():
    limits = pickle.loads(pickle.dumps(Limits(max_probes=3)))
    assert limits.max_probes == 3 and limits.probe_slots.acquire(blocking=False)  # its own semaphores
    e = pickle.loads(pickle.dumps(ServeError(413, "too big", "messages", code="c", type="t")))
    assert (e.status, e.message, e.param, e.code, e.type) == (413, "too big", "messages", "c", "t")
