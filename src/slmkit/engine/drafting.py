"""Speculative decoding in the engine. Prompt lookup (`options.prompt_lookup`) drafts tokens
copied from the request's own text, or with a draft model (a smaller model with the same
vocabulary, on its own one-sequence context; `options.draft_max`) its greedy continuation; the
request's next decode verifies them, as the single stream does (runtime/speculate.py), but
only while the request is alone in its lane: on a CPU each extra row costs nearly a whole
decode, so drafting beside other sequences would slow them down. The model's cost model
picks the draft length (0 where it does not pay); a greedy request drafts no more rows than
round exactly like single decodes (measured once per model, within 256 cells; past them only
if the single stream measured it there) and only on a context that holds nothing else (the
solo lane, or per-sequence streams)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from slmkit.engine.scheduler import Request
from slmkit.options import GenerationOptions
from slmkit.runtime.base import Backend, BatchRunner, FinishReason
from slmkit.runtime.cache import PromptCache
from slmkit.runtime.speculate import (
    CostModel,
    DraftModel,
    PromptLookup,
    Speculator,
    make_draft,
    measure_exact_rows,
)

Sample = Callable[[Request, int, BatchRunner], tuple[int, FinishReason | None]]


class Drafter:
    """The engine's drafting: its cost model (the model's, shared with its single stream),
    the draft model's context, and the drafted/kept counts."""

    def __init__(
        self, backend: Backend, runner: BatchRunner, draft: Backend | None, max_request: int
    ) -> None:
        self.backend = backend
        costs = getattr(backend, "costs", None)
        self.costs: CostModel = costs if isinstance(costs, CostModel) else CostModel()
        self.on_draft: Callable[[int, int], None] | None = None  # (drafted, kept) per step
        self.drafted = self.accepted = 0  # tokens drafted and kept, in total
        # the draft model's own context (InputError if its vocabulary differs)
        self.draft: DraftModel | None = (
            make_draft(runner, draft, max_request) if draft is not None else None
        )

    def speculator(self, opts: GenerationOptions, tokens: list[int]) -> Speculator | None:
        """A newly admitted request's drafting, if it asked for any."""
        use_draft = self.draft is not None and opts.draft_max > 0
        k_max = opts.draft_max if use_draft else opts.prompt_lookup
        if not k_max:
            return None
        exact = opts.temperature == 0.0
        if exact and not self.costs.exact_rows:
            self.costs.exact_rows = self._measure_exact_rows(tokens)
        source = self.draft if use_draft and self.draft else PromptLookup(tokens)
        return Speculator(source, tokens, k_max, self.costs, exact=exact)

    def draft_for(self, req: Request, spec: Speculator, *, alone: bool, n_batch: int) -> list[int]:
        """Within the cells the request reserved; a greedy one only on a context that holds
        nothing else (`alone`: the exactness probe's kind)."""
        if spec.exact and not alone:
            return []
        return spec.draft(min(req.reserve - req.n_past - 1, n_batch - 1))

    def verify(
        self, req: Request, idx: int, r: BatchRunner, sample: Sample
    ) -> tuple[int, FinishReason | None]:
        """Sample the rows of a drafted step in turn while each sample equals the draft (the
        standard rule for a deterministic draft: runtime/speculate.py); the first sample that
        differs, or the one after the last draft, is the next token."""
        draft, spec = req.draft, req.state.spec
        tok, reason = sample(req, idx, r)
        kept = 0
        while kept < len(draft) and tok == draft[kept]:
            kept += 1  # a kept draft may end the text (its end-of-generation token, a stop)
            if reason is not None:
                break
            tok, reason = sample(req, idx + kept, r)
        req.kept = kept
        spec.settle(len(draft), kept)
        self.drafted += len(draft)
        self.accepted += kept
        if self.on_draft is not None:
            self.on_draft(len(draft), kept)
        return tok, reason

    def _measure_exact_rows(self, tokens: Sequence[int]) -> int:
        """Rows a decode may hold and round as single decodes, on a one-sequence context of
        the engine's kind made for the purpose (once per engine, at the first greedy
        prompt-lookup request)."""
        runner = self.backend.batch_runner(n_ctx=512, n_seq=1)
        try:
            return measure_exact_rows(PromptCache(runner), tokens)
        finally:
            runner.close()

    def close(self) -> None:
        if self.draft is not None:
            self.draft.cache.runner.close()
