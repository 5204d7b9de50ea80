"""The continuous-batching engine on the real default model."""

from __future__ import annotations

import threading
import time

import pytest

import slmkit
from slmkit.engine import Engine, EngineFullError
from slmkit.errors import ContextOverflowError, RuntimeFailure
from slmkit.options import make_options

pytestmark = pytest.mark.real_model


def test_generate_many_matches_prompts(smollm: slmkit.Model) -> None:
    prompts = [
        [{"role": "user", "content": f"What is the capital of {c}?"}]
        for c in ("France", "Japan", "Italy", "Germany")
    ]
    outs = slmkit.generate_many(
        smollm, prompts, slmkit.GenerationOptions(temperature=0, max_tokens=24)
    )
    assert [("Paris" in o.text, "Tokyo" in o.text) for o in outs[:2]] == [
        (True, False),
        (False, True),
    ]
    assert all(o.finish_reason in ("stop", "length") for o in outs)
    raw = slmkit.generate_many(
        smollm, ["1, 2, 3,", "a, b, c,"], slmkit.GenerationOptions(temperature=0, max_tokens=6)
    )
    assert "4" in raw[0].text and "d" in raw[1].text


def test_sequences_share_steps_and_leave_when_done(smollm: slmkit.Model) -> None:
    engine = Engine(smollm.backend, n_seq=4, n_ctx=4096, max_waiting=0)
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
    # The runner is the engine's only access to llama.cpp; its decode raises RuntimeFailure
    # when llama_decode returns non-zero (before the runner existed this test patched the
    # engine's llama_cpp module instead).
    engine = Engine(smollm.backend, n_seq=2, n_ctx=2048)
    runner = engine.runner
    real_decode = runner.decode
    try:
        toks = smollm.backend.tokenize("Hello there")
        opts = make_options(temperature=0, max_tokens=4)

        def failing(entries: object) -> None:
            raise RuntimeFailure("llama_decode failed (code -1)")

        runner.decode = failing  # type: ignore[method-assign]
        chunks = engine.generate(toks, opts)
        assert [c.finish_reason for c in chunks] == ["error"]  # reported once, as an error
        runner.decode = real_decode  # type: ignore[method-assign]
        assert engine.generate(toks, opts)[-1].finish_reason in ("stop", "length")
    finally:
        engine.close()


def test_prefix_reuse_gives_the_same_text_and_skips_prefill(smollm: slmkit.Model) -> None:
    system = "You are a terse assistant. Answer in one short sentence. " * 4

    def toks(q: str) -> list[int]:
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": q}]
        return smollm.backend.tokenize(smollm.format_chat(msgs))

    questions = ["What is the capital of France?", "What is the capital of Japan?"]
    # top_k 1 picks like greedy but is not a "repeatable" request, whose reuse is limited to
    # chunk-aligned cells (tests/test_determinism.py covers those)
    opts = make_options(temperature=0.5, top_k=1, max_tokens=16)
    texts: dict[int, list[str]] = {}
    for keep in (0, 1024):
        engine = Engine(smollm.backend, n_seq=2, n_ctx=1024, keep_prefix=keep)  # type: ignore[arg-type]
        try:
            texts[keep] = [
                "".join(c.text for c in engine.generate(toks(q), opts)) for q in questions
            ]
            reused = engine.reused_tokens
        finally:
            engine.close()
        if keep:
            shared = 0
            a, b = toks(questions[0]), toks(questions[1])
            while a[shared] == b[shared]:
                shared += 1
            assert reused == shared > 40  # the second request prefilled only its own part
        else:
            assert reused == 0
    assert texts[0] == texts[1024]
    assert "Paris" in texts[1024][0] and "Tokyo" in texts[1024][1]


def test_kept_prefixes_give_way_when_the_cache_is_needed(smollm: slmkit.Model) -> None:
    engine = Engine(smollm.backend, n_seq=4, n_ctx=512, keep_prefix=1024)  # type: ignore[arg-type]
    try:
        opts = make_options(temperature=0, max_tokens=8)
        for word in ("alpha", "bravo", "charlie"):  # three slots keep ~100 tokens each
            engine.generate(smollm.backend.tokenize(f"{word} " * 100), opts)
        assert sum(len(v) for v in engine.scheduler.kept.values()) >= 300
        big = smollm.backend.tokenize("delta " * 400)  # needs the cells the others keep
        out = engine.generate(big, opts, timeout=60)  # admitted, not stuck waiting
        assert out[-1].finish_reason in ("stop", "length")
        kept = sorted(len(v) for v in engine.scheduler.kept.values())
        assert kept[-1] == len(big) and sum(kept) <= 512  # older prefixes were dropped
    finally:
        engine.close()


