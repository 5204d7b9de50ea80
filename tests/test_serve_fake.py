"""The server's routes, streaming and error mapping on the fake backend, in-process."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from slmkit.catalog.store import Store
from slmkit.errors import (
    EngineClosedError,
    InputError,
    ModelNotFoundError,
    OverBudgetError,
    RequestTooLargeError,
    RuntimeFailure,
    SchemaError,
)
from slmkit.serve import ModelProvider, ServerSettings, create_app
from slmkit.serve.errors import classify_error
from tests.fakes import FakeRunner

KEY = "k-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def provider(fake_store: Store) -> Iterator[ModelProvider]:
    p = ModelProvider(fake_store, n_seq=2, n_ctx=2048, max_waiting=1)
    yield p
    p.close()


@pytest.fixture
def client(provider: ModelProvider) -> Iterator[TestClient]:
    app = create_app(ServerSettings(api_keys=(KEY,), max_body_bytes=4096), provider)
    with TestClient(app, headers=AUTH) as c:
        yield c


def chat(client: TestClient, **kw: Any) -> Any:
    return client.post("/v1/chat/completions", json={"model": "fake-chat", "messages": HI, **kw})


def test_models_health_page_and_metrics(client: TestClient, provider: ModelProvider) -> None:
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids == ["fake-base", "fake-chat"]
    assert client.get("/health").json() == {"status": "ok", "loaded": []}
    assert "<html" in client.get("/").text.lower()
    chat(client, temperature=0)
    metrics = client.get("/metrics").text
    assert 'slmkit_requests_total{status="200"}' in metrics
    steps = provider.get("fake-chat").engine.steps
    assert steps == 21  # 20 tokens (é is two) and the end-of-generation token
    assert f"slmkit_batch_size_count {steps}.0" in metrics  # one observation per step


def test_chat_completion(client: TestClient) -> None:
    r = chat(client, temperature=0, max_tokens=64)
    body = r.json()
    assert r.status_code == 200 and body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "You said: hi (café)"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 20  # byte tokens: é is two


def test_chat_streaming_with_usage(client: TestClient) -> None:
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": "fake-chat",
            "messages": HI,
            "stream": True,
            "temperature": 0,
            "stream_options": {"include_usage": True},
        },
    ) as r:
        lines = [ln for ln in r.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(ln[6:]) for ln in lines[:-1]]
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    assert text == "You said: hi (café)"
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert events[-1]["usage"]["completion_tokens"] == 20


def test_completions_with_n_and_logprobs(client: TestClient) -> None:
    r = client.post(
        "/v1/completions",
        json={"model": "fake-base", "prompt": "a b c", "n": 2, "temperature": 0, "logprobs": 1},
    )
    choices = r.json()["choices"]
    assert [c["text"] for c in choices] == [" c b a", " c b a"]
    assert choices[0]["logprobs"]["tokens"][:2] == [" ", "c"]


def test_embeddings_in_both_encodings(client: TestClient) -> None:
    r = client.post("/v1/embeddings", json={"model": "fake-chat", "input": ["a cat", "a cat"]})
    data = r.json()["data"]
    assert data[0]["embedding"] == data[1]["embedding"] and len(data[0]["embedding"]) == 64
    r = client.post(
        "/v1/embeddings",
        json={"model": "fake-chat", "input": "x", "encoding_format": "base64"},
    )
    assert isinstance(r.json()["data"][0]["embedding"], str)


def test_classify_and_summarize_endpoints(client: TestClient) -> None:
    r = client.post(
        "/v1/classify",
        json={
            "model": "fake-chat",
            "input": ["this is spam", "a ham sandwich"],
            "labels": ["ham", "spam"],
        },
    )
    assert [d["label"] for d in r.json()["data"]] == ["spam", "ham"]
    r = client.post("/v1/summarize", json={"model": "fake-chat", "input": "word " * 50})
    assert r.status_code == 200 and r.json()["coverage"] == 1.0


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/v1/chat/completions", {"model": "nope", "messages": HI}, 404, "unknown model"),
        ("/v1/chat/completions", {"model": "fake-chat", "messages": []}, 400, "messages"),
        ("/v1/chat/completions", {"model": "fake-chat", "messages": HI, "bogus": 1}, 400, "bogus"),
        (
            "/v1/chat/completions",
            {"model": "fake-chat", "messages": HI, "max_tokens": 4000},
            400,
            "context",
        ),
        (
            "/v1/chat/completions",
            {"model": "smollm2-135m-instruct", "messages": HI},
            404,
            "not installed",
        ),
        ("/v1/chat/completions", {"model": "fake-base", "messages": HI}, 400, "chat template"),
        ("/v1/embeddings", {"model": "fake-chat", "input": [" "]}, 400, "non-empty"),
        (
            "/v1/classify",
            {"model": "fake-chat", "input": "x", "labels": ["a", "a"]},
            400,
            "duplicate",
        ),
        (
            "/v1/chat/completions",
            {
                "model": "fake-chat",
                "messages": HI,
                "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": 3}}},
            },
            400,
            "schema",
        ),
    ],
)
def test_client_errors_are_4xx_in_openai_shape(
    client: TestClient, path: str, body: dict[str, Any], status: int, fragment: str
) -> None:
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and fragment in err["message"].lower()


def test_keys_and_body_limit_are_checked_first(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", json={}, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert client.get("/health", headers={"Authorization": ""}).status_code == 200
    big = {"model": "fake-chat", "messages": [{"role": "user", "content": "x" * 5000}]}
    assert chat(client, **big).status_code == 413


def test_queue_full_is_429_with_retry_after(client: TestClient, provider: ModelProvider) -> None:
    item = provider.get("fake-chat")
    runner = item.engine.runner
    assert isinstance(runner, FakeRunner)
    runner.delay_s = 0.05
    toks = item.model.backend.tokenize("x")
    from slmkit.options import make_options

    handles = [
        item.engine.submit(toks, make_options(max_tokens=200), lambda c: None) for _ in range(3)
    ]  # 2 running + 1 waiting
    try:
        r = chat(client)
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "queue_full"
    finally:
        for h in handles:
            h.cancel()


def test_a_runtime_failure_is_a_500_not_a_client_error(
    client: TestClient, provider: ModelProvider
) -> None:
    runner = provider.get("fake-chat").engine.runner
    assert isinstance(runner, FakeRunner)
    runner.fail_next = 1
    r = chat(client, temperature=0)
    assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
    assert chat(client, temperature=0).status_code == 200  # the engine lives on


@pytest.mark.parametrize(
    ("error", "status", "retry"),
    [
        (InputError("bad"), 400, None),
        (ModelNotFoundError("gone"), 404, None),
        (RequestTooLargeError("big"), 413, None),
        (SchemaError("bad schema"), 400, None),
        (RuntimeFailure("llama_decode failed"), 500, None),
        (EngineClosedError("closed; retry"), 503, "1"),
        (OverBudgetError("too big", retry_after=5), 503, "5"),
        (ValueError("a bug"), 500, None),
    ],
)
def test_errors_map_to_status_by_class(error: Exception, status: int, retry: str | None) -> None:
    got, body, headers = classify_error(error)
    assert got == status and headers.get("Retry-After") == retry
    assert body["error"]["type"] == ("invalid_request_error" if status < 500 else "server_error")
    if isinstance(error, ValueError) and not isinstance(error, InputError):
        assert body["error"]["message"] == "internal error"  # internals are not leaked


def test_apps_share_no_state(provider: ModelProvider, fake_store: Store) -> None:
    a = create_app(ServerSettings(), provider)
    other = ModelProvider(fake_store)
    b = create_app(ServerSettings(api_keys=("x",)), other)
    assert a.state.server is not b.state.server
    assert a.state.server.hub is not b.state.server.hub
    with TestClient(b) as c:
        assert c.get("/v1/models").status_code == 401
    with TestClient(a) as c:
        assert c.get("/v1/models").status_code == 200


def test_a_client_leaving_mid_stream_frees_its_slot(
    client: TestClient, provider: ModelProvider
) -> None:
    import time

    item = provider.get("fake-chat")
    item.engine.runner.delay_s = 0.02  # type: ignore[attr-defined]  # slow enough to leave
    body = {"model": "fake-chat", "messages": HI, "stream": True, "max_tokens": 200}
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        next(r.iter_lines())  # the first event, then the client goes away
    deadline = time.monotonic() + 5
    while item.engine.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert item.engine.running == 0


# --- what lm-evaluation-harness sends: token-id prompts, batches, echo with logprobs -------
def test_token_id_prompts_and_batches_of_prompts(client: TestClient) -> None:
    ids = [list(b"one two"), list(b"three four")]  # the fake's tokens are bytes
    for prompt in (ids, ["one two", "three four"]):
        r = client.post(
            "/v1/completions",
            json={
                "model": "fake-chat",
                "prompt": prompt,
                "max_tokens": 16,
                "n": 2,
                "temperature": 0,
            },
        )
        assert r.status_code == 200, r.text
        choices = r.json()["choices"]
        assert [c["index"] for c in choices] == [0, 1, 2, 3]
        # the fake reverses a raw prompt's words
        assert choices[0]["text"] == choices[1]["text"] == " two one"
        assert choices[2]["text"] == " four three"
        assert r.json()["usage"]["prompt_tokens"] == len("one two") + len("three four")
    r = client.post(
        "/v1/completions", json={"model": "fake-chat", "prompt": ids[0], "temperature": 0}
    )
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == " two one"


def test_echo_with_logprobs_scores_the_prompt_tokens(client: TestClient) -> None:
    prompt = "alpha beta"
    r = client.post(
        "/v1/completions",
        json={
            "model": "fake-chat",
            "prompt": prompt,
            "max_tokens": 3,
            "temperature": 0,
            "logprobs": 1,
            "echo": True,
        },
    )
    assert r.status_code == 200, r.text
    (choice,) = r.json()["choices"]
    assert choice["text"].startswith(prompt) and len(choice["text"]) > len(prompt)
    lp = choice["logprobs"]
    n = len(prompt)  # one token per byte; the first has no log-probability
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert "".join(lp["tokens"][:n]) == prompt
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["text_offset"]) == n + 3
    assert lp["text_offset"][:3] == [0, 1, 2]
    for tok_lp, top in zip(lp["token_logprobs"][1:], lp["top_logprobs"][1:], strict=True):
        assert tok_lp <= max(top.values()) + 1e-9 and len(top) == 1
    # lm-eval's reading: sum of the continuation's token logprobs, greedy if each is the top
    ctxlen = len("alpha ")
    cont = lp["token_logprobs"][ctxlen:-3]
    assert len(cont) == len("beta") and all(x < 0 for x in cont)


@pytest.mark.parametrize(
    ("body", "status", "match"),
    [
        ({"prompt": [[1, 2], [3, 99999]]}, 400, "vocabulary size"),
        ({"prompt": [[1, -2]]}, 400, "non-negative"),
        ({"prompt": []}, 400, "1 to 64 prompts"),
        ({"prompt": ["a", ""]}, 400, "empty"),
        ({"prompt": "a", "echo": True, "stream": True}, 400, "stream is not supported"),
    ],
)
def test_bad_prompts(client: TestClient, body: dict[str, Any], status: int, match: str) -> None:
    r = client.post("/v1/completions", json={"model": "fake-chat", "max_tokens": 2, **body})
    assert r.status_code == status and match in r.text, r.text


def test_tokenizer_endpoints(client: TestClient, provider: ModelProvider) -> None:
    r = client.post("/tokenize", json={"prompt": "héllo", "model": "fake-chat"})
    assert r.status_code == 200 and r.json()["tokens"] == list("héllo".encode())
    r = client.post("/detokenize", json={"tokens": list(b"abc"), "model": "fake-chat"})
    assert r.json() == {"prompt": "abc"}
    r = client.get("/tokenizer_info", params={"model": "fake-chat"})
    assert r.status_code == 200 and r.json()["model"] == "fake-chat"
    r = client.post("/tokenize", json={"prompt": "x"})  # two fake models are served
    assert r.status_code == 400 and "slm serve --model" in r.text
    assert (
        client.post("/tokenize", json={"prompt": "x"}, headers={"Authorization": ""}).status_code
        == 401
    )
    provider.allowed = ("fake-chat",)
    r = client.post("/tokenize", json={"prompt": "x"})
    assert r.status_code == 200 and r.json()["tokens"] == [ord("x")]


def test_per_key_limits(provider: ModelProvider) -> None:
    settings = ServerSettings(
        api_keys=(KEY, "other"), key_requests_per_minute=2, max_tokens_limit=16
    )
    with TestClient(create_app(settings, provider), headers=AUTH) as c:
        assert c.get("/v1/models").status_code == 200
        r = c.post(
            "/v1/chat/completions", json={"model": "fake-chat", "messages": HI, "max_tokens": 17}
        )
        assert (
            r.status_code == 400 and "over this server's limit 16" in r.json()["error"]["message"]
        )
        r = c.get("/v1/models")  # the third request within the minute
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 61
        assert r.json()["error"]["type"] == "rate_limit_error"
        other = c.get("/v1/models", headers={"Authorization": "Bearer other"})
        assert other.status_code == 200  # limits are per key


def test_key_limits_count_requests_in_flight() -> None:
    from slmkit.serve.guard import KeyLimits

    limits = KeyLimits(concurrent=2)
    assert limits.refuse("k") is None and limits.refuse("k") is None
    assert limits.refuse("k") == ("2 requests already in flight for this key", 1)
    assert limits.refuse("j") is None  # another key
    limits.done("k")
    assert limits.refuse("k") is None


def test_a_client_that_stops_reading_is_cancelled_after_the_send_timeout(
    fake_store: Store,
) -> None:
    """The engine never waits for a client; a stream whose reader is stuck for longer than
    --send-timeout while tokens keep coming is cancelled, freeing its slot, and counted."""
    import time

    import httpx

    from tests.fakes import stalled_stream
    from tests.test_serve import LiveServer

    provider = ModelProvider(fake_store, n_seq=2, n_ctx=8192)
    server = LiveServer(create_app(ServerSettings(send_timeout=0.5), provider), sndbuf=8192)
    sock = None
    try:
        engine = provider.get("fake-chat").engine
        engine.runner.delay_s = 0.005  # type: ignore[attr-defined]  # 815 tokens: > 4 s
        long = [{"role": "user", "content": "x " * 400}]  # the fake echoes it
        body = {"model": "fake-chat", "messages": long, "max_tokens": 1000, "temperature": 0}
        t0 = time.monotonic()
        sock = stalled_stream(server.port, {**body, "logprobs": True, "top_logprobs": 5})
        other = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": "fake-chat", "messages": HI, "temperature": 0},
            timeout=30,
        )
        assert other.json()["choices"][0]["message"]["content"] == "You said: hi (café)"
        while engine.running:
            assert time.monotonic() - t0 < 10, "the stalled stream is still decoding"
            time.sleep(0.05)
        metrics = httpx.get(f"{server.url}/metrics").text
        assert "slmkit_stalled_streams_total 1.0" in metrics
        made = re.search(r"^slmkit_completion_tokens_total (\S+)$", metrics, re.M)
        assert made and float(made[1]) < 815 + 21  # cut before the stalled reply's end
    finally:
        if sock is not None:
            sock.close()
        server.close()
        provider.close()


def test_summarize_runs_on_the_engine_not_behind_the_task_lock(provider: ModelProvider) -> None:
    """A summary goes through the model's engine with the chat traffic: holding the per-model
    task lock (as a redaction does) does not block it."""
    from slmkit.serve import handlers
    from slmkit.serve.schemas import SummarizeRequest

    item = provider.get("fake-chat")
    steps = item.engine.steps
    body = SummarizeRequest(model="fake-chat", input="word " * 50)
    with item.task_lock:
        res = handlers.summarize(provider, ServerSettings(), body)
    assert res.coverage == 1.0 and item.engine.steps > steps


def test_kv_layout_setting_and_requests_longer_than_a_sequence(fake_store: Store) -> None:
    """--kv-layout per-seq (default): each sequence its n_ctx / parallel cells, and a chat
    longer than that is still answered (one at a time, in the long-request lane); over the
    model's context it is a 400. --kv-layout shared: one pool."""
    shared = ModelProvider.from_settings(ServerSettings(kv_layout="shared"), fake_store)
    try:
        assert not shared.get("fake-chat").engine.runner.per_seq
    finally:
        shared.close()
    settings = ServerSettings(parallel=2, n_ctx=2048)
    provider = ModelProvider.from_settings(settings, fake_store)
    try:
        engine = provider.get("fake-chat").engine
        assert engine.runner.per_seq and engine.batched_request == 1024
        with TestClient(create_app(settings, provider)) as c:
            long_msg = [{"role": "user", "content": "word " * 220}]  # ~1100 tokens
            r = c.post(
                "/v1/chat/completions",
                json={
                    "model": "fake-chat",
                    "messages": long_msg,
                    "max_tokens": 8,
                    "temperature": 0,
                },
            )
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"] == "You said"
            assert r.json()["usage"]["prompt_tokens"] > 1024 and engine.long.runner is not None
            too_long = [{"role": "user", "content": "word " * 420}]
            r = c.post("/v1/chat/completions", json={"model": "fake-chat", "messages": too_long})
            assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    finally:
        provider.close()


