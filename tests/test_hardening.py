"""Hardening (issue 18): bad input is a clean error for its own request only, on every front end.

The bad-input corpus (tests/bad_inputs.py) runs against the CLI, the Python API and the server over
a tiny LLM with the real input loaders (real Whisper, IMU and point encoders); the rest are
regression tests for the attacks a review found.
"""
from __future__ import annotations

import asyncio
import base64
import json
import socket
import time

import httpx
import numpy as np
import pytest
import torch

from anymal import AnyMAL
from anymal.cli import main
from anymal.config import LLMConfig, ModelConfig
from anymal.errors import InputError, TrainingError
from anymal.model.generation import GenerationSettings
from bad_inputs import CASES
from serving import KEY, Server, _ask, _status

FORMATS = {"image": None, "audio": "input_audio", "video": "video", "imu": "imu", "points": "points"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    for c in CASES:
        c.write(d / c.name)
    return d


def _ids(case):
    return f"{case.modality}-{case.name}"


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_corpus_is_a_clean_input_error_in_the_api(every_modality, corpus, case):
    src = str(corpus / case.name)
    with pytest.raises(InputError, match=case.says.replace(".", r"\.")):
        every_modality.chat("What is this?", max_new_tokens=2, **{case.modality: (src, case.rate) if case.rate is not None else src})


@pytest.fixture(scope="module")
def every_ckpt(every_modality, tmp_path_factory):
    return every_modality.save_pretrained(tmp_path_factory.mktemp("ck") / "every", stage="align")


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_corpus_is_one_line_and_exit_2_in_the_cli(every_ckpt, corpus, case, capsys):
    rate = ["--imu-rate", str(case.rate)] if case.rate is not None else []
    code = main(["chat", "--model", str(every_ckpt), f"--{case.modality}", str(corpus / case.name), *rate,
                 "--max-new-tokens", "2", "What is this?"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "", err
    assert len(err.strip().splitlines()) == 1 and err.startswith("anymal: error: ") and case.says in err, err


def _part(case, data: bytes) -> dict:
    b64 = base64.b64encode(data).decode()
    suffix = case.name.rsplit(".", 1)[1]
    if case.modality == "image":
        return {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64}}
    body = {"data": b64, "format": suffix, **({"rate": case.rate} if case.rate is not None else {})}
    return {"type": FORMATS[case.modality], FORMATS[case.modality]: body}


@pytest.fixture(scope="module")
def every_server(every_modality):
    with Server(every_modality) as s:
        yield s


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_corpus_is_a_4xx_openai_error_from_the_server(every_server, corpus, case):
    msg = [{"role": "user", "content": [_part(case, (corpus / case.name).read_bytes()), {"type": "text", "text": "What?"}]}]
    code, err = _status(every_server, {"model": "tiny", "messages": msg, "max_tokens": 2})
    assert code in (400, 413), err
    assert set(err["error"]) == {"message", "type", "param", "code"}
    assert "/tmp" not in err["error"]["message"]  # our temp file names never reach the client


# ---------------------------------------------------------------- one request never hurts another
BAD_TEXTS = ["slot \ue0000\ue001 marker", "lone \ud800 surrogate"]


@pytest.mark.parametrize("text", BAD_TEXTS, ids=["slot-marker", "lone-surrogate"])
def test_bad_text_is_an_input_error_in_the_api_and_cli(tiny_model, tmp_path, text, capsys):
    with pytest.raises(InputError, match="character"):
        tiny_model.chat(text, max_new_tokens=2)
    ck = tiny_model.save_pretrained(tmp_path / "ck", stage="align")
    assert main(["chat", "--model", str(ck), text]) == 2
    assert capsys.readouterr().err.startswith("anymal: error: ")


def test_a_bad_request_in_a_running_batch_fails_alone(tiny_model, images):
    """Good and bad requests are sent together; every good one gets its answer, every bad one a 400
    (the slot marker raised IndexError deep in the processor and failed the whole batch before)."""
    from concurrent.futures import ThreadPoolExecutor

    want = tiny_model.generate([[{"role": "user", "content": [{"type": "image", "path": str(images[0])},
                                                                {"type": "text", "text": "What is this?"}]}]],
                               GenerationSettings(max_new_tokens=6))[0]
    bad = [{"role": "user", "content": "x \ue0000\ue001"}]
    with Server(tiny_model, max_batch=8) as s:
        bodies = [{"model": "tiny", "messages": _ask(images[0]), "max_tokens": 6} if i % 2 else
                  {"model": "tiny", "messages": bad, "max_tokens": 6} for i in range(12)]
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(lambda b: _status(s, b), bodies))
    for i, (code, body) in enumerate(results):
        if i % 2:
            assert code == 200 and body["choices"][0]["message"]["content"] == want
        else:
            assert code == 400 and "U+E000" in body["error"]["message"]


def test_an_internal_failure_of_one_job_fails_only_that_job(tiny_model, images, monkeypatch):
    from anymal.serve.engine import Job, _encode_jobs
    from anymal.serve.events import Failed
    from anymal.serve.protocol import ChatRequest

    real = tiny_model.features_of

    def flaky(conversations):
        if any("boom" in str(c) for c in conversations):
            raise RuntimeError("boom")
        return real(conversations)

    monkeypatch.setattr(tiny_model, "features_of", flaky)

    async def run():
        loop = asyncio.get_running_loop()
        mk = lambda t: Job(ChatRequest([{"role": "user", "content": [  # noqa: E731
            {"type": "image", "path": str(images[0])}, {"type": "text", "text": t}]}], GenerationSettings()), loop)
        good, bad = mk("What is this?"), mk("boom")
        ready = _encode_jobs(tiny_model, [good, bad])
        await asyncio.sleep(0)
        return good, bad, ready

    good, bad, ready = asyncio.run(run())
    assert [j for j, _ in ready] == [good]
    ev = bad.events.get_nowait()
    assert isinstance(ev, Failed) and ev.error.status == 500 and "RuntimeError" in ev.error.message


# ---------------------------------------------------------------- no server file reads
def test_an_ffconcat_video_payload_never_reads_server_files(every_server, tmp_path):
    secret = tmp_path / "secret.mp4"
    secret.write_bytes((pytest.importorskip("anymal.paths").PACKAGE_DIR / "assets" / "examples" / "goat-moving-up.mp4").read_bytes())
    answers = []
    for target in (secret, tmp_path / "missing.mp4"):
        playlist = f"ffconcat version 1.0\nfile {target}\n".encode()
        msg = [{"role": "user", "content": [{"type": "video", "video": {"data": base64.b64encode(playlist).decode(),
                                                                         "format": "mp4"}}]}]
        answers.append(_status(every_server, {"model": "tiny", "messages": msg, "max_tokens": 2}))
    assert answers[0] == answers[1] and answers[0][0] == 400  # no answer, and no existence oracle


def test_an_obj_mesh_never_makes_trimesh_open_the_files_it_names(tmp_path):
    from anymal.encoders.geometry import load_points

    mtl = tmp_path / "x.mtl"
    mtl.write_text("newmtl x\nmap_Kd never.png\n")
    obj = tmp_path / "m.obj"
    obj.write_text(f"mtllib {mtl}\nusemtl x\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    mtl.chmod(0)  # any attempt to read it would fail loudly
    assert load_points(obj).shape == (1024, 3)


# ---------------------------------------------------------------- HTTP limits and origins
def test_a_chunked_body_is_refused_once_past_the_limit(tiny_model):
    from anymal.serve.protocol import Limits

    sent = []

    def chunks():
        for _ in range(64):
            sent.append(1)
            yield b"x" * 65536

    with Server(tiny_model, limits=Limits(max_body_bytes=200_000)) as s:
        r = httpx.post(s.url + "/v1/chat/completions", content=chunks(), timeout=30,
                       headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["message"].startswith("request body over")


def test_cross_site_forms_foreign_hosts_and_unknown_paths_get_openai_errors(server, images):
    ok = json.dumps({"model": "tiny", "messages": _ask(images[0]), "max_tokens": 2})
    auth = {"Authorization": f"Bearer {KEY}"}
    r = httpx.post(server.url + "/v1/chat/completions", content=ok, headers={**auth, "Content-Type": "text/plain"})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    r = httpx.post(server.url + "/v1/chat/completions", content=ok,
                   headers={**auth, "Content-Type": "application/json", "Host": "evil.example:8000"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "host_not_allowed"
    for method, path, code in (("GET", "/v1/nothing", 404), ("GET", "/v1/chat/completions", 405)):
        r = httpx.request(method, server.url + path, headers=auth)
        assert r.status_code == code and set(r.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("body,says", [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "stream_options": "yes"}), "stream_options"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "temperature": float("nan")}), "temperature"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "top_p": 1.5}), "top_p"),
], ids=["deep-json", "stream-options-string", "nan-temperature", "top-p-over-1"])
def test_malformed_bodies_are_400_not_500(server, body, says):
    code, err = _status(server, raw=body.encode())
    assert code == 400 and says in err["error"]["message"]


