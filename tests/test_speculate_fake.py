"""Speculative decoding on the fake backend: a draft model's drafts are verified so the text
is exactly plain decoding's, the cost model turns drafting off where it cannot pay, and the
exactness probe and vocabulary check catch what would change the text."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

import slmkit
from slmkit.catalog.store import Store
from slmkit.errors import InputError
from slmkit.runtime.base import Entry
from slmkit.runtime.cache import PromptCache
from slmkit.runtime.speculate import CostModel, measure_exact_rows, vocabulary_mismatch
from tests.fakes import EOS, FakeBackend, FakeRunner, default_reply, fake_entry

MSG = "please copy this sentence back to me word for word"


def _sloppy_reply(prompt: str) -> str:
    """A draft that agrees with the target except for some letters."""
    return default_reply(prompt).replace("e", "E").replace("w", "v")


class _DraftRunner(FakeRunner):
    """A draft reads the text so far as one prompt (PromptCache.prefill), so it finds where
    the reply starts by the last assistant tag rather than by where its prefill ended."""

    def _next(self, seq: int, upto: int) -> int:
        text = bytes(t for t in self.cache[seq][:upto] if t < 256)
        cut = text.rfind(b"<|assistant|>") + len(b"<|assistant|>")
        target = self.reply(text[:cut].decode("utf-8", errors="replace")).encode()
        n = upto - cut
        return target[n] if n < len(target) else EOS


class _Draft(FakeBackend):
    def batch_runner(
        self, *, n_ctx: int, n_seq: int, n_batch: int = 512, per_seq: bool = False
    ) -> FakeRunner:
        return _DraftRunner(self.reply, n_ctx=n_ctx, n_seq=n_seq, n_batch=n_batch)


def test_a_draft_model_keeps_the_greedy_text_and_saves_decodes(fake_model: slmkit.Model) -> None:
    backend = fake_model.backend
    runner = backend.runner  # type: ignore[attr-defined]
    before = runner.decodes
    plain = fake_model.chat(MSG, temperature=0, max_tokens=80)
    plain_decodes = runner.decodes - before
    for draft_reply in (default_reply, _sloppy_reply):
        draft = _Draft(fake_entry("fake-draft"), Path("draft"))
        draft.reply = staticmethod(draft_reply)  # type: ignore[method-assign]
        backend.attach_draft(draft)
        backend._cache.reset()  # type: ignore[attr-defined]
        before = runner.decodes
        fast = fake_model.chat(MSG, temperature=0, max_tokens=80, draft_max=4)
        assert fast.text == plain.text == f"You said: {MSG} (café)"
        s = fast.stats
        assert 0 < s.accepted_tokens <= s.drafted_tokens
        if draft_reply is default_reply:  # a perfect draft: everything kept, far fewer decodes
            assert s.accepted_tokens == s.drafted_tokens
            assert runner.decodes - before < plain_decodes / 2
        else:  # a sloppy one: some drafts rejected, the text is still the target's
            assert s.accepted_tokens < s.drafted_tokens
        # draft_max=0 does not use the draft; max_tokens and stop strings inside drafts hold
        off = fake_model.chat(MSG, temperature=0, max_tokens=80, draft_max=0)
        assert off.text == plain.text and off.stats.drafted_tokens == 0
        short = fake_model.chat(MSG, temperature=0, max_tokens=15, draft_max=4)
        assert short.text == plain.text[:15] and short.stats.completion_tokens == 15
        stopped = fake_model.chat(MSG, temperature=0, max_tokens=80, draft_max=4, stop=["word"])
        assert stopped.text == plain.text.split("word")[0]
    backend.attach_draft(None)
    assert fake_model.chat(MSG, temperature=0, max_tokens=80, draft_max=4).stats.drafted_tokens == 0


def test_load_with_draft_auto_needs_a_compatible_installed_model(fake_store: Store) -> None:
    with pytest.raises(InputError, match="no draft model installed for fake-chat"):
        slmkit.load("fake-chat", store=fake_store, draft="auto")


class _OtherVocab(FakeRunner):
    def piece(self, tok: int) -> bytes:
        return b"<x>" if tok == 77 else super().piece(tok)


def test_vocabulary_mismatch_names_the_difference() -> None:
    a = FakeRunner(default_reply, n_ctx=64, n_seq=1)
    assert vocabulary_mismatch(a, FakeRunner(default_reply, n_ctx=64, n_seq=1)) == ""
    assert "token 77" in vocabulary_mismatch(a, _OtherVocab(default_reply, n_ctx=64, n_seq=1))
    bigger = FakeRunner(default_reply, n_ctx=64, n_seq=1)
    bigger.n_vocab += 1
    assert "differ in size" in vocabulary_mismatch(a, bigger)


class _RoundsBigBatches(FakeRunner):
    """Rows of a decode with 4+ entries come out slightly different, as llama.cpp's CPU GEMM
    kernels round them."""

    def decode(self, entries: Sequence[Entry]) -> None:
        super().decode(entries)
        if len(entries) >= 4:
            self._rows[: len(entries)] += np.float32(1e-3)


def test_measure_exact_rows_finds_where_batches_round_differently() -> None:
    tokens = list(b"a prompt long enough to probe")
    exact = PromptCache(FakeRunner(default_reply, n_ctx=256, n_seq=1))
    assert measure_exact_rows(exact, tokens) == 9
    rounding = PromptCache(_RoundsBigBatches(default_reply, n_ctx=256, n_seq=1))
    assert measure_exact_rows(rounding, tokens) == 3
    assert rounding.tokens == [] and rounding.runner.cache[0] == []  # type: ignore[attr-defined]
    assert measure_exact_rows(exact, tokens[:2]) == 1  # too short to tell


def test_a_greedy_request_drafts_only_as_many_rows_as_round_exactly(
    fake_model: slmkit.Model,
) -> None:
    backend = fake_model.backend
    backend.runner = _RoundsBigBatches(default_reply, n_ctx=2048, n_seq=1)  # type: ignore[attr-defined]
    backend._cache = PromptCache(backend.runner)  # type: ignore[attr-defined]
    backend.costs = CostModel(guard=False)  # type: ignore[attr-defined]
    out = fake_model.chat(MSG, temperature=0, max_tokens=80, prompt_lookup=8)
    assert backend.costs.exact_rows == 3  # type: ignore[attr-defined]
    assert out.text == f"You said: {MSG} (café)"
    assert out.stats.accepted_tokens > 10


def test_cost_model_drafts_only_where_it_pays() -> None:
    ms = 1e-3
    cpu = CostModel()  # verification cost grows with the rows, a draft token costs 0.7 of one
    for n, t in ((1, 30 * ms), (2, 58 * ms), (3, 80 * ms), (5, 123 * ms)):
        cpu.note_rows(n, t)
    cpu.note_draft("DraftModel", 21 * ms, drafted=10, kept=9)
    assert cpu.best_k("DraftModel", 8) == 0
    cpu.note_draft("PromptLookup", 0.01 * ms, drafted=10, kept=9)
    assert cpu.best_k("PromptLookup", 8) == 0  # even free drafts: 2 rows cost 1.93 of one
    gpu = CostModel()  # verification is nearly free, the draft cheap and usually right
    for n, t in ((1, 30 * ms), (2, 31 * ms), (5, 33 * ms), (9, 36 * ms)):
        gpu.note_rows(n, t)
    gpu.note_draft("DraftModel", 3 * ms, drafted=10, kept=8)
    assert gpu.best_k("DraftModel", 8) >= 3
    fresh = CostModel()
    assert fresh.best_k("PromptLookup", 8) == 0  # nothing measured: plain first
    fresh.note_rows(1, 30 * ms)
    assert fresh.best_k("PromptLookup", 8) > 0  # optimistic until a draft was measured
    partial = CostModel()
    partial.note_rows(1, 30 * ms)
    partial.note_rows(5, 70 * ms)
    assert partial.row_cost(3) == pytest.approx(50 * ms)
    assert partial.row_cost(9) == pytest.approx(110 * ms)


class _RoundsLongBatches(FakeRunner):
    """Batches of 2+ rows round differently once the context passes 256 cells (as llama.cpp's
    one-row decode switches attention paths there)."""

    def decode(self, entries: Sequence[Entry]) -> None:
        super().decode(entries)
        if len(entries) >= 2 and max(e[1] for e in entries) >= 256:
            self._rows[: len(entries)] += np.float32(1e-3)


def test_exactness_is_measured_apart_for_long_contexts(fake_model: slmkit.Model) -> None:
    backend = fake_model.backend
    backend.runner = _RoundsLongBatches(default_reply, n_ctx=2048, n_seq=1)  # type: ignore[attr-defined]
    backend._cache = PromptCache(backend.runner)  # type: ignore[attr-defined]
    backend.costs = CostModel(guard=False)  # type: ignore[attr-defined]
    short = fake_model.chat(MSG, temperature=0, max_tokens=40, prompt_lookup=8)
    assert (backend.costs.exact_rows, backend.costs.exact_rows_long) == (9, 0)  # type: ignore[attr-defined]
    assert short.stats.accepted_tokens > 10
    long_msg = "copy this: " + " ".join(f"w{i}" for i in range(60)) + " " + MSG
    plain = fake_model.chat(long_msg, temperature=0, max_tokens=200)
    fast = fake_model.chat(long_msg, temperature=0, max_tokens=200, prompt_lookup=8)
    assert backend.costs.exact_rows_long == 1  # type: ignore[attr-defined]
    assert fast.text == plain.text and fast.stats.drafted_tokens == 0  # all beyond 256 cells


def test_the_engine_drafts_with_a_draft_model_for_a_lone_request(
    fake_model: slmkit.Model,
) -> None:
    """An engine given a draft model (as `slm serve --draft` does) drafts with it for a lone
    request: the same greedy text with a perfect or a sloppy draft, fewer steps with the
    perfect one; draft_max=0 turns it off."""
    from slmkit.engine import Engine
    from slmkit.options import make_options

    toks = fake_model.backend.tokenize(fake_model.format_chat([{"role": "user", "content": MSG}]))

    def run(draft_reply: object, draft_max: int) -> tuple[str, Engine]:
        draft = None
        if draft_reply is not None:
            draft = _Draft(fake_entry("fake-draft"), Path("draft"))
            draft.reply = staticmethod(draft_reply)  # type: ignore[method-assign]
        engine = Engine(fake_model.backend, n_seq=2, n_ctx=2048, per_seq=True, draft=draft)
        try:
            opts = make_options(temperature=0, max_tokens=80, draft_max=draft_max)
            text = "".join(c.text for c in engine.generate(toks, opts, timeout=10))
        finally:
            engine.close()
        assert draft is None or engine.draft.cache.runner.closed  # type: ignore[union-attr]
        return text, engine

    plain, p_eng = run(None, 4)
    good, g_eng = run(default_reply, 4)
    sloppy, s_eng = run(_sloppy_reply, 4)
    off, o_eng = run(default_reply, 0)
    assert good == sloppy == off == plain == f"You said: {MSG} (café)"
    assert g_eng.accepted == g_eng.drafted > 20 and g_eng.steps < p_eng.steps / 2
    assert 0 < s_eng.accepted < s_eng.drafted
    assert p_eng.drafted == o_eng.drafted == 0
