"""The chat page in a real headless Chromium (Debian's package), driven by Playwright."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slmkit.catalog.store import Store
from slmkit.serve import ModelProvider, ServerSettings, create_app
from tests.browser import chromium
from tests.test_serve import KEY, MODEL, LiveServer

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium()


@pytest.fixture(scope="module")
def server(real_store: Any, smollm_path: Any) -> Iterator[LiveServer]:
    provider = ModelProvider(real_store, n_seq=2, n_ctx=2048, allowed=(MODEL,))
    live = LiveServer(create_app(ServerSettings(api_keys=(KEY,)), provider))
    yield live
    live.close()
    provider.close()


def open_page(browser: Any, server: LiveServer, key: str) -> Any:
    page = browser.new_page()
    page.goto(server.url + "/")
    page.evaluate(
        "localStorage.clear(); sessionStorage.clear();"
        "localStorage.setItem('slmkit.settings', JSON.stringify({temp: '0', max_tokens: '96'}))"
    )
    page.reload()
    page.wait_for_function("document.getElementById('status').textContent.includes('API key')")
    page.click("#settings-open")
    page.fill("#key", key)
    page.dispatch_event("#key", "change")
    page.click("#settings-open")
    return page


def ask(page: Any, text: str) -> Any:
    done = page.locator(".msg.assistant[data-done='1']").count()
    page.fill("#q", text)
    page.press("#q", "Enter")
    # streamed: the answer holds partial text before it is complete
    page.wait_for_function(
        "(() => { const a = [...document.querySelectorAll('.msg.assistant')].at(-1);"
        " return a && a.querySelector('.content').textContent.length > 0; })()"
    )
    page.wait_for_function(
        f"document.querySelectorAll('.msg.assistant[data-done=\"1\"]').length > {done}",
        timeout=90_000,
    )
    return page.locator(".msg.assistant").last


def test_chat_page_streams_an_answer(browser: Any, server: LiveServer) -> None:
    page = open_page(browser, server, KEY)
    page.wait_for_selector(f"#model option[value='{MODEL}']", state="attached")
    answer = ask(page, "What is the capital of France?")
    assert "Paris" in answer.locator(".content").inner_text()
    meta = answer.locator(".meta").inner_text()
    assert float(meta.split(" tokens/s")[0].split()[-1]) > 0 and "first token" in meta
    assert page.inner_text(".msg.user .content") == "What is the capital of France?"
    assert page.locator("#convs .open").all_inner_texts() == ["What is the capital of France?"]
    page.close()


def test_chat_page_shows_an_error_for_a_wrong_key(browser: Any, server: LiveServer) -> None:
    page = open_page(browser, server, "wrong-key")
    page.wait_for_function("document.getElementById('status').textContent.includes('API key')")
    assert page.eval_on_selector("#model", "s => s.options.length") == 0
    page.close()


@pytest.fixture
def support_kb(real_store: Store, tmp_path: Path) -> Iterator[str]:
    """test_kb.py's support documents as a knowledge base in the store the server reads."""
    from slmkit.tasks import kb as kbs
    from slmkit.tasks.embed import load_embedder
    from tests.test_kb import DOCS

    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    name = f"support-page-test-{os.getpid()}"
    kbs.create(
        name,
        [docs],
        store=real_store,
        embedder=load_embedder("minilm-int8", store=real_store, pull=True),
    )
    yield name
    kbs.remove_kb(name, store=real_store)


def test_knowledge_base_answer_shows_its_sources(
    browser: Any, server: LiveServer, support_kb: str
) -> None:
    page = open_page(browser, server, KEY)
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1200, "height": 760})
    shots = os.environ.get("SLMKIT_SCREENSHOTS")  # docs/img: the pictures in docs/serve.md
    if shots:  # a Markdown answer first, for the picture
        ask(page, "Write a Python function that adds two numbers.")
    page.wait_for_selector(f"#kb option[value='{support_kb}']", state="attached")
    page.select_option("#kb", support_kb)
    answer = ask(page, "How do I reset my password?")
    assert answer.locator(".content").inner_text().strip()
    summaries = answer.locator(".sources summary").all_inner_texts()
    assert summaries and "passwords.md" in summaries[0], summaries
    answer.locator(".sources details").first.locator("summary").click()
    assert "reset link" in answer.locator(".sources .excerpt").first.inner_text()
    refused = ask(page, "Who won the football world cup in 1966?")
    assert "do not contain the answer" in refused.locator(".content").inner_text()
    if shots:
        page.locator(".sources details summary").first.click()
        page.screenshot(path=f"{shots}/chat-page.png")
        page.set_viewport_size({"width": 390, "height": 844})
        page.wait_for_timeout(400)  # the conversation list slides away
        page.screenshot(path=f"{shots}/chat-page-phone.png")
        page.click("#menu")
        page.wait_for_timeout(300)
        page.screenshot(path=f"{shots}/chat-page-phone-conversations.png")
    page.close()
