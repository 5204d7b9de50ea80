"""Scoring requests in the engine (`Engine.submit_score`: log P(continuation | context) for
several continuations, what zero-shot classification needs). They take a slot like any other
and sample nothing: the prompt's last row gives every continuation's first token, and each
longer continuation is then decoded after the prompt in one step (a `probe`), its rows read
and its cells dropped."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from slmkit.engine.scheduler import Request, Scheduler
from slmkit.runtime.base import BatchRunner, FinishReason, LogLikelihood
from slmkit.runtime.decoding import log_softmax
from slmkit.runtime.generate import score_rows


@dataclass(eq=False)
class Scoring:
    """A scoring request's continuations and the log-softmax rows read for each so far:
    every first token's row is the prompt's last one; a longer continuation's other rows come
    from one probe step (the continuation decoded after the prompt, its cells dropped after).
    """

    conts: list[list[int]]
    done: Callable[[list[LogLikelihood] | None, FinishReason], None]
    rows: list[list[np.ndarray]] = field(default_factory=list)

    def missing(self) -> int | None:
        """The first continuation still missing rows (the one probed next, or in flight);
        None when every one is scored. Nothing is read before the prompt's row."""
        if not self.rows:
            return 0
        gaps = (
            j for j, (c, r) in enumerate(zip(self.conts, self.rows, strict=True)) if len(r) < len(c)
        )
        return next(gaps, None)

    def next_probe(self) -> list[int]:
        """The next continuation to decode after the prompt, less its last token (it predicts
        nothing); [] when none is left."""
        j = self.missing()
        return self.conts[j][:-1] if j is not None else []

    @property
    def complete(self) -> bool:
        return self.missing() is None

    def result(self) -> list[LogLikelihood]:
        return [score_rows(np.vstack(r), c) for r, c in zip(self.rows, self.conts, strict=True)]


def plan_probes(sched: Scheduler) -> None:
    """(Under the engine's lock) each prefilled scoring request's next probe."""
    for req in sched.running:
        scoring = req.state.scoring
        if scoring is not None and scoring.rows and req.n_prefilled == len(req.tokens):
            req.probe = scoring.next_probe()


def read_rows(req: Request, idx: int, r: BatchRunner) -> tuple[int, FinishReason | None]:
    """Read a scoring request's rows: after the prompt, the first token's row of every
    continuation; after a probe, the probed continuation's other rows."""
    sc: Scoring = req.state.scoring
    j = sc.missing()
    if req.probe and j is not None:
        sc.rows[j] += [log_softmax(r.logits(idx + i)) for i in range(len(req.probe))]
    else:
        first = log_softmax(r.logits(idx))
        sc.rows = [[first] for _ in sc.conts]
    return -1, ("stop" if sc.complete else None)
