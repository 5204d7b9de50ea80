"""Redaction: precision and recall per kind on the labelled set (tests/redact_set.py),
the checksums, the API, the CLI, and a served request log with no personal data in it."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

import slmkit
from slmkit.catalog.store import Store
from slmkit.serve import ModelProvider, ServerSettings, create_app
from slmkit.tasks.redact import find, iban_ok, luhn_ok
from tests.redact_set import build, score

PII = "maria.lopez@example.com", "(415) 555-0132", "4111 1111 1111 1111"


def test_checksums_on_published_examples() -> None:
    assert luhn_ok("4111111111111111") and luhn_ok("378282246310005")
    assert not luhn_ok("4111111111111112")
    assert iban_ok("DE89 3704 0044 0532 0130 00") and iban_ok("GB82WEST12345698765432")
    assert not iban_ok("DE89 3704 0044 0532 0130 01") and not iban_ok("DE89370400440532013")


def test_precision_and_recall_per_kind_on_the_labelled_set() -> None:
    items = build(500)
    res = score(items, lambda t: [(s.kind, s.start, s.end) for s in find(t)])
    print("\n" + json.dumps(res, indent=1))
    assert set(res) == {"email", "phone", "card", "iban", "ip"}
    for kind, r in res.items():
        assert r["n"] >= 90, kind
        assert r["recall"] >= 0.95, (kind, r)  # card and iban: checksum-backed
        assert r["precision"] >= 0.95, (kind, r)


def test_decoys_stay() -> None:
    for text in (
        "Order 4111 1111 1111 1112 shipped.",  # fails Luhn
        "Version 1.2.3.4567 is out; 999.1.1.1 is no address.",
        "IBAN DE89 3704 0044 0532 0130 01 is wrong.",
        "Call 911 or see room 214.",
    ):
        assert slmkit.redact(text).text == text, text


@pytest.fixture
def provider(fake_store: Store) -> Iterator[ModelProvider]:
    p = ModelProvider(fake_store, n_seq=2, n_ctx=2048)
    yield p
    p.close()


def test_redact_endpoint(provider: ModelProvider) -> None:
    with TestClient(create_app(ServerSettings(), provider)) as c:
        r = c.post("/v1/redact", json={"input": [f"mail {PII[0]}", "nothing here"]})
        assert r.status_code == 200, r.text
        a, b = r.json()["data"]
        assert a["text"] == "mail [EMAIL]" and a["entities"] == [
            {"kind": "email", "start": 5, "end": 5 + len(PII[0])}
        ]
        assert b["text"] == "nothing here" and b["entities"] == []
        r = c.post("/v1/redact", json={"input": "Maria", "kinds": ["person"]})
        assert r.status_code == 400 and "needs a model" in r.json()["error"]["message"]


def test_served_request_log_holds_no_raw_personal_data(
    provider: ModelProvider, tmp_path: Path
) -> None:
    log_file = tmp_path / "requests.log"
    handler = logging.FileHandler(log_file)
    logger = logging.getLogger("slmkit.serve")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        app = create_app(ServerSettings(log_prompts=True), provider)
        with TestClient(app) as c:
            msg = f"I am {PII[0]}, phone {PII[1]}, card {PII[2]}."
            r = c.post(
                "/v1/chat/completions",
                json={
                    "model": "fake-chat",
                    "messages": [{"role": "user", "content": msg}],
                    "max_tokens": 8,
                },
            )
            assert r.status_code == 200, r.text
            c.post("/v1/classify", json={"model": "fake-chat", "input": msg, "labels": ["a", "b"]})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
        handler.close()
    written = log_file.read_text()
    assert "[EMAIL]" in written and "[PHONE]" in written and "[CARD]" in written
    for raw in (*PII, "4111111111111111", "555-0132"):
        assert raw not in written, raw


def test_cli(fake_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from slmkit.cli import cli

    monkeypatch.setenv("SLMKIT_HOME", str(fake_store.root))
    r = CliRunner().invoke(cli, ["redact", f"write to {PII[0]}", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["text"] == "write to [EMAIL]"
    r = CliRunner().invoke(cli, ["redact", "Maria", "--kinds", "person"])
    assert r.exit_code == 1 and "needs --model" in r.output
    r = CliRunner().invoke(cli, ["redact", "x", "--kinds", "ssn"])
    assert r.exit_code == 1 and "unknown kinds ['ssn']" in r.output
