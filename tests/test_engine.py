"""The continuous-batching engine on the real default model."""

from __future__ import annotations

import threading
import time

import pytest

import slmkit
from slmkit.engine import Engine, EngineFullError
from slmkit.errors import ContextOverflowError
from slmkit.options import make_options

pytestmark = pytest.mark.real_model


def test_generate_many_matches_prompts(smollm: slmkit.Model) -> None:
    prompts = [
        [{"role": "user", "content": f"What is the capital of {c}?"}]
        for c in ("France", "Japan", "Italy", "Germany")
    ]
    outs = slmkit.generate_many(smollm, prompts, temperature=0, max_tokens=24)
    assert [("Paris" in o.text, "Tokyo" in o.text) for o in outs[:2]] == [
        (True, False),
        (False, True),
    ]
    assert all(o.finish_reason in ("stop", "length") for o in outs)
    raw = slmkit.generate_many(smollm, ["1, 2, 3,", "a, b, c,"], temperature=0, max_tokens=6)
    assert "4" in raw[0].text and "d" in raw[1].text


def test_sequences_share_steps_and_leave_when_done(smollm: slmkit.Model) -> None:
    engine = Engine(smollm.backend, n_seq=4, n_ctx=4096, max_waiting=0)  # type: ignore[arg-type]
    try:
        toks = smollm.backend.tokenize(
            smollm.format_chat([{"role": "user", "content": "Tell a story."}])
        )
        results: list[list] = [[], [], []]
        budgets = (5, 40, 40)
        threads = [
            threading.Thread(
                target=lambda i=i: results[i].extend(
                    engine.generate(toks, make_options(temperature=0, max_tokens=budgets[i]))
                )
            )
            for i in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert [r[-1].stats.completion_tokens for r in results] == [5, 40, 40]
        assert max(engine.batch_sizes) >= 2  # sequences were decoded together
        assert engine.running == 0 and engine.queue_depth == 0
        # Full: 4 slots, no waiting room -> the fifth concurrent request is refused.
        long = make_options(temperature=0, max_tokens=300)
        handles = [engine.submit(toks, long, lambda c: None) for _ in range(4)]
        with pytest.raises(EngineFullError):
            engine.submit(toks, long, lambda c: None)
        for h in handles:
            h.cancel()
        deadline = time.monotonic() + 10
        while engine.running and time.monotonic() < deadline:
            time.sleep(0.02)
        assert engine.running == 0
        with pytest.raises(ContextOverflowError):
            engine.submit(list(range(10, 4100)), long, lambda c: None)
    finally:
        engine.close()


def test_a_failed_decode_fails_its_requests_not_the_engine(smollm: slmkit.Model) -> None:
    import llama_cpp

    class FailingDecode:
        def __getattr__(self, name: str) -> object:
            return getattr(llama_cpp, name)

        @staticmethod
        def llama_decode(ctx: object, batch: object) -> int:
            return -1

    engine = Engine(smollm.backend, n_seq=2, n_ctx=2048)  # type: ignore[arg-type]
    try:
        toks = smollm.backend.tokenize("Hello there")
        opts = make_options(temperature=0, max_tokens=4)
        engine.lc = FailingDecode()  # type: ignore[assignment]
        chunks = engine.generate(toks, opts)
        assert [c.finish_reason for c in chunks] == ["error"]  # reported once, as an error
        engine.lc = llama_cpp  # type: ignore[assignment]
        assert engine.generate(toks, opts)[-1].finish_reason in ("stop", "length")
    finally:
        engine.close()
