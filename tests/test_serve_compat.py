"""What other clients send (issue 35): LangChain's max_tokens=2048, models.retrieve, top_k/min_p, ollama's
string image_url, vLLM's video_url/audio_url, n > 1; and one access-log line per request."""
from __future__ import annotations

import base64
import io
import json
import logging

import numpy as np
import pytest
import soundfile as sf

from anymal.errors import InputError
from anymal.model.settings import with_options
from anymal.serve.protocol import Limits, ServeError, parse_chat_request
from anymal.serve.shapes import common_shapes
from serving import Server, _ask, _status, data_url


def _parse(body: dict, modalities=frozenset({"image"}), **limits):
    return parse_chat_request({"messages": [{"role": "user", "content": "Hi"}], **body}, set(modalities),
                              Limits(**{"max_tokens": 4096, **limits}))


def test_answer_tokens_default_to_the_context_window_and_are_raised_from_the_cli(tiny_model):
    from anymal.serve.app import ServeConfig, create_app
    from anymal.serve.cli import _limits

    cfg = ServeConfig()
    create_app(tiny_model, cfg)
    assert cfg.limits.max_tokens == tiny_model.llm.context_window == 512  # the tiny LLM's positions
    assert _parse({"max_tokens": 2048}).settings.max_new_tokens == 2048  # LangChain's default
    with pytest.raises(ServeError, match=r"max_tokens: expected an integer in \[1, 4096\]"):
        _parse({"max_tokens": 5000})
    args = type("A", (), {"max_tokens_limit": 8192, "max_n": 2, "max_body_mb": 1.0, "allow_url_host": [],
                          "input_limit": ["image=40", "audio=90"]})()
    limits = _limits(args)
    assert (limits.max_tokens, limits.max_n, limits.max_body_bytes, limits.sizes["image"], limits.sizes["audio"]) == \
        (8192, 2, 2**20, 40.0, 90.0)
    args.input_limit = ["smell=3"]
    with pytest.raises(Exception, match="--input-limit 'smell=3': expected MODALITY=AMOUNT"):
        _limits(args)


def test_top_k_min_p_seed_and_n_sampling():
    s = _parse({"top_k": 40, "min_p": 0.05, "seed": 7, "temperature": 0.8}).settings
    assert (s.top_k, s.min_p, s.seed) == (40, 0.05, 7) and len(s.processors()) == 3
    assert _parse({"top_k": -1}).settings.top_k == 0  # vLLM's "off"
    req = _parse({"n": 3})
    assert req.n == 3 and req.settings.temperature == 1.0  # several choices are sampled, not 3 equal greedy ones
    with pytest.raises(ServeError, match="greedy decoding gives one answer"):
        _parse({"n": 2, "temperature": 0})


def _wav_b64() -> str:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(1600, dtype=np.float32), 16000, format="WAV")
    return base64.b64encode(buf.getvalue()).decode()


def test_vllm_and_ollama_part_shapes():
    assert common_shapes({"type": "image_url", "image_url": "data:image/png;base64,AAAA"}, "p") == \
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    assert common_shapes({"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA"}}, "p") == \
        {"type": "video", "video": {"format": "mp4", "data": "AAAA"}}
    audio = {"type": "audio_url", "audio_url": {"url": "data:audio/x-wav;base64," + _wav_b64()}}
    req = _parse({"messages": [{"role": "user", "content": [audio, {"type": "text", "text": "What is it?"}]}]},
                 modalities={"audio"})
    assert req.messages[0]["content"][0]["type"] == "audio"
    with pytest.raises(ServeError, match="a video_url part takes a base64 data: URL"):
        common_shapes({"type": "video_url", "video_url": {"url": "https://example.com/a.mp4"}}, "p")


def test_models_retrieve_string_image_urls_and_the_access_log(tiny_model, images, caplog):
    caplog.set_level(logging.INFO, logger="anymal.serve.access")
    with Server(tiny_model) as s:
        client = s.client()
        assert client.models.retrieve("tiny").id == "tiny"
        with pytest.raises(Exception, match="model 'other' not found"):
            client.models.retrieve("other")
        msgs = [{"role": "user", "content": [{"type": "image_url", "image_url": data_url(images[0])},
                                             {"type": "text", "text": "What is this?"}]}]
        code, body = _status(s, {"model": "tiny", "messages": msgs, "max_tokens": 3})
        assert code == 200, body
        code, body = _status(s, {"model": "tiny", "messages": _ask(images[1]), "max_tokens": 4, "n": 2, "seed": 1})
        assert code == 200 and len(body["choices"]) == 2
    lines = [r for r in caplog.records if r.name == "anymal.serve.access"]
    chats = [r.args for r in lines if r.args["path"] == "/v1/chat/completions"]
    assert len(chats) == 2 and all(c["status"] == 200 and c["id"].startswith("chatcmpl-") for c in chats)
    assert chats[1]["n"] == 2 and "+" in chats[1]["tokens"]
    assert [r.args["status"] for r in lines if r.args["path"] == "/v1/models/other"] == [404]


def test_access_log_formats():
    from anymal.serve.access import _Format

    record = logging.LogRecord("anymal.serve.access", logging.INFO, "", 0, "%s",
                               ({"client": "127.0.0.1", "method": "POST", "path": "/v1/chat/completions",
                                 "status": 200, "seconds": 0.25, "id": "chatcmpl-1", "tokens": "12+8"},), None)
    assert _Format(False).format(record) == '127.0.0.1 "POST /v1/chat/completions" 200 0.25s id=chatcmpl-1 tokens=12+8'
    line = json.loads(_Format(True).format(record))
    assert line["status"] == 200 and line["tokens"] == "12+8" and "time" in line


def test_hugging_face_generation_kwargs(tiny_model):
    assert with_options(None, {"do_sample": True, "top_k": 5}).temperature == 1.0
    assert with_options(None, {"do_sample": False, "temperature": 0.7}).temperature == 0.0
    assert with_options(None, {"max_tokens": 9, "stop_strings": "END"}).stop == ["END"]
    with pytest.raises(InputError, match="num_beams=4: not supported"):
        with_options(None, {"num_beams": 4})
    with pytest.raises(InputError, match="unknown generation option 'beam_width'"):
        with_options(None, {"beam_width": 2})
    assert isinstance(tiny_model.chat("Hi", do_sample=False, max_new_tokens=3, top_k=5), str)
    assert len(tiny_model.generate([[{"role": "user", "content": "Hi"}]], max_new_tokens=2, do_sample=False)) == 1
    with pytest.raises(InputError, match="unknown generation option 'colour'"):
        tiny_model.chat("Hi", colour="red")


@pytest.mark.integration
def test_the_official_sdks_standard_requests(default_model):
    """The Python and npm openai SDKs (npm's installed by scripts/install.sh) against the shipped model:
    models.retrieve, and LangChain's max_tokens=2048 with and without streaming."""
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    with Server(default_model) as s:
        client = s.client()
        assert client.models.retrieve("tiny").id == "tiny"
        reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Say hi."}],
                                               max_tokens=2048, temperature=0)
        assert reply.choices[0].message.content and reply.choices[0].finish_reason == "stop"
        out = subprocess.run(["node", str(root / "tests" / "js" / "openai_sdk.cjs"), s.url, "sk-test", "tiny"],
                             capture_output=True, text=True, timeout=120,
                             env={**os.environ, "NODE_PATH": str(root / ".venv" / "node" / "node_modules")})
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["id"] == "tiny" and got["answer"] == got["streamed"] == reply.choices[0].message.content
    assert got["finish"] == "stop"
