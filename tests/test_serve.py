"""The HTTP server, driven by the official openai client over a real loopback port."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from slmkit.catalog.store import Store
from slmkit.serve import ModelProvider, ServerSettings, create_app

pytestmark = pytest.mark.real_model
MODEL = "smollm2-135m-instruct"
KEY = "test-key-123"
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """uvicorn on 127.0.0.1 in a thread; stops on close() (and is a daemon either way).

    sndbuf: a fixed send buffer for its connections (the kernel's autotuning lets a
    loopback socket buffer up to 4 MB, which would hide a client that stops reading)."""

    def __init__(self, app: Any, lifespan: str = "off", sndbuf: int | None = None) -> None:
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="error", lifespan=lifespan
            )
        )
        sockets = None
        if sndbuf is not None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)  # accepted ones inherit
            sock.bind(("127.0.0.1", self.port))
            sockets = [sock]
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": sockets}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def live(real_store: Store, smollm_path: Any) -> Iterator[LiveServer]:
    assert slm_assets(real_store)
    provider = ModelProvider(real_store, n_seq=4, n_ctx=4096, max_waiting=8)
    server = LiveServer(
        create_app(ServerSettings(api_keys=(KEY,), max_body_bytes=200_000), provider)
    )
    yield server
    server.close()
    provider.close()


def slm_assets(store: Store) -> bool:
    from slmkit.catalog.assets import MINILM_FP32, MINILM_INT8, asset_dir

    asset_dir(store, MINILM_FP32, pull=True)
    asset_dir(store, MINILM_INT8, pull=True)
    return True


@pytest.fixture
def client(live: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.url + "/v1", api_key=KEY, max_retries=0, timeout=120)


def test_models_list(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids


def test_chat_non_streaming(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL, messages=FRANCE, temperature=0)  # type: ignore[arg-type]
    assert "Paris" in (r.choices[0].message.content or "")
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0


def test_chat_streaming_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=FRANCE,
        temperature=0,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    deltas, usage, finish = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            deltas.append(ch.delta.content or "")
            finish = ch.finish_reason or finish
    assert "Paris" in "".join(deltas) and len(deltas) > 3
    assert finish == "stop" and usage is not None and usage.completion_tokens > 0


def test_completions_and_n(client: openai.OpenAI) -> None:
    r = client.completions.create(
        model=MODEL, prompt="The capital of Germany is", max_tokens=8, temperature=0
    )
    assert "Berlin" in r.choices[0].text
    two = client.chat.completions.create(
        model=MODEL,
        messages=FRANCE,
        n=2,
        max_tokens=12,  # type: ignore[arg-type]
        temperature=1.0,
        seed=3,
    )
    assert [c.index for c in two.choices] == [0, 1]
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model=MODEL, prompt="1, 2, 3,", max_tokens=6, temperature=0, stream=True
        )
        if c.choices
    )
    assert "4" in streamed


def test_logprobs(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL,
        messages=FRANCE,
        temperature=0,
        max_tokens=8,  # type: ignore[arg-type]
        logprobs=True,
        top_logprobs=3,
    )
    content = r.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content and len(content) == r.usage.completion_tokens  # type: ignore[union-attr]
    first = content[0]
    assert first.logprob <= 0 and len(first.top_logprobs) == 3
    assert first.top_logprobs[0].logprob >= first.top_logprobs[1].logprob
    assert first.token == first.top_logprobs[0].token  # greedy picks the most likely token
    assert "".join(t.token for t in content) == r.choices[0].message.content
    c = client.completions.create(
        model=MODEL, prompt="The capital of Germany is", max_tokens=4, temperature=0, logprobs=2
    )
    lp = c.choices[0].logprobs
    assert lp is not None and lp.tokens and len(lp.top_logprobs or []) == len(lp.tokens)
    streamed = client.chat.completions.create(
        model=MODEL,
        messages=FRANCE,
        temperature=0,  # type: ignore[arg-type]
        max_tokens=5,
        logprobs=True,
        stream=True,
    )
    n = sum(
        len(ch.choices[0].logprobs.content or [])
        for ch in streamed  # type: ignore[union-attr]
        if ch.choices and ch.choices[0].logprobs
    )
    assert n >= 4


def test_embeddings(client: openai.OpenAI) -> None:
    r = client.embeddings.create(model="all-minilm-l6-v2", input=["a cat", "a kitten", "tax law"])
    v = [d.embedding for d in r.data]
    assert len(v) == 3 and len(v[0]) == 384
    dot = lambda a, b: sum(x * y for x, y in zip(a, b, strict=True))  # noqa: E731
    assert dot(v[0], v[1]) > dot(v[0], v[2])
    with pytest.raises(openai.NotFoundError):  # an unknown model is a 404, not a 500
        client.embeddings.create(model="no-such-model", input="x")


def test_json_schema_response_parses(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    r = client.chat.completions.create(
        model=MODEL,
        temperature=0,
        max_tokens=64,
        messages=[{"role": "user", "content": "Where is the Eiffel Tower? Answer as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema}},
    )
    data = json.loads(r.choices[0].message.content or "")
    assert set(data) == {"city", "country"}


def test_keys_are_required(live: LiveServer) -> None:
    for key in ("wrong", ""):
        bad = openai.OpenAI(base_url=live.url + "/v1", api_key=key or "x", max_retries=0)
        if not key:
            r = httpx.get(live.url + "/v1/models")
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
            continue
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
    assert httpx.get(live.url + "/health").status_code == 200


@pytest.mark.parametrize(
    ("content", "status", "fragment"),
    [
        (b"{not json", 400, ""),
        (json.dumps({"model": MODEL, "messages": "hi"}).encode(), 400, "messages"),
        (json.dumps({"model": MODEL, "messages": FRANCE, "bogus": 1}).encode(), 400, "bogus"),
        (
            json.dumps({"model": MODEL, "messages": FRANCE, "max_tokens": -5}).encode(),
            400,
            "max_tokens",
        ),
        (json.dumps({"model": "no-such-model", "messages": FRANCE}).encode(), 404, "unknown model"),
        (
            b'{"model": "'
            + MODEL.encode()
            + b'", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
            400,
            "",
        ),
        (
            json.dumps(
                {
                    "model": MODEL,
                    "messages": FRANCE,
                    "response_format": {
                        "type": "json_schema",
                        "json_schema": {"name": "x", "schema": {"type": "bogus"}},
                    },
                }
            ).encode(),
            400,
            "schema",
        ),
        (
            json.dumps(
                {"model": MODEL, "messages": [{"role": "user", "content": "word " * 5000}]}
            ).encode(),
            400,
            "context",
        ),
        (b"x" * 300_000, 413, "body over"),
    ],
)
def test_bad_requests_get_openai_shaped_errors(
    live: LiveServer, content: bytes, status: int, fragment: str
) -> None:
    r = httpx.post(
        live.url + "/v1/chat/completions",
        content=content,
        timeout=60,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "code"}
    assert fragment in err["message"]


def test_queue_full_is_429_and_disconnect_frees_the_slot(real_store: Store) -> None:
    provider = ModelProvider(real_store, n_seq=1, n_ctx=2048, max_waiting=0)
    server = LiveServer(create_app(ServerSettings(), provider))
    try:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Tell a long story."}],
            "stream": True,
            "max_tokens": 400,
            "temperature": 0,
        }
        with (
            httpx.Client(timeout=60) as c,
            c.stream("POST", server.url + "/v1/chat/completions", json=body) as held,
        ):
            assert held.status_code == 200
            lines = held.iter_lines()  # keep a reference: a dropped iterator closes the stream
            next(lines)
            r = httpx.post(
                server.url + "/v1/chat/completions", json={**body, "stream": False}, timeout=60
            )
            assert r.status_code == 429 and r.headers.get("retry-after")
            assert r.json()["error"]["type"] == "rate_limit_error"
        engine = provider.loaded()[MODEL].engine
        deadline = time.monotonic() + 10
        while engine.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.running == 0  # the client went away: its sequence left the batch
        ok = httpx.post(
            server.url + "/v1/chat/completions",
            json={**body, "stream": False, "max_tokens": 5},
            timeout=60,
        )
        assert ok.status_code == 200
        metrics = httpx.get(server.url + "/metrics").text
        assert 'slmkit_requests_total{status="429"} 1.0' in metrics
        assert "slmkit_time_to_first_token_seconds_bucket" in metrics
    finally:
        server.close()
        provider.close()


def _post(live: LiveServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        live.url + path, json=body, timeout=120, headers={"Authorization": f"Bearer {KEY}"}
    )


def test_classify_endpoint(live: LiveServer, smollm: Any) -> None:
    from slmkit.tasks.classify import LikelihoodClassifier

    texts = ["I loved this film, wonderful!", "Awful, boring and far too long."]
    r = _post(
        live,
        "/v1/classify",
        {
            "model": MODEL,
            "input": texts,
            "labels": ["positive", "negative"],
            "instruction": "Classify the sentiment of the review.",
        },
    )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    # the same answer as the Python task layer on the same model
    local = LikelihoodClassifier(
        smollm, ["positive", "negative"], instruction="Classify the sentiment of the review."
    ).predict(texts)
    assert [d["label"] for d in data] == [p.label for p in local]
    for d, p in zip(data, local, strict=True):
        assert set(d["scores"]) == {"positive", "negative"}
        assert abs(sum(d["scores"].values()) - 1) < 1e-6
        assert abs(d["scores"]["positive"] - p.probs["positive"]) < 1e-3
    # the 135M model ranks the glowing review more positive than the scathing one
    assert data[0]["scores"]["positive"] > data[1]["scores"]["positive"]
    # bad input: one label, empty text, too many texts, unknown field
    for body, fragment in [
        ({"model": MODEL, "input": "x", "labels": ["only"]}, "labels"),
        ({"model": MODEL, "input": " ", "labels": ["a", "b"]}, "empty"),
        ({"model": MODEL, "input": ["x"] * 300, "labels": ["a", "b"]}, "256"),
        ({"model": MODEL, "input": "x", "labels": ["a", "b"], "k": 1}, "k"),
        ({"model": MODEL, "input": "x", "labels": ["a", "a"]}, "duplicate"),
    ]:
        bad = _post(live, "/v1/classify", body)
        assert bad.status_code == 400, bad.text
        assert fragment in bad.json()["error"]["message"]


def test_summarize_endpoint(live: LiveServer) -> None:
    doc = (
        "The city council met on Tuesday and voted 7 to 2 to build a new library in the "
        "old train station. Construction starts in March and costs 4 million euros. "
        "Mayor Anna Berg said the library will open in 2027."
    )
    r = _post(live, "/v1/summarize", {"model": MODEL, "input": doc, "max_words": 30})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["summary"].strip() and out["coverage"] == 1.0 and out["chunks"] == 1
    assert out["document_tokens"] > 30
    assert "library" in out["summary"].lower()
    bad = _post(live, "/v1/summarize", {"model": MODEL, "input": "", "max_words": 30})
    assert bad.status_code == 400


def test_metrics_show_batch_sizes(live: LiveServer, client: openai.OpenAI) -> None:
    client.completions.create(model=MODEL, prompt="One, two,", max_tokens=4, temperature=0)
    text = httpx.get(live.url + "/metrics").text
    count = [ln for ln in text.splitlines() if ln.startswith("slmkit_batch_size_count")]
    assert count and float(count[0].split()[-1]) >= 4  # one engine step per token at least
    assert "slmkit_queue_depth" in text and "slmkit_prompt_tokens_total" in text
    # every /v1/ response is counted by status, embeddings and model lists included
    before = _counter(text, "200")
    client.models.list()
    assert _counter(httpx.get(live.url + "/metrics").text, "200") == before + 1


def _counter(metrics_text: str, status: str) -> float:
    prefix = f'slmkit_requests_total{{status="{status}"}} '
    return next(
        float(ln[len(prefix) :]) for ln in metrics_text.splitlines() if ln.startswith(prefix)
    )


def test_memory_budget_evicts_least_recently_used(tmp_path: Any, smollm_path: Any) -> None:
    store = Store(tmp_path)
    for mid in ("copy-a", "copy-b", "copy-c"):
        store.import_file(smollm_path, model_id=mid)
    probe = ModelProvider(store, n_seq=2, n_ctx=1024)
    one = probe.estimate_bytes("copy-a")
    provider = ModelProvider(store, n_seq=2, n_ctx=1024, memory_budget_bytes=int(one * 2.5))
    server = LiveServer(create_app(ServerSettings(), provider))
    try:

        def ask(mid: str) -> httpx.Response:
            body = {"model": mid, "prompt": "Hello", "max_tokens": 2}
            return httpx.post(server.url + "/v1/completions", json=body, timeout=60)

        assert ask("copy-a").status_code == 200
        assert ask("copy-b").status_code == 200
        provider.loaded()["copy-a"].last_used -= 10  # both idle past the grace period
        provider.loaded()["copy-b"].last_used -= 5
        assert ask("copy-c").status_code == 200
        assert sorted(provider.loaded()) == ["copy-b", "copy-c"]  # a was least recently used
        assert list(provider.evicted) == ["copy-a"]
        # a model that alone exceeds the budget is refused with a 503, nothing unloaded
        small = ModelProvider(store, n_seq=2, n_ctx=1024, memory_budget_bytes=one // 2)
        app = LiveServer(create_app(ServerSettings(), small))
        try:
            r = httpx.post(
                app.url + "/v1/completions",
                json={"model": "copy-a", "prompt": "Hi", "max_tokens": 2},
                timeout=60,
            )
            assert r.status_code == 503 and r.headers.get("retry-after")
            assert "budget" in r.json()["error"]["message"] and small.loaded() == {}
        finally:
            app.close()
    finally:
        server.close()
        provider.close()


def test_chat_page_is_served(live: LiveServer) -> None:
    r = httpx.get(live.url + "/")
    assert r.status_code == 200 and '<script src="/static/chat.js"' in r.text
    js = httpx.get(live.url + "/static/chat.js")
    assert js.status_code == 200 and "/v1/chat/completions" in js.text


def test_idle_models_are_evicted(real_store: Store) -> None:
    provider = ModelProvider(real_store, n_seq=2, n_ctx=2048, keep_alive_s=0.5)
    server = LiveServer(create_app(ServerSettings(), provider), lifespan="on")
    try:
        r = httpx.post(
            server.url + "/v1/completions",
            timeout=60,
            json={"model": MODEL, "prompt": "Hello", "max_tokens": 2},
        )
        assert r.status_code == 200 and MODEL in provider.loaded()
        deadline = time.monotonic() + 10
        while provider.loaded() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert provider.loaded() == {}
        assert httpx.get(server.url + "/health").json()["loaded"] == []
    finally:
        server.close()


def test_prompts_are_logged_only_when_asked(
    real_store: Store, smollm_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    for log_prompts in (False, True):
        provider = ModelProvider(real_store, n_seq=1, n_ctx=1024)
        server = LiveServer(create_app(ServerSettings(log_prompts=log_prompts), provider))
        try:
            caplog.clear()
            with caplog.at_level(logging.DEBUG):
                r = httpx.post(
                    server.url + "/v1/completions",
                    json={"model": MODEL, "prompt": "secret-word-xyz says", "max_tokens": 2},
                    timeout=60,
                )
            assert r.status_code == 200
            assert ("secret-word-xyz" in caplog.text) is log_prompts
        finally:
            server.close()
            provider.close()
