"""The chat page's controls in headless Chromium against the fake backend: scripted replies
(long Markdown, hostile HTML, a slow stream to stop) and a knowledge base whose file name is
hostile. tests/test_page.py runs the page against a real model."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slmkit.catalog.store import Store
from slmkit.serve import ModelProvider, ServerSettings, create_app
from slmkit.settings import Settings
from slmkit.tasks import kb as kbs
from tests.browser import chromium, page_errors
from tests.fakes import FakeBackend, FakeEmbedder, fake_entry, install_fake
from tests.test_serve import LiveServer

HOSTILE_FILE = "<img src=x onerror=window.__pwned=8>.md"
LONG_MD = (
    "## Shipping options\n\nHere is **everything** about `shipping`.\n\n"
    "| option | days | price |\n|---|---|---|\n| standard | 5 | free |\n| express | 1 | 9.90 |\n\n"
    "1. Order before noon\n2. Pay at checkout\n\n"
    "```python\ndef total(items):\n    return sum(i.price for i in items)\n```\n\n"
    "> Parcels over 30 kg ship separately.\n\n"
    + "\n\n".join(
        f"Paragraph {i}: parcels are tracked from the warehouse to the door." for i in range(25)
    )
    + "\n\n### The end\n"
)
HOSTILE = (
    '<img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script> '
    "[click me](javascript:window.__pwned=3) "
    '<a href="javascript:window.__pwned=4" onclick="window.__pwned=5">link</a> '
    '<iframe src="javascript:window.__pwned=6"></iframe><svg onload="window.__pwned=7"></svg> '
    "<style>body{display:none}</style> done"
)


def scripted(prompt: str) -> str:
    """Replies chosen by the last user message (the fake chat template's format)."""
    if "Excerpts:" in prompt:
        return "Items can be returned within thirty days for a refund [1]."
    user = (re.findall(r"<\|user\|>(.*?)\n", prompt) or [""])[-1].strip()
    system = re.findall(r"<\|system\|>(.*?)\n", prompt)
    if "markdown" in user:
        return LONG_MD
    if "hostile" in user:
        return HOSTILE
    if "slowly" in user:
        return "word " * 600
    return f"You said: {user}" + (f" [system: {system[0]}]" if system else "")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Any]]:
    root = tmp_path_factory.mktemp("page")
    store = Store(root / "store", Settings(home=root / "store"))
    install_fake(store, fake_entry("fake-chat", n_ctx=8192))
    install_fake(store, fake_entry("fake-base", chat=False))
    docs = root / "docs"
    docs.mkdir()
    (docs / "returns.md").write_text(
        "# Returns\n\nItems can be returned within thirty days of delivery for a full refund.\n"
    )
    (docs / HOSTILE_FILE).write_text("The warranty covers two years of repairs.\n")
    with pytest.MonkeyPatch.context() as mp:
        emb = FakeEmbedder()
        mp.setattr(kbs, "load_embedder", lambda name, store=None, pull=False: emb)
        mp.setattr(FakeBackend, "reply", staticmethod(scripted))
        kbs.create("shop", [docs], store=store)
        provider = ModelProvider(store, n_seq=2, n_ctx=8192)
        live = LiveServer(create_app(ServerSettings(), provider))
        yield live, provider
        live.close()
        provider.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium()


@pytest.fixture
def page(browser: Any, server: tuple[LiveServer, Any]) -> Iterator[Any]:
    """A fresh page on an empty localStorage (temperature 0 kept from a saved setting),
    fake-chat picked, JS errors collected."""
    p = browser.new_page()
    p.goto(server[0].url + "/")
    p.evaluate(
        "localStorage.clear(); sessionStorage.clear();"  # greedy: the fake's replies exactly
        "localStorage.setItem('slmkit.settings', JSON.stringify({temp: '0'}))"
    )
    p.reload()
    p.errors = page_errors(p)
    p.wait_for_selector("#model option[value='fake-chat']", state="attached")
    p.select_option("#model", "fake-chat")
    yield p
    assert p.errors == []
    p.close()