def test_a_huge_prompt_is_refused_without_tokenizing_it(tiny_model):
    text = "word " * 6_000_000  # 30 MB
    t = time.perf_counter()
    with pytest.raises(InputError, match="characters long"):
        tiny_model.chat(text, max_new_tokens=2)
    assert time.perf_counter() - t < 5


def test_too_many_inputs_are_refused_before_any_is_decoded(tiny_model, images, monkeypatch):
    calls = []
    monkeypatch.setattr(tiny_model, "encode_media", lambda items: calls.append(items))
    with pytest.raises(InputError, match="at least .* tokens long"):
        tiny_model.chat("Compare them.", image=[str(images[0])] * 200)
    assert calls == []


def test_a_half_open_connection_is_closed(monkeypatch, tiny_model):
    import threading

    import uvicorn

    from anymal.serve import cli as serve_cli
    from anymal.serve.app import ServeConfig, create_app

    monkeypatch.setattr(serve_cli, "REQUEST_HEAD_SECONDS", 0.5)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(tiny_model, ServeConfig()), host="127.0.0.1", port=port,
                                           log_level="warning", http=serve_cli.TimedH11))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finishes its head
            c.settimeout(5)
            assert c.recv(1) == b""  # closed by the server
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# ---------------------------------------------------------------- API forms and settings
def test_rate_pairs_are_one_input_in_chat(every_modality, tmp_path):
    walk = tmp_path / "walk.npy"
    np.save(walk, np.random.default_rng(0).normal(size=(200, 6)).astype(np.float32))
    wave = np.sin(np.linspace(0, 800 * np.pi, 32000)).astype(np.float32) * 0.3
    assert isinstance(every_modality.chat("What?", imu=(str(walk), 50.0), max_new_tokens=2), str)
    assert isinstance(every_modality.chat("What?", audio=(wave, 16000), max_new_tokens=2), str)
    with pytest.raises(InputError, match="channels-first"):
        every_modality.chat("What?", audio=(np.stack([wave, wave]), 16000), max_new_tokens=2)
    with pytest.raises(InputError, match="carries its own"):
        every_modality.chat("What?", audio=("a.wav", 16000), max_new_tokens=2)


