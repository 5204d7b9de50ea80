"""The engine (scheduler + runner + output handling) on the fake backend."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

import slmkit
from slmkit.engine import Engine, generate_many
from slmkit.errors import ContextOverflowError, EngineClosedError, EngineFullError
from slmkit.options import make_options
from slmkit.runtime.base import Chunk
from tests.fakes import FakeRunner


def text(chunks: list[Chunk]) -> str:
    return "".join(c.text for c in chunks)


def prompt(model: slmkit.Model, q: str) -> list[int]:
    return model.backend.tokenize(model.format_chat([{"role": "user", "content": q}]))


def finished(outs: list[list[Chunk]]) -> bool:
    return all(o and o[-1].finish_reason for o in outs)


def wait_until(cond: Callable[[], object], timeout: float = 10.0) -> None:
    """Poll `cond` until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_engine_text_equals_the_single_stream_text(fake_model: slmkit.Model) -> None:
    opts = make_options(temperature=0, max_tokens=64)
    engine = Engine(fake_model.backend, n_seq=2, n_ctx=2048)
    try:
        out = engine.generate(prompt(fake_model, "hello"), opts, timeout=10)
    finally:
        engine.close()
    single = fake_model.chat("hello", temperature=0, max_tokens=64)
    assert text(out) == single.text == "You said: hello (café)"
    assert out[-1].finish_reason == "stop" and out[-1].stats.completion_tokens == 23


def test_concurrent_requests_share_steps_and_get_their_own_text(fake_model: slmkit.Model) -> None:
    engine = Engine(fake_model.backend, n_seq=4, n_ctx=4096)
    engine.runner.delay_s = 0.002  # type: ignore[attr-defined]  # a decode takes time
    opts = make_options(temperature=0, max_tokens=64)
    results: list[list[Chunk]] = [[] for _ in range(4)]
    try:
        for i in range(4):
            engine.submit(prompt(fake_model, f"question {i}"), opts, results[i].append)
        wait_until(lambda: finished(results))
        assert max(engine.batch_sizes) >= 2  # sequences were decoded together
    finally:
        engine.close()
    assert [text(r) for r in results] == [f"You said: question {i} (café)" for i in range(4)]


def test_prefix_reuse_keeps_text_identical(fake_model: slmkit.Model) -> None:
    system = "Be brief. " * 10
    msgs = [[{"role": "system", "content": system}, {"role": "user", "content": q}] for q in "ab"]
    toks = [fake_model.backend.tokenize(fake_model.format_chat(m)) for m in msgs]
    opts = make_options(temperature=0, max_tokens=32)
    out: dict[int, list[str]] = {}
    for keep in (0, 1024):
        # chunks of 16; main-lane greedy requests are not "repeatable": they reuse the
        # whole shared system prompt, not only its chunk-aligned part
        engine = Engine(fake_model.backend, n_seq=1, n_ctx=1024, n_batch=17, keep_prefix=keep)
        try:
            out[keep] = [text(engine.generate(t, opts, timeout=10)) for t in toks]
            reused = engine.reused_tokens
        finally:
            engine.close()
        shared = next(i for i, (x, y) in enumerate(zip(*toks, strict=False)) if x != y)
        assert reused == (shared if keep else 0) and shared > 100
    assert out[0] == out[1024] == ["You said: a (café)", "You said: b (café)"]


def test_a_failed_decode_fails_its_requests_not_the_engine(fake_model: slmkit.Model) -> None:
    engine = Engine(fake_model.backend, n_seq=2, n_ctx=2048)
    runner = engine.runner
    assert isinstance(runner, FakeRunner)
    try:
        opts = make_options(temperature=0, max_tokens=8)
        runner.fail_next = 1
        chunks = engine.generate(prompt(fake_model, "x"), opts, timeout=10)
        assert [c.finish_reason for c in chunks] == ["error"]  # reported once, as an error
        assert text(engine.generate(prompt(fake_model, "x"), opts, timeout=10)) == "You said"
    finally:
        engine.close()


