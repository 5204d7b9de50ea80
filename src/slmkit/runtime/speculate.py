"""Speculative decoding for the single-stream loop: a cheap source drafts a few tokens, the
model decodes the current token and the draft in one batch, and each row is sampled with the
request's own sampler chain (so greedy, grammar and penalties behave as in plain decoding).
Drafts are kept while the sample equals them; the first sample that differs is the next
token, and the rejected drafts' cells are dropped.

Sources: `PromptLookup` (copies what followed the text's last n-gram earlier on; Saxena 2023)
and `DraftModel` (a smaller model with the same vocabulary, decoding greedily). Both drafts
are deterministic, so the draft distribution q is a point mass and the standard rejection
rule (accept with probability min(1, p/q) = p(draft), else sample from the residual p minus
the draft, renormalised) is exactly "sample from p and compare": sampled output keeps the
model's own distribution, and greedy output is the plain greedy text.

Written here because llama.cpp's Python binding has no speculative API. The draft length
comes from a cost model (`CostModel`) learnt from the model's own steps: the expected kept
tokens per second of each length against plain decoding, so drafting turns itself off where
it does not pay (a rejected-often draft, or hardware where verifying n rows costs about n
single decodes).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from slmkit.errors import InputError
from slmkit.runtime.base import Backend, BatchRunner, Chunk, FinishReason
from slmkit.runtime.cache import PromptCache
from slmkit.runtime.decoding import SequenceOutput


class PromptLookup:
    """Drafts copied from the text so far: what followed the latest earlier occurrence of
    the last 3 (else 2) tokens. Indexes the speculator's history (it keeps no copy)."""

    def __init__(self, tokens: Sequence[int]) -> None:
        self.index: dict[tuple[int, ...], int] = {}  # n-gram -> where its latest copy ends
        for end in range(len(tokens)):
            self._note(tokens, end)

    def _note(self, hist: Sequence[int], end: int) -> None:
        """Index the 2- and 3-grams ending just before position `end` (which follows them)."""
        for n in (2, 3):
            if end >= n:
                self.index[tuple(hist[end - n : end])] = end

    def add(self, hist: Sequence[int]) -> None:
        """`hist` grew by one token: index the n-grams that its last token follows."""
        self._note(hist, len(hist) - 1)

    def propose(self, hist: Sequence[int], k: int) -> list[int]:
        for n in (3, 2):
            end = self.index.get(tuple(hist[-n:]))
            if end is not None and end < len(hist):
                return list(hist[end : end + k])
        return []


class DraftModel:
    """Greedy drafts from a smaller model sharing the target's vocabulary, on its own
    one-sequence cache (the accepted prefix is reused across steps and requests)."""

    def __init__(self, runner: BatchRunner) -> None:
        self.cache = PromptCache(runner)

    def add(self, hist: Sequence[int]) -> None:
        """Nothing to index: the draft model reads the whole text at `propose`."""

    def propose(self, hist: Sequence[int], k: int) -> list[int]:
        runner = self.cache.runner
        if len(hist) + k > runner.n_ctx:
            return []
        self.cache.prefill(hist)
        out: list[int] = []
        while True:
            tok = int(np.argmax(runner.logits(-1)))
            out.append(tok)
            if len(out) >= k or runner.is_eog(tok):
                return out
            self.cache.extend((tok,))