@pytest.mark.parametrize("setting", [dict(max_new_tokens=-1), dict(max_new_tokens=0), dict(temperature=float("nan")),
                                     dict(temperature=-1.0), dict(top_p=float("nan")), dict(top_p=1.5),
                                     dict(repetition_penalty=0.0)], ids=str)
def test_generation_settings_out_of_range_are_input_errors(tiny_model, setting):
    with pytest.raises(InputError, match=next(iter(setting))):
        tiny_model.chat("hi", **setting)


def test_generate_with_no_conversations_is_an_input_error(tiny_model):
    with pytest.raises(InputError, match="non-empty list"):
        tiny_model.generate([])


def test_every_front_end_shares_the_generation_defaults():
    from anymal.cli import build_parser
    from anymal.eval.runner import PINNED
    from anymal.serve.protocol import Limits, parse_chat_request

    d = GenerationSettings()
    a = build_parser().parse_args(["chat", "hi"])
    server = parse_chat_request({"messages": [{"role": "user", "content": "hi"}]}, {"image"}, Limits()).settings
    for s in ((a.temperature, a.top_p, a.repetition_penalty), (server.temperature, server.top_p, server.repetition_penalty),
              (PINNED.temperature, PINNED.top_p, PINNED.repetition_penalty)):
        assert s == (d.temperature, d.top_p, d.repetition_penalty)