def test_an_emit_that_raises_cancels_only_its_request(fake_model: slmkit.Model) -> None:
    engine = Engine(fake_model.backend, n_seq=2, n_ctx=2048)
    try:

        def bad(c: Chunk) -> None:
            raise RuntimeError("client went away")

        engine.submit(prompt(fake_model, "first"), make_options(temperature=0), bad)
        out = engine.generate(prompt(fake_model, "second"), make_options(temperature=0), 10)
        assert text(out) == "You said: second (café)"
        deadline = time.monotonic() + 5
        while engine.running and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.running == 0 and engine.alive
    finally:
        engine.close()


def test_cancel_frees_the_slot_and_queue_limit_refuses(fake_model: slmkit.Model) -> None:
    engine = Engine(fake_model.backend, n_seq=1, n_ctx=4096, max_waiting=0)
    try:
        seen: list[Chunk] = []
        h = engine.submit(
            prompt(fake_model, "long " * 50), make_options(max_tokens=500), seen.append
        )
        with pytest.raises(EngineFullError):
            engine.submit(prompt(fake_model, "more"), make_options(), seen.append)
        h.cancel()
        deadline = time.monotonic() + 5
        while not (seen and seen[-1].finish_reason) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen[-1].finish_reason in ("cancelled", "stop")
        assert engine.running == 0 and engine.queue_depth == 0
    finally:
        engine.close()
    with pytest.raises(EngineClosedError):
        engine.submit([1, 2], make_options(), seen.append)


def test_generate_many_keeps_prompt_order(fake_model: slmkit.Model) -> None:
    prompts = [[{"role": "user", "content": f"n{i}"}] for i in range(5)] + ["one two three"]
    done: list[int] = []
    out = generate_many(fake_model, prompts, n_seq=3, temperature=0, progress=done.append)
    assert [c.text for c in out[:5]] == [f"You said: n{i} (café)" for i in range(5)]
    assert out[5].text == " three two one" and len(done) == 6


def test_stop_strings_and_max_tokens_in_the_engine(fake_model: slmkit.Model) -> None:
    engine = Engine(fake_model.backend, n_seq=2, n_ctx=2048)
    try:
        out = engine.generate(
            prompt(fake_model, "abc"), make_options(temperature=0, stop=["abc"]), 10
        )
        assert text(out) == "You said: " and out[-1].finish_reason == "stop"
        out = engine.generate(
            prompt(fake_model, "abc"), make_options(temperature=0, max_tokens=3), 10
        )
        assert text(out) == "You" and out[-1].finish_reason == "length"
    finally:
        engine.close()


def test_single_and_batched_scoring_agree_on_a_runner() -> None:
    from slmkit.runtime.generate import PromptCache, loglikelihood
    from slmkit.runtime.scoring import ScoringContext
    from tests.fakes import default_reply

    single = PromptCache(FakeRunner(default_reply, n_ctx=512, n_seq=1, n_batch=8))
    batched = ScoringContext(FakeRunner(default_reply, n_ctx=512, n_seq=8, n_batch=8))
    ctx = list(b"<|user|>abc\n<|assistant|>")
    conts = [list(b"You said: abc"), list(b"You said: xyz"), list(b"No")]
    one = [loglikelihood(single, ctx, c) for c in conts]
    many = batched.score([(ctx, c) for c in conts])
    assert [r.logprob for r in one] == pytest.approx([r.logprob for r in many])
    assert [r.is_greedy for r in many] == [True, False, False]
    assert many[0].logprob > many[1].logprob > many[2].logprob - 100


def test_a_sampler_that_cannot_be_built_fails_only_its_request(fake_model: slmkit.Model) -> None:
    engine = Engine(fake_model.backend, n_seq=2, n_ctx=2048)
    try:
        bad = engine.generate(prompt(fake_model, "a"), make_options(grammar="reject"), 10)
        assert [c.finish_reason for c in bad] == ["error"]
        good = engine.generate(prompt(fake_model, "b"), make_options(temperature=0), 10)
        assert text(good) == "You said: b (café)" and engine.running == 0
    finally:
        engine.close()