def vocabulary_mismatch(target: BatchRunner, draft: BatchRunner, samples: int = 4096) -> str:
    """Why `draft` cannot draft for `target` ('' if it can): token ids must mean the same
    text. Compares the sizes, then every token of an evenly spaced sample and the last 64
    (where special tokens sit), which tells different tokenizers apart in milliseconds."""
    if target.n_vocab != draft.n_vocab:
        return f"vocabularies differ in size ({target.n_vocab} vs {draft.n_vocab} tokens)"
    n = target.n_vocab
    ids = sorted({*range(0, n, max(1, n // samples)), *range(max(0, n - 64), n)})
    for tok in ids:
        if target.piece(tok) != draft.piece(tok) or target.is_eog(tok) != draft.is_eog(tok):
            return f"token {tok} is {target.piece(tok)!r} here and {draft.piece(tok)!r} there"
    return ""


def make_draft(target: BatchRunner, draft: Backend, n_ctx: int) -> DraftModel:
    """A `DraftModel` on a new one-sequence context of `draft`; InputError if its vocabulary
    differs from the target's."""
    runner = draft.batch_runner(n_ctx=n_ctx, n_seq=1)
    why = vocabulary_mismatch(target, runner)
    if why:
        runner.close()
        raise InputError(f"the draft model cannot draft for this one: {why}")
    return DraftModel(runner)


class CostModel:
    """What decoding costs on one model, learnt from its own steps and kept across requests:
    seconds per decode of n rows, seconds per drafted token and the share of drafts kept, per
    draft source. `best_k` picks the draft length with the most expected tokens per second
    (0: plain decoding), so drafting stops wherever it does not pay on this hardware (a
    2-core CPU verifies 5 rows in ~4x one row's time; a GPU in ~1x)."""

    def __init__(self, *, guard: bool = True) -> None:
        self.rows: dict[int, float] = {}  # n rows -> seconds per decode (moving average)
        self.draft_s: dict[str, float] = {}
        self.alpha: dict[str, float] = {}
        self.guard = guard  # False: draft whatever it costs (benchmarks measure that cost)
        # rows one decode may hold and still round as single decodes (0: not measured),
        # within SHORT_CELLS cells of context and beyond
        self.exact_rows = self.exact_rows_long = 0

    @staticmethod
    def _avg(table: dict, key: object, value: float) -> None:
        old = table.get(key)
        table[key] = value if old is None else 0.8 * old + 0.2 * value

    def note_rows(self, n: int, seconds: float) -> None:
        self._avg(self.rows, n, seconds)

    def note_draft(self, kind: str, per_token_s: float, drafted: int, kept: int) -> None:
        self._avg(self.draft_s, kind, per_token_s)
        self._avg(self.alpha, kind, kept / drafted)

    def row_cost(self, n: int) -> float:
        """Measured, else interpolated between measured sizes, else (nothing above one row
        measured yet) an optimistic guess of +25% a row, so that drafting gets tried."""
        if n in self.rows:
            return self.rows[n]
        one = self.rows[1]
        known = sorted(m for m in self.rows if m > 1)
        if not known:
            return one * (1 + 0.25 * (n - 1))
        lo = max((m for m in (1, *known) if m < n), default=1)
        hi = min((m for m in known if m > n), default=known[-1])
        if hi == lo:
            lo = 1
        slope = (self.rows[hi] - self.rows[lo]) / (hi - lo)
        return self.rows[lo] + slope * (n - lo)

    def best_k(self, kind: str, k_max: int) -> int:
        """The draft length with the most expected tokens per second; 0 until a plain step
        was measured, and whenever no length beats plain decoding."""
        if 1 not in self.rows:
            return 0
        a, d = self.alpha.get(kind, 0.7), self.draft_s.get(kind, 0.0)
        best, best_rate = 0, 1.0 / self.rows[1]
        for k in range(1, k_max + 1):
            expected = k + 1 if a >= 0.999 else (1 - a ** (k + 1)) / (1 - a)
            rate = expected / (k * d + self.row_cost(k + 1))
            if rate > best_rate * 1.02:  # a margin against noise in the measured costs
                best, best_rate = k, rate
        return best


# llama.cpp pads the cells a decode attends over to 256 and takes other attention paths for a
# one-row decode beyond them (split-KV), so exactness is measured apart below and above.
SHORT_CELLS = 256
_LONG_PROBE_AT = 600


def measure_exact_rows(
    cache: PromptCache, tokens: Sequence[int], most: int = 9, at: int = 0
) -> int:
    """How many rows one decode may hold while every row's logits equal, bit for bit, those
    of decoding the tokens one at a time (a kernel that rounds differently for bigger batches
    would make greedy drafts change the text). Tried on sequence 0 after `at` cells of
    context (the prompt's tokens, repeated as needed), which is left empty; 1 if the prompt
    is too short to tell."""
    n = min(most, len(tokens) - 1)
    if n < 2:
        return 1
    seq = list(tokens) * (1 + (at + n + 1) // len(tokens))
    head, base = seq[: at + n + 1], at + 1
    runner = cache.runner
    cache.reset()
    cache.extend(head[:base])
    singles = []
    runner.forget(0, base)  # each pass below starts from this same state
    for i in range(base, base + n):
        runner.decode([(head[i], i, (0,), True)])
        singles.append(runner.logits(-1).copy())
    exact = 1
    for rows in range(2, n + 1):
        runner.forget(0, base)
        runner.decode([(head[i], i, (0,), True) for i in range(base, base + rows)])
        got = runner.logit_rows(rows)
        if not all(np.array_equal(got[j], singles[j]) for j in range(rows)):
            break
        exact = rows
    cache.reset()
    return exact


def exact_caps(costs: CostModel, cache: PromptCache, tokens: Sequence[int], reach: int) -> None:
    """Measure (once per model) the exact rows for contexts up to SHORT_CELLS cells, and
    beyond them if this request can reach that far (`reach`: prompt + max_tokens)."""
    if not costs.exact_rows:
        costs.exact_rows = measure_exact_rows(cache, tokens)
    if reach > SHORT_CELLS and not costs.exact_rows_long:
        at = min(_LONG_PROBE_AT, cache.runner.n_ctx - 16)
        # a context too small to probe past SHORT_CELLS: no drafts there (1 row)
        costs.exact_rows_long = (
            measure_exact_rows(cache, tokens, at=at) if at > SHORT_CELLS + 16 else 1
        )


@dataclass(slots=True)
class _Tally:
    drafted: int = 0
    accepted: int = 0


class Speculator:
    """Drafting, verification and the draft length, for one request. `step` runs a whole
    step on the single stream; the engine (engine/core.py) decodes the batch itself and uses
    `note`, `draft` and `settle`."""

    def __init__(
        self,
        source: PromptLookup | DraftModel,
        prompt: Sequence[int],
        k_max: int,
        costs: CostModel | None = None,
        *,
        exact: bool = False,
    ) -> None:
        """`k_max`: most tokens drafted per step; `exact` (greedy requests): no more than the
        rows that round as single decodes at the context length reached (CostModel), so the
        text is exactly the plain greedy text."""
        self.source, self.k_max, self.k = source, k_max, min(4, k_max)
        self.exact = exact
        self.kind = type(source).__name__
        self.hist = list(prompt)
        self.costs = costs or CostModel()
        self.t = _Tally()
        self._draft_s = 0.0  # the last draft's seconds per token

    @property
    def drafted(self) -> int:
        return self.t.drafted

    @property
    def accepted(self) -> int:
        return self.t.accepted

    def note(self, tok: int) -> None:
        """`tok` was sampled (or decoded): it extends the text drafts are read from."""
        self.hist.append(tok)
        self.source.add(self.hist)

    def draft(self, room: int) -> list[int]:
        """Tokens to follow the text: at most `room`, the cost model's best length and (exact)
        the rows that round as single decodes at this context length."""
        k = self.costs.best_k(self.kind, self.k_max) if self.costs.guard else self.k
        k = min(k, room)
        if self.exact:
            c = self.costs
            rows = c.exact_rows if len(self.hist) + k <= SHORT_CELLS else c.exact_rows_long
            k = min(k, rows - 1)
        if k <= 0:
            return []
        t0 = time.perf_counter()
        draft = self.source.propose(self.hist, k)
        if draft:
            self._draft_s = (time.perf_counter() - t0) / len(draft)
        return draft

    def step(
        self, cache: PromptCache, sampler: object, out: SequenceOutput, tok: int, room: int
    ) -> Iterator[Chunk | tuple[int, int, FinishReason | None]]:
        """Decode `tok` (+ a draft of at most room - 1 tokens), yield the kept drafts'
        chunks, then (next token, drafts kept, finish reason if one of them ended it)."""
        runner = cache.runner
        self.note(tok)
        draft = self.draft(room - 1)
        t0 = time.perf_counter()
        cache.extend([tok, *draft], all_logits=bool(draft))
        self.costs.note_rows(len(draft) + 1, time.perf_counter() - t0)
        if not draft:
            yield runner.sample(sampler, -1), 0, None
            return
        kept, done, nxt = 0, None, -1
        for j in range(len(draft) + 1):
            nxt = runner.sample(sampler, j)
            if j == len(draft) or nxt != draft[j]:
                break
            kept += 1
            self.note(nxt)
            chunk, done = out.token(nxt, runner.piece(nxt), runner.is_eog(nxt))
            if chunk is not None:
                yield chunk
            if done is not None:
                break
        rejected = len(draft) - kept
        if rejected and done is None:
            runner.forget(0, len(cache.tokens) - rejected)
            del cache.tokens[len(cache.tokens) - rejected :]
        self.settle(len(draft), kept)
        yield nxt, kept, done

    def settle(self, drafted: int, kept: int) -> None:
        """A verified draft: tallies, the cost model's share kept, the unguarded length."""
        self.t.drafted += drafted
        self.t.accepted += kept
        self.costs.note_draft(self.kind, self._draft_s, drafted, kept)
        self.k = min(self.k + 2, self.k_max) if kept == drafted else max(1, self.k - 1)