def ask(page: Any, text: str, *, n: int | None = None) -> Any:
    """Type a message, press Enter, wait for the answer; returns the last answer element."""
    done = page.locator(".msg.assistant[data-done='1']").count() if n is None else n
    page.fill("#q", text)
    page.press("#q", "Enter")
    page.wait_for_function(
        f"document.querySelectorAll('.msg.assistant[data-done=\"1\"]').length > {done}"
        " && !document.getElementById('messages').dataset.streaming",
        timeout=30_000,
    )
    return page.locator(".msg.assistant").last


def test_the_page_is_served_with_a_strict_policy_and_its_libraries(
    server: tuple[LiveServer, Any],
) -> None:
    import httpx

    r = httpx.get(server[0].url + "/")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "<script>" not in r.text  # no inline script: the policy would block it anyway
    readme = (Path(__file__).parents[1] / "src/slmkit/serve/static/vendor/README.md").read_text()
    for name in ("marked.umd.js", "purify.min.js"):
        body = httpx.get(f"{server[0].url}/static/vendor/{name}").content
        assert hashlib.sha256(body).hexdigest() in readme, f"{name} differs from the vendored one"


def test_the_page_works_under_its_own_policy(server: tuple[LiveServer, Any]) -> None:
    """The other tests lift the policy (Playwright's waits evaluate strings); here it holds,
    and the page must still load its scripts, answer, and render Markdown."""
    blocked: list[tuple[str, str]] = []  # (message, script it came from)
    for ctx in chromium(bypass_csp=False):
        p = ctx.new_page()
        p.on("console", lambda m: blocked.append((m.text, m.location.get("url", ""))))
        p.goto(server[0].url + "/")
        p.locator("#model option[value='fake-chat']").wait_for(state="attached")
        p.select_option("#model", "fake-chat")
        p.click("#settings-open")
        p.fill("#temp", "0")
        p.dispatch_event("#temp", "change")
        p.fill("#q", "say something hostile")
        p.press("#q", "Enter")
        p.locator(".msg.assistant[data-done='1']").wait_for()
        content = p.locator(".msg.assistant .content")
        assert content.inner_text().strip().endswith("done") and content.locator("a").count() == 2
        # DOMPurify parses the hostile HTML in an inert document, where Chromium reports the
        # handlers and styles it meets as blocked by the policy; nothing else may be blocked
        csp = [(m, url) for m, url in blocked if "Content Security Policy" in m]
        assert csp and all(url.endswith("/static/vendor/purify.min.js") for _, url in csp), csp


def test_long_markdown_renders(page: Any) -> None:
    page.click("#settings-open")
    page.fill("#max_tokens", "3000")
    page.dispatch_event("#max_tokens", "change")
    answer = ask(page, "show me markdown")
    content = answer.locator(".content")
    assert content.locator("h2").inner_text() == "Shipping options"
    assert content.locator("table tr").count() == 3
    assert content.locator("ol li").count() == 2
    assert "def total(items):" in content.locator("pre code").inner_text()
    assert content.locator("pre .copy").count() == 1
    assert content.locator("p").count() >= 25 and content.locator("h3").inner_text() == "The end"
    assert "##" not in content.inner_text() and "**" not in content.inner_text()
    meta = answer.locator(".meta").inner_text()
    assert re.search(r"first token \d+ ms", meta) and re.search(r"[\d.]+ tokens/s", meta)
    assert int(re.search(r"(\d+) tokens$", meta).group(1)) > 1000  # type: ignore[union-attr]


