"""Batched log-likelihood scoring on a multi-sequence runner (any backend's `BatchRunner`).

Many (context, continuation) requests are scored in few forward passes:
- the prefix all contexts share (an instruction template) is decoded once into sequence 0
  and kept between calls;
- each distinct context is decoded once, its tokens tagged with one sequence id per
  continuation that follows it (llama.cpp stores shared cells once in a unified cache);
- then every continuation's tokens are decoded, all in the same batches.
The single-sequence path (runtime/generate.py) re-reads a context per call; this one is
what classification and evaluation use for throughput.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from slmkit.errors import InputError, RuntimeFailure
from slmkit.runtime.base import BatchRunner, Entry, LogLikelihood
from slmkit.runtime.decoding import log_softmax
from slmkit.runtime.generate import score_rows

Request = tuple[Sequence[int], Sequence[int]]


@dataclass
class _Group:
    context: tuple[int, ...]
    items: list[int]  # request indices sharing this context
    seqs: list[int]  # one sequence id per item


def _lcp(seqs: list[tuple[int, ...]]) -> int:
    n = min(len(s) for s in seqs)
    first = seqs[0]
    for i in range(n):
        if any(s[i] != first[i] for s in seqs[1:]):
            return i
    return n


class ScoringContext:
    """Scores on a runner with many sequences (a second context over the same weights)."""

    def __init__(self, runner: BatchRunner, *, chunk_cells: int = 512) -> None:
        self.runner = runner
        self.n_ctx, self.n_seq, self.n_batch = runner.n_ctx, runner.n_seq, runner.n_batch
        # Every token attends to every cell of the unified cache (masked), so small chunks
        # keep attention cheap; measured fastest around one batch of tokens per chunk.
        self.chunk_cells = chunk_cells
        self.prefix: tuple[int, ...] = ()

    def close(self) -> None:
        self.runner.close()

    # --- low level --------------------------------------------------------------------------
    def _decode(self, entries: list[Entry]) -> np.ndarray:
        """Decode entries in n_batch pieces; return the log-softmax rows of the entries
        that asked for logits, in order."""
        rows: list[np.ndarray] = []
        for start in range(0, len(entries), self.n_batch):
            piece = entries[start : start + self.n_batch]
            n_out = sum(1 for e in piece if e[3])
            try:
                self.runner.decode(piece)
            except RuntimeFailure:
                self.reset()
                raise
            if n_out:
                rows.append(log_softmax(self.runner.logit_rows(n_out)))
        return np.concatenate(rows) if rows else np.zeros((0, self.runner.n_vocab))

    def reset(self) -> None:
        self.runner.clear()
        self.prefix = ()

    def _set_prefix(self, prefix: tuple[int, ...]) -> None:
        if prefix == self.prefix:
            return
        self.reset()
        if prefix:
            self._decode([(t, i, (0,), False) for i, t in enumerate(prefix)])
        self.prefix = prefix

    # --- scoring ----------------------------------------------------------------------------
    def score(self, requests: Sequence[Request]) -> list[LogLikelihood]:
        """Score every request; results are in request order."""
        reqs = [(tuple(c), tuple(x)) for c, x in requests]
        for c, x in reqs:
            if not c or not x:
                raise InputError("every request needs a non-empty context and continuation")
        # The shared prefix must leave at least one context token to read logits from.
        plen = min(_lcp([c for c, _ in reqs]), min(len(c) for c, _ in reqs) - 1)
        self._set_prefix(reqs[0][0][:plen])
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (c, _) in enumerate(reqs):
            groups.setdefault(c, []).append(i)
        results: list[LogLikelihood | None] = [None] * len(reqs)
        for chunk in self._chunks(list(groups.items()), reqs, plen):
            self._score_chunk(chunk, reqs, plen, results)
        return [r for r in results if r is not None]

    def _chunks(
        self,
        groups: list[tuple[tuple[int, ...], list[int]]],
        reqs: list[tuple[tuple[int, ...], tuple[int, ...]]],
        plen: int,
    ) -> list[list[_Group]]:
        """Pack groups so that each chunk fits the sequences and KV cells available."""
        chunks: list[list[_Group]] = []
        cur: list[_Group] = []
        seq, cells = 1, plen
        for ctx, items in groups:
            need_cells = len(ctx) - plen + sum(len(reqs[i][1]) for i in items)
            if len(items) + 1 > self.n_seq or plen + need_cells > self.n_ctx:
                raise InputError(
                    f"one text with {len(items)} labels needs {len(items) + 1} sequences and "
                    f"{plen + need_cells} cache cells (have {self.n_seq}, {self.n_ctx})"
                )
            limit = min(self.n_ctx, plen + self.chunk_cells)
            if cur and (seq + len(items) > self.n_seq or cells + need_cells > limit):
                chunks.append(cur)
                cur, seq, cells = [], 1, plen
            cur.append(_Group(ctx, items, list(range(seq, seq + len(items)))))
            seq += len(items)
            cells += need_cells
        if cur:
            chunks.append(cur)
        return chunks

    def _score_chunk(
        self,
        chunk: list[_Group],
        reqs: list[tuple[tuple[int, ...], tuple[int, ...]]],
        plen: int,
        results: list[LogLikelihood | None],
    ) -> None:
        for g in chunk:
            for s in g.seqs:
                self.runner.copy_seq(0, s)
        # Phase A: each distinct context once, logits only at its last token.
        first_rows = self._decode(_context_entries(chunk, plen))
        # Phase B: every continuation but its last token (whose logits nothing needs).
        rest_rows = self._decode(_continuation_entries(chunk, reqs))
        r = 0
        for gi, g in enumerate(chunk):
            for i in g.items:
                cont = reqs[i][1]
                rows = np.vstack([first_rows[gi : gi + 1], rest_rows[r : r + len(cont) - 1]])
                r += len(cont) - 1
                results[i] = score_rows(rows, cont)
        for g in chunk:
            for s in g.seqs:
                self.runner.forget(s)


def _context_entries(chunk: list[_Group], plen: int) -> list[Entry]:
    """Each group's context after the shared prefix, tagged with all of its sequences."""
    entries: list[Entry] = []
    for g in chunk:
        tail = g.context[plen:]
        seqs = tuple(g.seqs)
        entries += [(t, plen + j, seqs, j == len(tail) - 1) for j, t in enumerate(tail)]
    return entries


def _continuation_entries(
    chunk: list[_Group], reqs: list[tuple[tuple[int, ...], tuple[int, ...]]]
) -> list[Entry]:
    """Every continuation but its last token, each in its own sequence."""
    entries: list[Entry] = []
    for g in chunk:
        for i, s in zip(g.items, g.seqs, strict=True):
            cont = reqs[i][1]
            entries += [(t, len(g.context) + j, (s,), True) for j, t in enumerate(cont[:-1])]
    return entries
