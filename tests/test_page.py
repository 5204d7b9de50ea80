"""The chat page in a real headless Chromium (Debian's package), driven by Playwright."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slmkit.serve import ModelProvider, ServerSettings, create_app
from tests.test_serve import KEY, MODEL, LiveServer

pytestmark = pytest.mark.real_model

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Chromium must not phone home: this machine's network is closed.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (make test installs Debian's chromium package)")
    from playwright.sync_api import sync_playwright

    with (
        tempfile.TemporaryDirectory() as profile,
        sync_playwright() as pw,
    ):
        ctx = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        yield ctx
        ctx.close()


@pytest.fixture(scope="module")
def server(real_store: Any, smollm_path: Any) -> Iterator[LiveServer]:
    provider = ModelProvider(real_store, n_seq=2, n_ctx=2048, allowed=(MODEL,))
    live = LiveServer(create_app(ServerSettings(api_keys=(KEY,)), provider))
    yield live
    live.close()
    provider.close()


def test_chat_page_streams_an_answer(browser: Any, server: LiveServer) -> None:
    page = browser.new_page()
    page.goto(server.url + "/")
    page.wait_for_function("document.getElementById('stats').textContent.includes('API key')")
    page.fill("#key", KEY)
    page.dispatch_event("#key", "change")
    page.wait_for_selector(f"#model option[value='{MODEL}']", state="attached")
    page.fill("#temp", "0")
    page.fill("#q", "What is the capital of France?")
    page.click("#send")
    # streamed: the answer element holds partial text before the reply is complete
    page.wait_for_function(
        "(() => { const a = document.getElementById('answer');"
        " return a && a.textContent.length > 0; })()"
    )
    page.wait_for_selector(".assistant[data-done='1']", timeout=60_000)
    answer = page.inner_text(".assistant[data-done='1']")
    assert "Paris" in answer
    stats = page.inner_text("#stats")
    assert "tokens/s" in stats and float(stats.split(" tokens/s")[0].split()[-1]) > 0
    assert page.inner_text(".user") == "You: What is the capital of France?"
    page.close()


def test_chat_page_shows_an_error_for_a_wrong_key(browser: Any, server: LiveServer) -> None:
    page = browser.new_page()
    page.goto(server.url + "/")
    page.fill("#key", "wrong-key")
    page.dispatch_event("#key", "change")
    page.wait_for_function("document.getElementById('stats').textContent.includes('API key')")
    assert page.eval_on_selector("#model", "s => s.options.length") == 0
    page.close()
