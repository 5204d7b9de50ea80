"""Speculative decoding on real models: Qwen2.5-Coder-0.5B drafting for the 1.5B gives the
plain greedy text, and a model with another vocabulary is refused."""

from __future__ import annotations

import pytest

import slmkit
from slmkit.catalog.store import Store
from slmkit.errors import InputError
from slmkit.runtime.speculate import CostModel

pytestmark = pytest.mark.real_model

TARGET, DRAFT = "qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-0.5b-instruct"
PROMPT = "Write a Python function that returns the sum of the squares of a list of numbers."


def test_draft_model_keeps_the_greedy_text(real_store: Store) -> None:
    real_store.pull(TARGET)
    real_store.pull(DRAFT)
    with slmkit.load(TARGET, store=real_store, n_ctx=1024, draft="auto") as m:
        assert m.draft is not None and m.draft.id == DRAFT
        plain = m.chat(PROMPT, temperature=0, max_tokens=48, draft_max=0)
        # drafting forced on (on this hardware the cost model rightly declines it)
        m.backend.costs = CostModel(guard=False)  # type: ignore[attr-defined]
        fast = m.chat(PROMPT, temperature=0, max_tokens=48, draft_max=8)
        assert fast.text == plain.text
        assert fast.stats.accepted_tokens > 10
        # greedy drafts stay within the batch size that rounds as single decodes do
        assert m.backend.costs.exact_rows >= 2  # type: ignore[attr-defined]
        m.backend.costs = CostModel()  # type: ignore[attr-defined]
        guarded = [m.chat(PROMPT, temperature=0, max_tokens=48) for _ in range(2)]
        assert all(g.text == plain.text for g in guarded)


def test_a_draft_with_another_vocabulary_is_refused(real_store: Store) -> None:
    real_store.pull(TARGET)
    with pytest.raises(InputError, match="vocabularies differ|token"):
        slmkit.load(TARGET, store=real_store, n_ctx=512, draft=slmkit.DEFAULT_MODEL)


def test_the_engine_drafts_with_the_draft_model_and_keeps_the_text(real_store: Store) -> None:
    """The server's path (`slm serve --draft auto`): a lone greedy request in an engine with
    the 0.5B draft, drafting forced on, gives the plain engine text."""
    from slmkit.engine import Engine
    from slmkit.options import make_options

    real_store.pull(TARGET)
    real_store.pull(DRAFT)
    with slmkit.load(TARGET, store=real_store, n_ctx=1024, draft="auto") as m:
        assert m.draft is not None
        toks = m.backend.tokenize(m.format_chat([{"role": "user", "content": PROMPT}]))
        engine = Engine(m.backend, n_seq=2, n_ctx=2048, per_seq=True, draft=m.draft.backend)
        engine.costs = CostModel(guard=False)
        try:
            texts = [
                "".join(
                    c.text
                    for c in engine.generate(
                        toks, make_options(temperature=0, max_tokens=48, draft_max=k), 300
                    )
                )
                for k in (0, 8)
            ]
        finally:
            engine.close()
        assert texts[0] == texts[1] and "def" in texts[0], texts
        assert engine.accepted > 10 and engine.costs.exact_rows >= 2