def test_hostile_model_output_never_runs(page: Any) -> None:
    pages = len(page.context.pages)
    answer = ask(page, "say something hostile")
    page.wait_for_timeout(300)  # an onerror/onload handler would have fired by now
    assert page.evaluate("window.__pwned") is None
    content = answer.locator(".content")
    assert content.locator("script, iframe, style").count() == 0
    assert page.evaluate(
        "[...document.querySelectorAll('.content *')].every(e => ![...e.attributes]"
        ".some(a => a.name.startsWith('on') || /^\\s*javascript:/i.test(a.value)))"
    )
    assert "done" in content.inner_text() and page.is_visible("body")
    for link in content.locator("a").all():  # clicking what is left runs nothing either
        link.click(modifiers=["Control"]) if link.get_attribute("href") else link.click()
    page.wait_for_timeout(200)
    assert page.evaluate("window.__pwned") is None
    assert len(page.context.pages) == pages  # no window opened by a script URL
    # the <img src=x> kept (without its handler) asked this server for /x: a 404, not an error
    page.errors[:] = [e for e in page.errors if "404 (Not Found)" not in e]


def test_system_prompt_sampling_settings_and_regenerate(
    page: Any, server: tuple[LiveServer, Any]
) -> None:
    page.click("#settings-open")
    page.fill("#system", "Talk like a pirate")
    page.dispatch_event("#system", "change")
    first = ask(page, "hello there")
    assert "[system: Talk like a pirate]" in first.locator(".content").inner_text()
    page.fill("#max_tokens", "5")
    page.dispatch_event("#max_tokens", "change")
    served = _chats(server)
    page.click("#regen")
    page.wait_for_function(
        "document.querySelector('.msg.assistant[data-done=\"1\"] .content')"
        "?.textContent.trim() === 'You s'"
    )
    assert page.locator(".msg").count() == 2 and _chats(server) == served + 1
    assert "cut at the token limit" in page.inner_text(".msg.assistant .meta")
    page.click("body")
    page.keyboard.press("Alt+r")  # the shortcut does the same
    _wait_for(lambda: _chats(server) == served + 2)
    page.wait_for_selector(".msg.assistant[data-done='1']")
    assert page.locator(".msg").count() == 2
    page.reload()  # the sampling settings and the system prompt are kept
    page.wait_for_selector(".msg.assistant[data-done='1']")
    assert (
        page.input_value("#max_tokens") == "5"
        and page.input_value("#system") == "Talk like a pirate"
    )


def _chats(server: tuple[LiveServer, Any]) -> int:
    import httpx

    metrics = httpx.get(server[0].url + "/metrics").text
    m = re.search(r'slmkit_requests_total\{status="200"\} ([\d.]+)', metrics)
    return int(float(m.group(1))) if m else 0