def test_a_step_that_raises_after_decoding_fails_its_requests_not_the_engine(
    fake_model: slmkit.Model,
) -> None:
    calls: list[int] = []

    def on_step(n: int) -> None:
        calls.append(n)
        if len(calls) == 1:
            raise RuntimeError("a metrics bug")

    engine = Engine(fake_model.backend, n_seq=2, n_ctx=2048, on_step=on_step)
    try:
        out = engine.generate(prompt(fake_model, "a"), make_options(temperature=0), 10)
        assert [c.finish_reason for c in out] == ["error"]
        out = engine.generate(prompt(fake_model, "b"), make_options(temperature=0), 10)
        assert text(out) == "You said: b (café)" and engine.alive
    finally:
        engine.close()


def test_seeded_requests_decode_in_their_own_context(fake_model: slmkit.Model) -> None:
    """A seeded request never shares a batch or a KV cache with other traffic: it runs on a
    second one-sequence context, made at the first such request; greedy ones join it only
    with solo_greedy."""
    engine = Engine(fake_model.backend, n_seq=3, n_ctx=2048, solo_greedy=False)
    engine.runner.delay_s = 0.002  # type: ignore[attr-defined]
    try:
        assert engine.solo.runner is None  # nothing made until a seeded request comes
        outs: list[list[Chunk]] = [[] for _ in range(4)]
        seeded = make_options(temperature=0, seed=5, max_tokens=64)  # seed: solo lane
        plain = make_options(temperature=0, max_tokens=64)
        for i in range(3):
            engine.submit(prompt(fake_model, f"other {i}"), plain, outs[i].append)
        engine.submit(prompt(fake_model, "seeded"), seeded, outs[3].append)
        wait_until(lambda: finished(outs))
        solo = engine.solo.runner
        assert isinstance(solo, FakeRunner) and solo.n_seq == 1
        assert bytes(t for t in solo.cache[0] if t < 256).decode("utf-8", "replace").count("seeded")
        main = engine.runner
        assert isinstance(main, FakeRunner)
        assert all(b"seeded" not in bytes(t for t in c if t < 256) for c in main.cache.values())
        assert max(engine.batch_sizes) >= 2  # the others still shared steps
    finally:
        engine.close()
    assert text(outs[3]) == "You said: seeded (café)"
    assert solo.closed


def test_per_seq_engine_runs_requests_too_long_for_a_stream_in_the_long_lane(
    fake_model: slmkit.Model,
) -> None:
    """Per-sequence streams: short requests share the main batch, each within its own
    n_ctx // n_seq cells (the fake runner checks); longer ones, up to long_ctx cells, run in
    the long lane, long_seq of them decoded together; the seeded-request lane stays unmade."""
    engine = Engine(
        fake_model.backend, n_seq=4, n_ctx=1024, per_seq=True, long_ctx=2048, long_seq=2
    )
    engine.runner.delay_s = 0.001  # type: ignore[attr-defined]
    try:
        assert engine.batched_request == 256 and engine.max_request == 2048
        main = engine.runner
        assert isinstance(main, FakeRunner) and main.per_seq and engine.long is not None
        long_qs = ["long " * 100, "longer " * 90, "longest " * 80]
        outs: list[list[Chunk]] = [[] for _ in range(6)]
        opts = make_options(temperature=0, max_tokens=64)
        for i, q in enumerate(["a", "b", "c", *long_qs]):
            engine.submit(prompt(fake_model, q), opts, outs[i].append)
        wait_until(lambda: finished(outs))
        long = engine.long.runner
        assert isinstance(long, FakeRunner) and long.per_seq and long.n_seq == 2
        assert long.n_ctx == 4096 and engine.solo.runner is None
        assert all(len(c) <= 256 for c in main.cache.values())
        assert sum(len(c) > 256 for c in long.cache.values()) == 2  # two kept long prompts
        with pytest.raises(ContextOverflowError):
            engine.submit(prompt(fake_model, "x" * 2100), opts, outs[0].append)
    finally:
        engine.close()
    assert [text(o) for o in outs[:3]] == [f"You said: {q} (café)" for q in "abc"]
    for q, out in zip(long_qs, outs[3:], strict=True):
        assert text(out) == f"You said: {q}"[:64] and out[-1].finish_reason == "length"
    assert long.closed


