"""Person names found by a real chat model (constrained JSON), then redacted verbatim."""

from __future__ import annotations

import slmkit
from slmkit.catalog.store import Store


def test_person_names_by_a_model(real_store: Store) -> None:
    real_store.pull("qwen2.5-coder-0.5b-instruct")
    text = "Yesterday Maria Lopez emailed the contract to John Smith at jsmith@example.com."
    r = slmkit.redact(text, kinds=["person", "email"], model="qwen2.5-coder-0.5b-instruct")
    assert r.text == "Yesterday [PERSON] emailed the contract to [PERSON] at [EMAIL]."
    assert [s.kind for s in r.spans] == ["person", "person", "email"]