def _wait_for(cond: Any, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_stop_mid_stream_keeps_the_partial_answer(
    page: Any, server: tuple[LiveServer, Any]
) -> None:
    provider = server[1]
    provider.get("fake-chat").engine.runner.delay_s = 0.01  # 3,000 tokens: ~30 s
    try:
        page.fill("#q", "write slowly")
        page.press("#q", "Enter")
        page.wait_for_function(
            "(document.querySelector('.msg.assistant .content')?.textContent.length || 0) > 20"
        )
        assert page.is_visible("#stop") and not page.is_visible("#send")
        page.click("#stop")
        page.wait_for_selector(".msg.assistant[data-done='1']")
        kept = page.locator(".msg.assistant .content").inner_text()
        assert 20 <= len(kept) < 3000 and "stopped" in page.inner_text(".msg.assistant .meta")
        page.wait_for_timeout(300)
        assert page.locator(".msg.assistant .content").inner_text() == kept  # nothing more came
        assert page.is_visible("#send")
        page.fill("#q", "write slowly again")  # Esc stops too
        page.press("#q", "Enter")
        page.wait_for_function("document.getElementById('messages').dataset.streaming === '1'")
        page.wait_for_timeout(200)
        page.keyboard.press("Escape")
        page.wait_for_function("!document.getElementById('messages').dataset.streaming")
        assert "stopped" in page.locator(".msg.assistant .meta").last.inner_text()
    finally:
        provider.get("fake-chat").engine.runner.delay_s = 0.0
    assert "hello" in ask(page, "hello").locator(".content").inner_text()  # the server is free


def test_conversations_are_kept_renamed_and_deleted(page: Any) -> None:
    ask(page, "first conversation")
    page.keyboard.press("Control+Shift+O")  # new conversation
    assert page.locator(".msg").count() == 0
    ask(page, "<b>second</b> <img src=x onerror=window.__pwned=9>")
    assert page.locator("#convs li").count() == 2
    assert page.locator(".msg.user .content").inner_text().startswith("<b>second</b>")
    page.reload()
    titles = page.locator("#convs .open").all_inner_texts()
    assert titles[0].startswith("<b>second</b>") and titles[1] == "first conversation"
    page.locator("#convs li").nth(1).locator(".rename").click()
    page.fill("#convs .rename-input", "Returns question")
    page.press("#convs .rename-input", "Enter")
    page.locator("#convs .open", has_text="Returns question").click()
    assert "first conversation" in page.locator(".msg.user").inner_text()
    page.once("dialog", lambda d: d.accept())
    page.locator("#convs li", has_text="Returns question").locator(".delete").click()
    page.reload()
    assert page.locator("#convs .open").all_inner_texts() == [titles[0]]
    assert page.evaluate("window.__pwned") is None


def test_knowledge_base_answer_with_sources_and_refusal(page: Any) -> None:
    page.wait_for_selector("#kb option[value='shop']", state="attached")
    page.select_option("#kb", "shop")
    answer = ask(page, "can items be returned for a refund within thirty days")
    assert "[1]" in answer.locator(".content").inner_text()
    sources = answer.locator(".sources details")
    assert sources.count() >= 1 and "returns.md" in sources.first.locator("summary").inner_text()
    assert "cited" in (sources.first.get_attribute("class") or "")
    assert not sources.first.locator(".excerpt").is_visible()
    sources.first.locator("summary").click()  # expandable
    assert "thirty days" in sources.first.locator(".excerpt").inner_text()
    hostile = ask(page, "warranty covers two years of repairs")
    names = hostile.locator(".sources summary").all_inner_texts()
    assert any(HOSTILE_FILE in n for n in names)  # shown as text
    assert hostile.locator(".sources img").count() == 0 and page.evaluate("window.__pwned") is None
    page.click("#settings-open")
    page.check("#kb_rerank")
    page.fill("#kb_widen", "1")
    page.dispatch_event("#kb_widen", "change")
    with page.expect_request("**/v1/chat/completions") as sent:
        reranked = ask(page, "can items be returned for a refund within thirty days")
    assert sent.value.post_data_json["kb_rerank"] is True
    assert sent.value.post_data_json["kb_widen"] == 1
    assert reranked.locator(".sources details").count() >= 1
    refused = ask(page, "zebra quantum violin")
    assert refused.locator(".content").inner_text() == "The documents do not contain the answer."
    assert "not in the documents" in refused.locator(".meta").inner_text()


def test_keyboard_shortcuts_and_phone_width(page: Any) -> None:
    page.click("body")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "q"
    page.keyboard.type("line one")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("line two")
    assert page.input_value("#q") == "line one\nline two"  # Shift+Enter: a new line, not sent
    page.click("body")
    page.keyboard.press("?")
    assert page.is_visible("#help")
    page.keyboard.press("Escape")
    assert not page.is_visible("#help")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.is_visible("#menu")
    # the conversation list slides out of the way (a .15 s transition)
    page.wait_for_function("document.getElementById('sidebar').getBoundingClientRect().right <= 0")
    page.click("#menu")
    page.wait_for_function("document.getElementById('sidebar').getBoundingClientRect().x >= 0")
    page.click("#new")  # closes the list again
    page.wait_for_function("document.getElementById('sidebar').getBoundingClientRect().x < 0")
    ask(page, "hello from a phone")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    for control in ("#send", "#regen", "#model", "#kb", "#q"):
        box = page.locator(control).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, control