def test_long_requests_share_the_long_lanes_steps(fake_model: slmkit.Model) -> None:
    """Two long requests at once decode in the same steps of the long lane (before it, one
    waited for the other to finish)."""
    engine = Engine(fake_model.backend, n_seq=4, n_ctx=1024, per_seq=True, long_ctx=2048)
    firsts: list[int] = []
    outs: list[list[Chunk]] = [[], []]

    def emit(out: list[Chunk], c: Chunk) -> None:
        if not out:
            firsts.append(engine.steps)
        out.append(c)

    try:
        opts = make_options(temperature=0, max_tokens=200)
        for i, out in enumerate(outs):
            q = prompt(fake_model, f"long story {i} " * 30)
            engine.submit(q, opts, lambda c, out=out: emit(out, c))
        wait_until(lambda: finished(outs))
    finally:
        engine.close()
    assert abs(firsts[0] - firsts[1]) <= 1  # the second did not wait for the first's 200 tokens
    assert engine.batch_sizes[2] > 100


def _lookup_run(fake_model: slmkit.Model, qs: list[str], **opts: object) -> tuple[Engine, list]:
    """Run `qs` together on a fresh per-sequence engine (one decode = 1 ms); the engine
    (closed) and each request's chunks."""
    engine = Engine(fake_model.backend, n_seq=4, n_ctx=2048, per_seq=True)
    engine.runner.delay_s = 0.001  # type: ignore[attr-defined]
    outs: list[list[Chunk]] = [[] for _ in qs]
    try:
        for q, out in zip(qs, outs, strict=True):
            engine.submit(prompt(fake_model, q), make_options(max_tokens=80, **opts), out.append)
        wait_until(lambda: finished(outs))
    finally:
        engine.close()
    return engine, outs


def test_prompt_lookup_in_the_engine_keeps_the_text_and_takes_fewer_steps(
    fake_model: slmkit.Model,
) -> None:
    """A lone greedy request with prompt_lookup drafts what it copies from its prompt (the
    fake model's reply repeats it), verifies the drafts in its own decodes, and gives the
    plain text in fewer steps; sampled requests draft too, keeping their text."""
    q = "the quick brown fox jumps over the lazy dog"
    plain, (p_out,) = _lookup_run(fake_model, [q], temperature=0)
    fast, (f_out,) = _lookup_run(fake_model, [q], temperature=0, prompt_lookup=8)
    assert text(f_out) == text(p_out) == f"You said: {q} (café)"
    assert plain.drafted == 0 and fast.accepted > 20 and fast.drafted >= fast.accepted
    assert fast.steps < plain.steps * 0.6
    stats = f_out[-1].stats
    assert stats is not None and (stats.drafted_tokens, stats.accepted_tokens) == (
        fast.drafted,
        fast.accepted,
    )
    assert fast.costs.exact_rows >= 2  # measured for greedy drafting
    # seeded (the solo lane): each emitted token is one draw from its row, drafted or not,
    # so the same seed gives the same text
    _, (s_plain,) = _lookup_run(fake_model, [q], temperature=1.0, seed=7)
    sampled, (s_out,) = _lookup_run(fake_model, [q], temperature=1.0, seed=7, prompt_lookup=8)
    assert text(s_out) == text(s_plain) != text(p_out) and sampled.accepted > 10


def test_prompt_lookup_never_drafts_beside_other_sequences(fake_model: slmkit.Model) -> None:
    """Two requests sharing the batch decode one row each: no drafts while both run."""
    qs = ["the quick brown fox jumps over the lazy dog", "the quick brown fox jumps over it"]
    engine, outs = _lookup_run(fake_model, qs, temperature=0, prompt_lookup=8)
    assert [text(o) for o in outs] == [f"You said: {q} (café)" for q in qs]
    lone_tail = len(f"You said: {qs[0]} (café)") - len(f"You said: {qs[1]} (café)")
    assert engine.accepted <= lone_tail  # only after the shorter one had finished


