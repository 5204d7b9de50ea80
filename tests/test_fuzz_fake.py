"""The HTTP API fuzzed from its own OpenAPI schema (schemathesis + Hypothesis), on the fake
backend: every operation, valid and invalid inputs, with and without keys. No 5xx, no
crash, every error in OpenAI's shape."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from slmkit.catalog.store import Store
from slmkit.serve import ModelProvider, ServerSettings, create_app

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

KEY = "fuzz-key"
EXAMPLES = 50  # per operation, mode and key setting (fewer where Hypothesis runs out)


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelProvider]:
    from slmkit.settings import Settings
    from tests.fakes import fake_entry, install_fake

    root = tmp_path_factory.mktemp("fuzz-store")
    store = Store(root, Settings(home=root))
    install_fake(store, fake_entry("fake-chat"))
    p = ModelProvider(store, n_seq=2, n_ctx=2048, max_waiting=8)
    yield p
    p.close()


def _openai_error(resp: Any) -> str | None:
    """None if the error body is OpenAI's shape: {"error": {"message": str, "type": str}}."""
    try:
        err = resp.json()["error"]
    except Exception as exc:
        return f"not JSON with an 'error' object ({type(exc).__name__}): {resp.text[:120]!r}"
    if not isinstance(err.get("message"), str) or not isinstance(err.get("type"), str):
        return f"error without message/type: {err!r}"
    return None


def _fuzz(app: Any, headers: dict[str, str], counts: Counter[str], bad: list[str]) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in schemathesis.GenerationMode:

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
            )
            @given(case=op.as_strategy(generation_mode=mode), real_model=st.booleans())
            def run(case: Any, real_model: bool) -> None:
                if real_model and isinstance(case.body, dict) and "model" in case.body:
                    case.body["model"] = "fake-chat"  # else nearly every request is a 404
                resp = case.call(headers={**(case.headers or {}), **headers})
                counts[str(resp.status_code)] += 1
                label = f"{case.operation.label} -> {resp.status_code}"
                if resp.status_code >= 500:
                    bad.append(f"{label}: {resp.text[:200]}")
                elif resp.status_code >= 400 and (why := _openai_error(resp)):
                    bad.append(f"{label}: {why}")

            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                assert mode.value == "negative"  # an operation with nothing to make invalid


@pytest.mark.parametrize("keys", [False, True], ids=["open", "with-keys"])
def test_fuzz_every_endpoint(provider: ModelProvider, keys: bool) -> None:
    settings = ServerSettings(api_keys=(KEY,) if keys else (), max_body_bytes=64 * 1024)
    app = create_app(settings, provider)
    counts: Counter[str] = Counter()
    bad: list[str] = []
    _fuzz(app, {"Authorization": f"Bearer {KEY}"} if keys else {}, counts, bad)
    if keys:  # and once more without the key: every protected operation must say 401
        _fuzz(app, {}, counts, bad)
    total = sum(counts.values())
    print(f"\nfuzz ({'keys' if keys else 'open'}): {total} requests, statuses {dict(counts)}")
    assert not bad, f"{len(bad)} bad answers of {total}:\n" + "\n".join(bad[:20])
    assert total >= 600
    assert not any(code.startswith("5") for code in counts)