def test_prompt_lookup_request_field_and_metrics(
    client: TestClient, provider: ModelProvider
) -> None:
    """`prompt_lookup` (slmkit's own field) drafts in the engine: the same text, and the
    drafted/kept token counters in /metrics."""
    provider.get("fake-chat").engine.runner.delay_s = 0.001  # type: ignore[attr-defined]
    msgs = [{"role": "user", "content": "the quick brown fox jumps over the lazy dog"}]

    def ask(**kw: Any) -> str:
        body = {"model": "fake-chat", "messages": msgs, "temperature": 0, **kw}
        r = client.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        return str(r.json()["choices"][0]["message"]["content"])

    plain = ask()
    assert "slmkit_draft_tokens_total 0.0" in client.get("/metrics").text
    assert ask(prompt_lookup=8) == plain == f"You said: {msgs[0]['content']} (café)"
    metrics = client.get("/metrics").text
    drafted, kept = (
        float(re.findall(rf"^{name}_total (\S+)", metrics, re.M)[0])
        for name in ("slmkit_draft_tokens", "slmkit_draft_accepted_tokens")
    )
    assert drafted >= kept > 10
    bad = chat(client, prompt_lookup=33)
    assert bad.status_code == 400 and "prompt_lookup" in bad.text


def test_draft_setting_gives_each_engine_a_draft_model(fake_store: Store) -> None:
    """--draft ID: the engine drafts with that model for a lone request (the text stays the
    target's; draft_max 0 turns it off); --draft auto serves a model without a compatible
    installed draft plainly; an unknown or uninstalled id is refused before serving."""
    from slmkit.errors import ModelNotInstalledError

    with pytest.raises(ModelNotFoundError):
        ModelProvider.from_settings(ServerSettings(draft="no-such-draft"), fake_store)
    with pytest.raises(ModelNotInstalledError, match="slm pull smollm2-135m-instruct"):
        ModelProvider.from_settings(ServerSettings(draft="smollm2-135m-instruct"), fake_store)
    auto = ModelProvider.from_settings(ServerSettings(draft="auto"), fake_store)
    try:
        assert auto.get("fake-chat").engine.draft is None
    finally:
        auto.close()
    settings = ServerSettings(draft="fake-base")
    provider = ModelProvider.from_settings(settings, fake_store)
    try:
        engine = provider.get("fake-chat").engine
        assert engine.draft is not None
        with TestClient(create_app(settings, provider)) as c:
            texts = []
            for draft_max in (0, 4):
                body = {"model": "fake-chat", "messages": HI, "temperature": 0}
                r = c.post("/v1/chat/completions", json={**body, "draft_max": draft_max})
                assert r.status_code == 200, r.text
                texts.append(r.json()["choices"][0]["message"]["content"])
                assert (engine.drafted > 0) == bool(draft_max)
            assert texts == ["You said: hi (café)"] * 2
    finally:
        provider.close()