# ---------------------------------------------------------------- training state
def test_resume_never_unpickles_code(tmp_path):
    from anymal.train.state import RESUME_FILE, load_state

    class Boom:
        def __reduce__(self):
            return (exec, ("open('%s', 'w').write('ran')" % (tmp_path / "pwned"),))

    torch.save({"config": {}, "weights": {}, "optimizer": {}, "step": 0, "x": Boom()}, tmp_path / RESUME_FILE)
    with pytest.raises(TrainingError, match="not a readable resume state"):
        load_state(tmp_path, {})
    assert not (tmp_path / "pwned").exists()
    (tmp_path / RESUME_FILE).write_bytes((tmp_path / RESUME_FILE).read_bytes()[:100])  # truncated
    with pytest.raises(TrainingError, match="not a readable resume state"):
        load_state(tmp_path, {})


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    import random

    from anymal.train.state import RESUME_FILE, load_state, rng_state, save_state, set_rng_state

    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_state(tmp_path, {"config": {"a": 1}, "weights": {}, "optimizer": {}, "step": 5, "rng": rng_state()})
    want = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(load_state(tmp_path, {"a": 1})["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == want
    assert (tmp_path / RESUME_FILE).is_file()


def test_the_perception_runtimes_are_safe_to_share_between_threads():
    """The server's safety check and its engine run the same TF-Lite classifier from different
    threads; unguarded, TF-Lite raised "There is at least 1 reference to internal data" (a 500)."""
    from concurrent.futures import ThreadPoolExecutor

    from anymal.registry import ENCODERS

    net = ENCODERS.build("efficientnet-lite3-labels", modality="image")
    pictures = [np.random.default_rng(i).integers(0, 256, (280, 280, 3), dtype=np.uint8) for i in range(4)]
    want = [net.probabilities(p) for p in pictures]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: net.probabilities(pictures[i % 4]), range(64)))
    assert all(np.array_equal(g, want[i % 4]) for i, g in enumerate(got))


# ---------------------------------------------------------------- clean errors, named where they are
def test_over_limit_inputs_are_413_from_the_server(every_server, monkeypatch):
    from anymal.encoders import video
    from anymal.paths import PACKAGE_DIR

    monkeypatch.setattr(video, "MAX_VIDEO_PIXELS", 100)  # the example clip stands in for an 8K one
    clip = (PACKAGE_DIR / "assets" / "examples" / "goat-moving-up.mp4").read_bytes()
    msg = [{"role": "user", "content": [{"type": "video", "video": {"data": base64.b64encode(clip).decode(), "format": "mp4"}}]}]
    code, err = _status(every_server, {"model": "tiny", "messages": msg, "max_tokens": 2})
    assert code == 413 and "MP limit" in err["error"]["message"] and "/tmp" not in err["error"]["message"]


