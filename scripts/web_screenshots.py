"""The chat page's screenshots in docs/img/, with the shipped model answering the bundled held-out
examples (a photo, then a sound) in headless Chromium:

    .venv/bin/python scripts/web_screenshots.py            # writes docs/img/web-chat{,-two-turns}.png
"""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from anymal import AnyMAL
from anymal.paths import PACKAGE_DIR
from anymal.serve.app import ServeConfig, create_app

OUT = Path(__file__).resolve().parents[1] / "docs" / "img"
EXAMPLES = PACKAGE_DIR / "assets" / "examples"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    port = _port()
    server = uvicorn.Server(uvicorn.Config(create_app(AnyMAL.from_pretrained(), ServeConfig(model_id="anymal-default")),
                                           host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=900,700"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        OUT.mkdir(parents=True, exist_ok=True)
        for turn, (file, question, shot) in enumerate([("goat.png", "What is this?", "web-chat.png"),
                                                       ("cow-sound.flac", "What makes this sound?",
                                                        "web-chat-two-turns.png")], 1):
            driver.find_element(By.ID, "file").send_keys(str(EXAMPLES / file))
            WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#files .chip"))
            driver.find_element(By.ID, "prompt").send_keys(question)
            driver.find_element(By.ID, "send").click()
            WebDriverWait(driver, 300).until(lambda d: (el := d.find_elements(By.ID, f"reply-{turn}"))
                                             and el[0].get_attribute("data-done") == "1")
            driver.save_screenshot(str(OUT / shot))
            print(f"wrote {OUT / shot}")
    finally:
        driver.quit()
        server.should_exit = True


if __name__ == "__main__":
    main()