def test_classify_scores_in_the_engine_beside_a_long_chat(provider: ModelProvider) -> None:
    """Zero-shot labels are scored by the model's engine in the chat traffic's steps: a
    classification is answered while a long chat is still decoding, and never waits on the
    per-model task lock."""
    import time

    from slmkit.options import make_options
    from slmkit.serve import handlers
    from slmkit.serve.schemas import ClassifyRequest

    item = provider.get("fake-chat")
    engine = item.engine
    engine.runner.delay_s = 0.005  # type: ignore[attr-defined]  # the chat takes > 2 s
    model = item.model
    chat_tokens = model.backend.tokenize(
        model.format_chat([{"role": "user", "content": "x " * 200}])
    )
    chunks: list[Any] = []
    engine.submit(chat_tokens, make_options(max_tokens=400, temperature=0), chunks.append)
    texts = ["this is spam", "a ham sandwich", "no label here"]
    body = ClassifyRequest(model="fake-chat", input=texts, labels=["ham", "spam"])
    t0 = time.monotonic()
    with item.task_lock:
        preds = handlers.classify(provider, ServerSettings(), body, texts)
    assert time.monotonic() - t0 < 1.5
    assert [p.label for p in preds[:2]] == ["spam", "ham"]
    assert preds[2].probs["ham"] == pytest.approx(0.5, abs=0.01)  # no evidence either way
    assert not any(c.finish_reason for c in chunks), "the chat should still be decoding"
    assert engine.batch_sizes[2] > 0  # scoring shared steps with the chat
    engine.runner.delay_s = 0.0  # type: ignore[attr-defined]