def test_an_unreadable_input_in_the_safety_check_is_400(tiny_model, images):
    from anymal.encoders.media import load_image

    class ImageCheckingGuard:  # the real guard's image check decodes the picture the same way
        def check_input(self, messages):
            for m in messages:
                for p in m["content"] if isinstance(m["content"], list) else []:
                    if p["type"] == "image":
                        load_image(p["image"])
            return None, 0.0

    png = images[0].read_bytes()
    msg = [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "data:image/png;base64," + base64.b64encode(png[: len(png) // 2]).decode()}}]}]
    with Server(tiny_model, safety=ImageCheckingGuard()) as s:
        code, err = _status(s, {"model": "tiny", "messages": msg})
    assert code == 400 and "truncated" in err["error"]["message"]


def test_a_client_gone_mid_upload_is_not_logged_as_an_error(server, caplog):
    with socket.create_connection(("127.0.0.1", server.port)) as c:
        c.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: 1000\r\n\r\n{\"messages\":")
        time.sleep(0.3)
    time.sleep(0.5)
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


def test_special_files_and_odd_csvs_read_as_they_are(tmp_path):
    import os

    from anymal.encoders.media import load_image
    from anymal.encoders.motion import load_imu

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        load_image(str(fifo))  # never opened: it would block
    with pytest.raises(InputError, match="not a regular file"):
        load_image(str(tmp_path))
    with pytest.raises(InputError, match="no pixels"):
        load_image(np.zeros((0, 0, 3), np.uint8))
    bom = tmp_path / "bom.csv"
    bom.write_text("\ufefft,ax,ay,az,gx,gy,gz\n" + "".join(f"{i / 50},0,9.8,0,0,0,0\n" for i in range(60)), encoding="utf-8")
    assert load_imu(bom).shape == (60, 6)


def test_a_diverged_checkpoint_and_a_non_model_llm_are_one_line_errors(tiny_model, tmp_path, capsys):
    from anymal.errors import CheckpointError

    ck = tiny_model.save_pretrained(tmp_path / "ck", stage="align")
    from safetensors.torch import load_file, save_file

    weights = load_file(str(ck / "adapters.safetensors"))
    save_file({k: torch.full_like(v, float("nan")) for k, v in weights.items()}, str(ck / "adapters.safetensors"))
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        AnyMAL.from_pretrained(ck)
    (tmp_path / "notmodel").mkdir()
    (tmp_path / "notmodel" / "config.json").write_text('{"hello": 1}')
    cfg = ModelConfig(llm=LLMConfig(id=str(tmp_path / "notmodel")), modalities={})
    for fn in (lambda: AnyMAL.from_config(cfg), lambda: main(["chat", "--model", str(ck), "hi"])):
        try:
            code = fn()
        except Exception as e:
            assert type(e).__name__ in ("ConfigError", "CheckpointError") and str(e)
        else:
            assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "NaN or infinite" in err


def test_manifest_typed_parts_are_resolved_and_bad_ones_counted(tmp_path, images):
    from anymal.data.jsonl import read_jsonl
    from anymal.errors import DataError

    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.png").write_bytes(images[0].read_bytes())
    turn = lambda path: json.dumps({"messages": [  # noqa: E731
        {"role": "user", "content": [{"type": "image", "path": path}, {"type": "text", "text": "What?"}]},
        {"role": "assistant", "content": "A square."}]})
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes("\n".join([turn("pics/a.png"), turn("pics/missing.png")]).encode() + b"\n{\"x\": \"caf\xe9\"}\n")
    samples, skipped = read_jsonl(manifest, ["image"], on_error="skip")
    assert [s.messages[0]["content"][0]["path"] for s in samples] == [str(tmp_path / "pics" / "a.png")]
    assert skipped.total == 2
    assert any("does not exist" in r for r in skipped.reasons) and any("not UTF-8" in r for r in skipped.reasons)
    with pytest.raises(DataError, match=r"m\.jsonl:2: field 'messages\[0\]\.content\[0\]\.path'"):
        read_jsonl(manifest, ["image"])


def test_the_repl_keeps_commands_from_the_model_and_survives_ctrl_c(tiny_model, tmp_path, monkeypatch, capsys):
    ck = tiny_model.save_pretrained(tmp_path / "ck", stage="align")
    lines = iter([KeyboardInterrupt, "/help", "/nonsense", "hi", None])

    def fake_input(prompt=""):
        line = next(lines)
        if line is KeyboardInterrupt:
            raise KeyboardInterrupt
        if line is None:
            raise EOFError
        return line

    asked = []
    real_stream = AnyMAL.stream
    monkeypatch.setattr(AnyMAL, "stream", lambda self, history, s: asked.append(history[-1]) or real_stream(self, history, s))
    monkeypatch.setattr("builtins.input", fake_input)
    assert main(["chat", "--model", str(ck), "--max-new-tokens", "2"]) == 0
    err = capsys.readouterr().err
    assert "/quit or Ctrl-D exits" in err and "unknown command /nonsense" in err and err.count("/help shows this") >= 3
    assert [h["content"][-1]["text"] for h in asked] == ["hi"]  # only the real message reached the model


def test_slow_image_sources_cannot_hold_every_worker(tiny_model, images):
    import functools
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from anymal.serve.protocol import Limits

    class Slow(SimpleHTTPRequestHandler):
        def do_GET(self):
            time.sleep(2.0)
            super().do_GET()

        def log_message(self, *a):
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Slow, directory=str(images[0].parent)))
    threading.Thread(target=http.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{http.server_address[1]}"
    by_url = {"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"http://{host}/{images[0].name}"}}]}]}
    try:
        with Server(tiny_model, limits=Limits(allow_url_hosts=(host,), max_fetches=1)) as s, ThreadPoolExecutor(2) as pool:
            slow = pool.submit(_status, s, by_url)
            time.sleep(0.5)
            t = time.perf_counter()
            second = _status(s, by_url)
            inline = _status(s, {"model": "tiny", "max_tokens": 2, "messages": _ask(images[0])})
            assert time.perf_counter() - t < 1.5  # neither waited for the slow source
            assert second[0] == 503 and second[1]["error"]["code"] == "server_busy"
            assert inline[0] == 200 and slow.result()[0] == 200
    finally:
        http.shutdown()


def test_a_normal_chat_prints_only_the_reply_and_warns_nothing(tiny_llm_dir, tmp_path, images, capsys):
    import warnings

    from conftest import tiny_config

    ck = AnyMAL.from_config(tiny_config(tiny_llm_dir)).save_pretrained(tmp_path / "ck", stage="align")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["chat", "--model", str(ck), "--image", str(images[0]), "--max-new-tokens", "4", "What is this?"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and len(out.splitlines()) == 1 and not [str(w.message) for w in caught]