@pytest.mark.parametrize("per_seq", [False, True])
def test_engine_scores_equal_the_scoring_context_beside_generation(
    fake_model: slmkit.Model, per_seq: bool
) -> None:
    """Scoring requests share steps with generation; every continuation (one token or
    several) gets the log-likelihood the batched scorer computes from the same logits, and
    the probes' cells are dropped (the fake runner checks positions)."""
    from slmkit.runtime.scoring import ScoringContext
    from tests.fakes import default_reply

    engine = Engine(fake_model.backend, n_seq=4, n_ctx=2048, per_seq=per_seq)
    engine.runner.delay_s = 0.001  # type: ignore[attr-defined]
    ctxs = [prompt(fake_model, q) for q in ("abc", "hello there", "abc")]
    conts = [list(b"You said: abc"), list(b"Y"), list(b"No"), list(b"You")]
    chats: list[list[Chunk]] = [[], []]
    got: list[list] = [[] for _ in ctxs]
    try:
        for i, out in enumerate(chats):
            opts = make_options(max_tokens=40, temperature=0)
            engine.submit(prompt(fake_model, f"chat {i}"), opts, out.append)
        for i, ctx in enumerate(ctxs):
            engine.submit_score(ctx, conts, lambda r, reason, i=i: got[i].append((r, reason)))
        wait_until(lambda: all(got) and finished(chats))
        assert max(engine.batch_sizes) >= 2 and engine.running == 0
    finally:
        engine.close()
    ref = ScoringContext(FakeRunner(default_reply, n_ctx=1024, n_seq=8, n_batch=64))
    for ctx, [(results, reason)] in zip(ctxs, got, strict=True):
        want = ref.score([(ctx, c) for c in conts])
        assert reason == "stop"
        for r, w in zip(results, want, strict=True):
            assert r.token_logprobs == pytest.approx(w.token_logprobs)
            assert r.is_greedy == w.is_greedy
    assert [r.is_greedy for r in got[0][0][0]] == [True, True, False, True]
    assert [r.is_greedy for r in got[1][0][0]] == [False, True, False, True]
    assert [text(c) for c in chats] == ["You said: chat 0 (café)", "You said: chat 1 (café)"]


def test_score_many_keeps_pair_order_within_a_window(fake_model: slmkit.Model) -> None:
    """More contexts than the engine queues: score_many submits at most `window` at a time,
    one request per distinct context, and answers in pair order."""
    from slmkit.engine import score_many

    engine = Engine(fake_model.backend, n_seq=2, n_ctx=1024, max_waiting=1)
    qs = [fake_model.format_chat([{"role": "user", "content": f"q{i}"}]) for i in range(12)]
    pairs = [(q, w) for q in qs for w in ("You", "Nope")]
    try:
        lls = score_many(fake_model, pairs, engine=engine, window=2)
        assert engine.steps > 0
    finally:
        engine.close()
    want = fake_model.backend.loglikelihood_many([fake_model.pair_tokens(c, x) for c, x in pairs])
    assert len(lls) == 24
    assert [ll.is_greedy for ll in lls] == [True, False] * 12
    assert [ll.n_tokens for ll in lls] == [w.n_tokens for w in want]


def test_a_cancelled_or_failed_score_reports_no_result(fake_model: slmkit.Model) -> None:
    from slmkit.errors import InputError, RuntimeFailure

    engine = Engine(fake_model.backend, n_seq=2, n_ctx=1024)
    try:
        with pytest.raises(InputError):
            engine.submit_score(prompt(fake_model, "a"), [[]], lambda r, why: None)
        engine.runner.fail_next = 1  # type: ignore[attr-defined]
        with pytest.raises(RuntimeFailure, match="error"):
            engine.score(prompt(fake_model, "a"), [list(b"You")], timeout=10)
        ok = engine.score(prompt(fake_model, "a"), [list(b"You"), list(b"Me")], timeout=10)
        assert [r.is_greedy for r in ok] == [True, False]
    finally:
        engine.close()
