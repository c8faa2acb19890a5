"""The OpenAI-compatible server, driven by the official `openai` client over real HTTP (uvicorn on
127.0.0.1): answers equal the model's own, streaming follows OpenAI's SSE shape, errors are OpenAI
error objects with the right status, concurrent requests are batched."""
from __future__ import annotations

import base64
import io
import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
import torch
from PIL import Image

from anymal.model.generation import GenerationSettings
from anymal.serve.protocol import Limits
from serving import KEY, Server, _ask, _free_port, _ours, _status

def test_openai_client_chat_streaming_and_not_equal_the_model(server, tiny_model, images):
    c = server.client()
    assert [m.id for m in c.models.list().data] == ["tiny"]
    r = c.chat.completions.create(model="tiny", messages=_ask(images[0]), temperature=0, max_tokens=6)
    want = tiny_model.generate([_ours(images[0])], GenerationSettings(max_new_tokens=6))[0]
    assert r.choices[0].message.content == want and r.choices[0].message.role == "assistant"
    usage = r.usage.model_dump()
    assert usage["prompt_tokens_details"]["modality_tokens"] == {"image": 4}
    assert usage["prompt_tokens"] == usage["prompt_tokens_details"]["text_tokens"] + 4
    assert usage["completion_tokens"] >= 1 and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    chunks = list(c.chat.completions.create(model="tiny", messages=_ask(images[0]), temperature=0, max_tokens=6,
                                            stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == want
    finish = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finish == [r.choices[0].finish_reason] and chunks[-1].usage.total_tokens == r.usage.total_tokens


def test_raw_sse_role_first_done_last(server, images):
    body = {"model": "tiny", "messages": _ask(images[1]), "max_tokens": 4, "temperature": 0, "stream": True}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    first = json.loads(events[0][6:])
    assert first["object"] == "chat.completion.chunk" and first["choices"][0]["delta"]["role"] == "assistant"
    assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] in ("stop", "length")


def test_stop_length_and_n_choices(server, images):
    c = server.client()
    r = c.chat.completions.create(model="tiny", messages=_ask(images[0]), max_tokens=2, n=2, seed=3)
    assert [ch.finish_reason for ch in r.choices] == ["length", "length"] and r.usage.completion_tokens == 4
    with pytest.raises(openai.BadRequestError, match="greedy decoding gives one answer"):  # two equal answers
        c.chat.completions.create(model="tiny", messages=_ask(images[0]), temperature=0, max_tokens=2, n=2)
    seeded = [c.chat.completions.create(model="tiny", messages=_ask(images[0]), temperature=1.0, seed=7,
                                        max_tokens=5).choices[0].message.content for _ in range(2)]
    assert seeded[0] == seeded[1]  # a seed makes sampling repeatable


def test_errors_are_openai_error_objects_with_the_right_status(server, images):
    ok = _ask(images[0])
    bad_img = [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "data:image/png;base64," + base64.b64encode(b"not an image").decode()}}]}]
    cases = [
        ({"model": "tiny", "messages": ok}, "sk-wrong", 401, None),
        ({"model": "nope", "messages": ok}, KEY, 404, "model"),
        ({"model": "tiny", "messages": []}, KEY, 400, "messages"),
        ({"model": "tiny", "messages": ok, "temperature": 5}, KEY, 400, "temperature"),
        ({"model": "tiny", "messages": ok, "max_tokens": 0}, KEY, 400, "max_tokens"),
        ({"model": "tiny", "messages": [{"role": "user", "content": [{"type": "hologram"}]}]}, KEY, 400,
         "messages[0].content[0].type"),
        ({"model": "tiny", "messages": bad_img}, KEY, 400, "messages[0].content[0].image_url"),
        ({"model": "tiny", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
            "url": f"file://{images[0]}"}}]}]}, KEY, 400, "messages[0].content[0].image_url.url"),
        ({"model": "tiny", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
            "url": "https://example.com/cat.png"}}]}]}, KEY, 400, "messages[0].content[0].image_url.url"),
        ({"model": "tiny", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {
            "data": "AAAA", "format": "wav"}}]}]}, KEY, 400, "messages[0].content[0].type"),  # no audio adapter
    ]
    for body, key, status, param in cases:
        code, err = _status(server, body, key=key)
        assert code == status, (body, err)
        assert set(err["error"]) == {"message", "type", "param", "code"} and err["error"]["message"], err
        assert err["error"]["param"] == param, err
        assert "Traceback" not in json.dumps(err)
    code, err = _status(server, raw=b"{not json")
    assert code == 400 and "not valid JSON" in err["error"]["message"]
    with pytest.raises(openai.AuthenticationError):
        server.client("sk-wrong").chat.completions.create(model="tiny", messages=ok)
    with pytest.raises(openai.BadRequestError, match="unknown content part type"):
        server.client().chat.completions.create(model="tiny", messages=[{"role": "user", "content": [{"type": "x"}]}])