def test_per_seq_streams_answer_and_long_requests_run_in_the_long_lane(
    smollm: slmkit.Model,
) -> None:
    """The server's default layout on the real model: each of 4 sequences has its own 256
    cells in llama.cpp (per-sequence streams), concurrent questions get their own answers,
    and requests longer than a stream run together in the long lane (2 streams of 2048 cells)
    instead of failing."""
    import llama_cpp as lc

    engine = Engine(smollm.backend, n_seq=4, n_ctx=1024, per_seq=True, long_ctx=2048)  # type: ignore[arg-type]
    try:
        assert lc.llama_n_ctx_seq(engine.runner.ctx) == 256  # type: ignore[attr-defined]

        def toks(q: str) -> list[int]:
            return smollm.backend.tokenize(smollm.format_chat([{"role": "user", "content": q}]))

        opts = make_options(temperature=0, max_tokens=16)
        numbers = "Here is a list of numbers: " + ", ".join(map(str, range(150))) + "."
        long_q = numbers + " What is the capital of Italy?"
        long_q2 = numbers + " What is the capital of Japan?"
        assert len(toks(long_q)) + 16 > 256
        asks = ["What is the capital of France?", "What is the capital of Japan?", long_q, long_q2]
        outs: list[list] = [[] for _ in asks]
        done = threading.Semaphore(0)

        def emit(i: int, c: object) -> None:
            outs[i].append(c)
            if c.finish_reason is not None:  # type: ignore[attr-defined]
                done.release()

        for i, q in enumerate(asks):
            engine.submit(toks(q), opts, lambda c, i=i: emit(i, c))
        for _ in asks:
            assert done.acquire(timeout=120)
        texts = ["".join(c.text for c in o) for o in outs]
        # the 135M model may answer the long one in Italian: Rome or Roma
        assert "Paris" in texts[0] and "Tokyo" in texts[1] and "Rom" in texts[2], texts
        assert "Tokyo" in texts[3], texts
        assert engine.long is not None and engine.long.runner is not None
        assert lc.llama_n_ctx_seq(engine.long.runner.ctx) == 2048  # type: ignore[attr-defined]
        assert engine.solo.runner is None and engine.steps > 16
    finally:
        engine.close()


def test_prompt_lookup_in_the_engine_gives_the_plain_greedy_text(smollm: slmkit.Model) -> None:
    """On the real model, drafting forced on (no cost model): a lone greedy request that
    copies its prompt keeps most drafts and its text is the plain engine text, token for
    token (drafts capped to the rows that round exactly, measured on this build)."""
    from slmkit.runtime.speculate import CostModel

    para = (
        "The lighthouse keeper climbed the stairs every evening at dusk, lit the great lamp, "
        "and watched the ships pass safely through the narrow channel below."
    )
    toks = smollm.backend.tokenize(
        smollm.format_chat([{"role": "user", "content": f"Repeat exactly: {para}"}])
    )
    texts, engines = [], []
    for lookup in (0, 8):
        engine = Engine(smollm.backend, n_seq=2, n_ctx=2048, per_seq=True)  # type: ignore[arg-type]
        engine.costs = CostModel(guard=False)
        try:
            opts = make_options(temperature=0, max_tokens=48, prompt_lookup=lookup)
            texts.append("".join(c.text for c in engine.generate(toks, opts, timeout=120)))
        finally:
            engine.close()
        engines.append(engine)
    assert texts[0] == texts[1] and "lighthouse keeper" in texts[0], texts
    assert engines[1].accepted > 10 and engines[1].costs.exact_rows >= 2
    assert engines[1].steps < engines[0].steps


@pytest.mark.parametrize("per_seq", [False, True])
def test_engine_scores_match_the_single_stream_beside_a_chat(
    smollm: slmkit.Model, per_seq: bool
) -> None:
    """Log-likelihoods scored in the engine, in steps shared with a generating chat, equal the
    model's own single-sequence scores (to rounding) and rank continuations the same."""
    from slmkit.engine import score_many

    engine = Engine(smollm.backend, n_seq=4, n_ctx=4096, per_seq=per_seq)
    chat = smollm.backend.tokenize(
        smollm.format_chat([{"role": "user", "content": "Tell a long story."}])
    )
    ctx = smollm.format_chat([{"role": "user", "content": "What is the capital of France?"}])
    pairs = [(ctx, x) for x in ("Paris", "The capital of France is Paris.", "Berlin", "Tokyo")]
    try:
        handle = engine.submit(chat, make_options(temperature=0, max_tokens=200), lambda c: None)
        lls = score_many(smollm, pairs, engine=engine)
        assert max(engine.batch_sizes) >= 2  # scored beside the chat
        handle.cancel()
    finally:
        engine.close()
    single = [smollm.loglikelihood(c, x) for c, x in pairs]
    assert [ll.n_tokens for ll in lls] == [s.n_tokens for s in single]
    for ll, s in zip(lls, single, strict=True):
        assert ll.token_logprobs == pytest.approx(s.token_logprobs, abs=0.05)
    assert lls[0].logprob > lls[2].logprob and lls[0].logprob > lls[3].logprob