def test_parameters_the_server_would_ignore_are_refused_by_name(server):
    """tools, JSON output, log-probabilities, penalties: a 400 naming the parameter, not a silent plain
    answer; their "nothing asked" values and OpenAI's bookkeeping fields are accepted."""
    c, ok = server.client(), [{"role": "user", "content": "Hi"}]
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    for extra in ({"tools": [tool]}, {"response_format": {"type": "json_object"}}, {"logprobs": True},
                  {"frequency_penalty": 0.5}, {"logit_bias": {"50": 10}}):
        with pytest.raises(openai.BadRequestError, match="not supported by this server") as e:
            c.chat.completions.create(model="tiny", messages=ok, max_tokens=2, **extra)
        assert e.value.body["param"] == next(iter(extra))
    with pytest.raises(openai.BadRequestError, match="unrecognized request argument") as e:
        c.chat.completions.create(model="tiny", messages=ok, max_tokens=2, extra_body={"top_kk": 3})
    assert e.value.body["param"] == "top_kk"
    r = c.chat.completions.create(model="tiny", messages=ok, max_tokens=2, tools=[], logprobs=False, user="u1",
                                  frequency_penalty=0, response_format={"type": "text"}, metadata={"k": "v"})
    assert r.choices[0].message.content is not None


def test_size_limits_are_413_and_a_full_queue_is_503(tiny_model, images):
    big = io.BytesIO()
    Image.new("RGB", (300, 300), (1, 2, 3)).save(big, format="PNG")
    big_url = "data:image/png;base64," + base64.b64encode(big.getvalue()).decode()
    with Server(tiny_model, limits=Limits(sizes={"image": 0.04}, max_body_bytes=20_000)) as s:
        code, err = _status(s, {"model": "tiny", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": big_url}}]}]})
        assert code == 413 and "MP" in err["error"]["message"]
        code, err = _status(s, {"model": "tiny", "messages": [{"role": "user", "content": "x" * 30_000}]})
        assert code == 413
    with Server(tiny_model, max_queue=0) as s:
        with pytest.raises(openai.InternalServerError) as e:
            s.client().chat.completions.create(model="tiny", messages=_ask(images[0]), max_tokens=2)
        assert e.value.status_code == 503


def test_concurrent_requests_are_batched_and_answer_as_alone(server, tiny_model, images):
    prompts = [(images[i % 4], ["What is this?", "Describe it.", "Colour?"][i % 3]) for i in range(8)]
    c = server.client()

    def ask(p):
        return c.chat.completions.create(model="tiny", messages=_ask(*p), temperature=0,
                                         max_tokens=5).choices[0].message.content

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(ask, prompts))
    alone = [tiny_model.generate([_ours(*p)], GenerationSettings(max_new_tokens=5))[0] for p in prompts]
    assert got == alone
    engine = server.app.state.engine
    assert engine.rows_decoded == 8 and engine.batches < 8  # some requests shared a batch


@pytest.fixture
def slow_steps(monkeypatch):
    """Every decode step 20 ms longer: tests of what happens *during* a long answer must not depend
    on how fast the tiny model decodes (the fast decoder can finish 250 tokens in 0.3 s)."""
    from anymal.model.generation import DecodeBatch

    advance = DecodeBatch.advance

    def slow(self, keep):
        time.sleep(0.02)
        return advance(self, keep)

    monkeypatch.setattr(DecodeBatch, "advance", slow)


def test_a_request_joins_a_running_batch_instead_of_waiting_for_it(server, tiny_model, images, slow_steps):
    c, engine = server.client(), server.app.state.engine
    joined, tokens = engine.joined_running, engine.tokens_out

    def ask(image, max_tokens):
        return c.chat.completions.create(model="tiny", messages=_ask(image), temperature=0,
                                         max_tokens=max_tokens).choices[0].message.content

    with ThreadPoolExecutor(1) as pool:
        long = pool.submit(ask, images[0], 400)  # the tiny model never stops by itself: 400 steps
        deadline = time.time() + 30
        while engine.tokens_out < tokens + 3 and time.time() < deadline:
            time.sleep(0.005)
        short = ask(images[1], 3)
        assert not long.done()  # answered mid-way through the long one's decode
        long_text = long.result()
    assert engine.joined_running == joined + 1
    s = GenerationSettings(max_new_tokens=400)
    assert long_text == tiny_model.generate([_ours(images[0], "What is this?")], s)[0]
    assert short == tiny_model.generate([_ours(images[1], "What is this?")], GenerationSettings(max_new_tokens=3))[0]


@pytest.mark.integration
def test_real_model_answers_an_openai_client_about_an_image_sound_and_imu(default_model):
    """The shipped model behind the server: the official client sends a picture, a sound clip and an
    IMU recording (the extension part), streaming and not; replies equal the model's own greedy ones."""
    ex = Path(__file__).resolve().parents[1] / "anymal" / "assets" / "examples"
    b64 = lambda p: base64.b64encode((ex / p).read_bytes()).decode()  # noqa: E731
    cases = [
        ([{"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64("truck.png")}},
          {"type": "text", "text": "What is this?"}],
         [{"type": "image", "path": str(ex / "truck.png")}, {"type": "text", "text": "What is this?"}]),
        ([{"type": "input_audio", "input_audio": {"data": b64("goat-sound.flac"), "format": "flac"}},
          {"type": "text", "text": "What makes this sound?"}],
         [{"type": "audio", "path": str(ex / "goat-sound.flac")}, {"type": "text", "text": "What makes this sound?"}]),
        ([{"type": "imu", "imu": {"data": b64("walking-upstairs.csv"), "format": "csv"}},
          {"type": "text", "text": "What is the person doing?"}],
         [{"type": "imu", "path": str(ex / "walking-upstairs.csv")}, {"type": "text", "text": "What is the person doing?"}]),
    ]
    with Server(default_model) as s:
        c = s.client()
        for parts, ours in cases:
            want = default_model.generate([[{"role": "user", "content": ours}]], GenerationSettings(max_new_tokens=24))[0]
            r = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": parts}],
                                          temperature=0, max_tokens=24)
            assert r.choices[0].message.content == want and want
            streamed = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": parts}], temperature=0, max_tokens=24, stream=True))
            assert streamed == want
            modality = next(iter(r.usage.model_dump()["prompt_tokens_details"]["modality_tokens"]))
            assert modality in ("image", "audio", "imu")
        assert "upstairs" in want.lower()  # the shipped IMU adapter reads this example right
    with Server(default_model, limits=Limits(sizes={"imu": 100, "audio": 0.5})) as s:
        for parts, _ in cases[1:]:  # the sound (> 0.5 s) and the IMU recording (> 100 rows) are too long
            code, err = _status(s, {"model": "tiny", "messages": [{"role": "user", "content": parts}]})
            assert code == 413 and ("s;" in err["error"]["message"] or "samples" in err["error"]["message"]), err


def test_a_client_that_goes_away_stops_its_rows(server, images, slow_steps):
    body = {"model": "tiny", "messages": _ask(images[2]), "max_tokens": 400, "temperature": 0, "stream": True}
    engine = server.app.state.engine
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as r:
        for line in r.iter_lines():
            if '"content": "' in line and '"role"' not in line:
                break  # one piece of text, then hang up
    deadline = time.time() + 30
    while (engine.busy or engine.queued) and time.time() < deadline:
        time.sleep(0.05)
    assert engine.rows_cancelled == 1 and engine.tokens_out < 400  # the tiny model never stops by itself


def test_a_request_over_its_time_is_504_and_the_server_keeps_serving(tiny_model, images, slow_steps):
    with Server(tiny_model, timeout_s=0.3) as s:
        code, err = _status(s, {"model": "tiny", "messages": _ask(images[0]), "max_tokens": 500, "temperature": 0})
        assert code == 504 and err["error"]["code"] == "timeout"
        deadline = time.time() + 30
        while s.app.state.engine.busy and time.time() < deadline:
            time.sleep(0.05)
        assert s.app.state.engine.rows_cancelled == 1
        assert httpx.get(s.url + "/health").json()["status"] == "ok"


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                    reason="needs Debian's chromium and chromium-driver (scripts/install.sh installs them)")
def test_web_page_in_headless_chromium_previews_streams_sends_each_file_once_and_starts_over(every_modality, images):
    """The chat page in a real browser: attachments show as a thumbnail or a player, the streamed reply
    appears in full, a file reaches the server only with the message it was attached to, New chat
    forgets the conversation. Screenshots land in ANYMAL_TEST_ARTIFACTS (docs/img/ holds copies)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    from anymal.paths import PACKAGE_DIR

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=900,800"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    out = Path(os.environ.get("ANYMAL_TEST_ARTIFACTS", "runs/test-artifacts"))
    out.mkdir(parents=True, exist_ok=True)

    def ask(files, text, turn):
        for f in files:
            driver.find_element(By.ID, "file").send_keys(str(f))
        WebDriverWait(driver, 20).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#files .chip")) == len(files))
        driver.find_element(By.ID, "prompt").send_keys(text)
        driver.find_element(By.ID, "send").click()
        try:
            return WebDriverWait(driver, 120).until(lambda d: (el := d.find_elements(By.ID, f"reply-{turn}"))
                                                    and el[0].get_attribute("data-done") == "1" and el[0])
        except TimeoutException:
            raise AssertionError("no finished reply; the page shows:\n" + driver.find_element(By.ID, "log").text) from None

    server = Server(every_modality).__enter__()
    try:
        driver.get(server.url + "/")
        key = WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "key").is_displayed()
                                              and d.find_element(By.ID, "key"))  # the test server wants a key
        key.send_keys(KEY)
        # record what the page sends; short answers (the settings' max tokens) keep three turns inside the
        # tiny LLM's 256 tokens
        driver.execute_script("window.sent = []; const f = window.fetch; window.fetch = (u, o) => {"
                              " if (o && o.body) window.sent.push(JSON.parse(o.body)); return f(u, o); };")
        driver.find_element(By.CSS_SELECTOR, "#settings summary").click()
        tokens = driver.find_element(By.ID, "max-tokens")
        tokens.clear()
        tokens.send_keys("8")
        reply = ask([images[3]], "What is this?", 1)
        want = every_modality.generate([_ours(images[3])], GenerationSettings(max_new_tokens=8))[0]
        assert reply.get_attribute("data-raw") == want and want  # shown rendered as Markdown
        assert driver.execute_script("return window.sent")[0]["max_tokens"] == 8
        assert driver.find_elements(By.CSS_SELECTOR, "#log .user .chip img")  # the picture, not "[image_url]"
        assert driver.save_screenshot(str(out / "web-demo.png"))

        sound = PACKAGE_DIR / "assets" / "examples" / "cow-sound.flac"
        ask([sound], "And this?", 2)
        assert driver.find_elements(By.CSS_SELECTOR, "#log .user .chip audio")  # a player
        sent = driver.execute_script("return window.sent")
        kinds = [[p["type"] for p in m["content"]] if isinstance(m["content"], list) else "text"
                 for m in sent[1]["messages"]]
        assert kinds == ["text", "text", ["input_audio", "text"]]  # the picture is not sent again
        assert sent[1]["messages"][0]["content"] == f"(attached: {images[3].name}) What is this?"
        assert driver.save_screenshot(str(out / "web-demo-two-turns.png"))

        driver.find_element(By.ID, "new").click()
        assert not driver.find_elements(By.CSS_SELECTOR, "#log .turn")
        ask([images[0]], "What is this?", 1)
        assert [m["role"] for m in driver.execute_script("return window.sent")[2]["messages"]] == ["user"]

        driver.refresh()  # the key is kept for the tab, the conversation and the settings for the browser
        WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "key").get_property("value") == KEY)
        assert driver.find_element(By.ID, "reply-1").get_attribute("data-raw") is not None
        assert driver.find_element(By.ID, "max-tokens").get_property("value") == "8"
        driver.execute_script("window.sent = []; const f = window.fetch; window.fetch = (u, o) => {"
                              " if (o && o.body) window.sent.push(JSON.parse(o.body)); return f(u, o); };")
        driver.find_element(By.CSS_SELECTOR, "#settings summary").click()
        driver.find_element(By.ID, "system").send_keys("Be brief.")
        ask([images[1]], "What is this?", 2)
        sent = driver.execute_script("return window.sent")[-1]
        assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
        assert sent["messages"][0]["content"] == "Be brief." and sent["temperature"] == 0
    finally:
        driver.quit()
        server.__exit__()


def test_image_urls_are_fetched_only_from_allowed_hosts_and_within_limits(tiny_model, images):
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(images[0].parent))
    handler.log_message = lambda *a: None
    http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{http.server_address[1]}"
    url = f"http://{host}/{images[0].name}"
    msg = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "What is this?"}]}]
    ask = lambda u: {"model": "tiny", "messages": [{"role": "user", "content": [  # noqa: E731
        {"type": "image_url", "image_url": {"url": u}}]}]}
    try:
        with Server(tiny_model, limits=Limits(allow_url_hosts=("127.0.0.1",))) as s:  # a bare host: port 80 only
            code, err = _status(s, {"model": "tiny", "messages": msg})
            assert code == 400 and "not allowed" in err["error"]["message"]
        closed_port = _free_port()  # nothing listens there
        with Server(tiny_model, limits=Limits(allow_url_hosts=(host, f"127.0.0.1:{closed_port}"))) as s:
            r = s.client().chat.completions.create(model="tiny", messages=msg, temperature=0, max_tokens=5)
            want = tiny_model.generate([_ours(images[0])], GenerationSettings(max_new_tokens=5))[0]
            assert r.choices[0].message.content == want
            missing = _status(s, ask(url + ".missing"))
            closed = _status(s, ask(f"http://127.0.0.1:{closed_port}/x.png"))
            assert missing == closed  # an open port and a closed one read the same
            assert missing[0] == 400 and missing[1]["error"]["message"] == "could not fetch an image from the URL"
        with Server(tiny_model, limits=Limits(allow_url_hosts=(host,), url_max_bytes=50)) as s:
            code, err = _status(s, {"model": "tiny", "messages": msg})
            assert code == 413
        with Server(tiny_model) as s:  # the default: no host allowed
            code, err = _status(s, {"model": "tiny", "messages": msg})
            assert code == 400 and "not allowed" in err["error"]["message"]
    finally:
        http.shutdown()


def test_one_undecodable_input_fails_only_its_own_request(tiny_model, images, tmp_path):
    """Inputs of a batch are encoded together; a corrupt one makes the engine fall back to job by
    job, so the good request still gets its answer and the bad one a 400."""
    import asyncio

    from anymal.serve.engine import Job, _encode_jobs
    from anymal.serve.events import Failed
    from anymal.serve.protocol import ChatRequest

    data = images[0].read_bytes()
    truncated = data[: len(data) // 2]  # the header reads, the pixels do not

    async def run():
        loop = asyncio.get_running_loop()
        mk = lambda src: Job(ChatRequest([{"role": "user", "content": [  # noqa: E731
            {"type": "image", "image": src}, {"type": "text", "text": "What is this?"}]}], GenerationSettings()), loop)
        good, bad = mk(data), mk(truncated)
        ready = _encode_jobs(tiny_model, [good, bad])
        await asyncio.sleep(0)
        return good, bad, ready

    good, bad, ready = asyncio.run(run())
    assert [j for j, _ in ready] == [good] and ready[0][1][0].shape[0] > 0
    ev = bad.events.get_nowait()
    assert isinstance(ev, Failed) and ev.error.status == 400 and "corrupt or truncated" in ev.error.message


def test_anymal_serve_command_starts_a_server(tiny_model, tmp_path):
    """`anymal serve` from the command line (the tiny encoders registered, as in test_runs)."""
    import subprocess
    import sys

    from conftest import LAUNCH

    ckpt = tiny_model.save_pretrained(tmp_path / "ck", stage="align")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH, "serve", "--model", str(ckpt), "--port", str(port),
                             "--api-key", KEY, "--no-safety", "--max-connections", "3"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline, health = time.time() + 60, None
        while time.time() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert health == {"status": "ok", "model": "ck", "queued": 0, "batches": 0}, proc.poll()
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401  # the key is required
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]  # --max-connections 3
        time.sleep(0.3)
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 503  # one too many: refused
        for c in idle:
            c.close()
        time.sleep(0.3)
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
    finally:
        proc.terminate()
        err = proc.communicate(timeout=30)[1]
    assert "serving 'ck' (image) on http://127.0.0.1:" in err and "safety checks: off" in err


def test_an_imagebind_model_serves_with_its_injection(tiny_llm_dir, images):
    """A bind model (no image tokens; the image enters every layer through the gates) answers the
    client exactly as model.generate does, and the injection really is applied on the serving path."""
    from anymal import AnyMAL
    from conftest import tiny_config

    cfg = tiny_config(tiny_llm_dir, projector="bind", num_tokens=None)
    cfg.bind.width, cfg.bind.blocks = 32, 1
    torch.manual_seed(0)
    model = AnyMAL.from_config(cfg)
    with torch.no_grad():
        model.bind.gates.fill_(2.0)
    want = model.generate([_ours(images[0])], GenerationSettings(max_new_tokens=8))[0]
    with Server(model) as s:
        r = s.client().chat.completions.create(model="tiny", messages=_ask(images[0]), temperature=0, max_tokens=8)
        assert r.choices[0].message.content == want
        assert r.usage.model_dump()["prompt_tokens_details"]["modality_tokens"] == {"image": 0}
        with torch.no_grad():
            model.bind.gates.zero_()
        plain = s.client().chat.completions.create(model="tiny", messages=_ask(images[0]), temperature=0, max_tokens=8)
    assert plain.choices[0].message.content != want


def test_web_page_stop_button_and_markdown(tiny_model):
    """Stop ends the answer being streamed and keeps what came; replies render as Markdown, escaped first."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        with Server(tiny_model) as server:
            driver.get(server.url + "/")
            WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "key").is_displayed()).__bool__()
            driver.find_element(By.ID, "key").send_keys(KEY)
            html = driver.execute_script("return renderMarkdown(arguments[0])",
                                         "**Bold** and `code` <script>x</script>\n- one\n- two\n```\na < b\n```")
            assert html == ("<p><strong>Bold</strong> and <code>code</code> &lt;script&gt;x&lt;/script&gt;</p>"
                            "<ul><li>one</li><li>two</li></ul><pre><code>a &lt; b\n</code></pre>")
            # an answer that never ends by itself: one chunk, then the stream waits (until Stop aborts it)
            driver.execute_script("""
              const f = window.fetch;
              window.fetch = (u, o) => {
                if (!o || !o.body) return f(u, o);
                const chunk = 'data: ' + JSON.stringify({choices: [{index: 0, delta: {content: "Hel"}}]}) + '\\n\\n';
                const body = new ReadableStream({start(c) {
                  c.enqueue(new TextEncoder().encode(chunk));
                  o.signal.addEventListener("abort", () => c.error(new DOMException("aborted", "AbortError")));
                }});
                return Promise.resolve(new Response(body, {status: 200}));
              };""")
            driver.find_element(By.ID, "prompt").send_keys("Tell me a long story.")
            driver.find_element(By.ID, "send").click()
            WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "reply-1").get_attribute("data-raw") == "Hel")
            assert driver.find_element(By.ID, "stop").is_displayed() and not driver.find_element(By.ID, "send").is_displayed()
            driver.find_element(By.ID, "stop").click()
            reply = WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "reply-1").get_attribute("data-done")
                                                    and d.find_element(By.ID, "reply-1"))
            assert reply.get_attribute("data-stopped") == "1" and reply.text == "Hel"
            assert driver.find_element(By.ID, "send").is_displayed()
            kept = driver.execute_script("return JSON.parse(localStorage.getItem('anymal-chat'))")
            assert kept == [{"role": "user", "content": "Tell me a long story."}, {"role": "assistant", "content": "Hel"}]
    finally:
        driver.quit()
