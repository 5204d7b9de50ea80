"""`PromptCache`: sequence 0 of a runner and the tokens whose cells it holds, so a new prompt
that shares a prefix with the last one (the earlier turns of a chat) decodes only the rest.
The single-stream loop and a speculative draft model each keep one."""

from __future__ import annotations

from collections.abc import Sequence

from slmkit.errors import RuntimeFailure
from slmkit.runtime.base import BatchRunner


class PromptCache:
    """Sequence 0 of a runner and the tokens whose cells it holds."""

    def __init__(self, runner: BatchRunner) -> None:
        self.runner = runner
        self.tokens: list[int] = []
        self.aligned = 0  # leading tokens decoded as whole n_batch chunks from position 0

    def reset(self) -> None:
        """Forget everything (the next prompt is decoded whole)."""
        self.runner.clear()
        self.tokens = []
        self.aligned = 0

    def prefill(
        self, tokens: Sequence[int], *, all_logits: bool = False, repeatable: bool = False
    ) -> int:
        """Make the cache hold `tokens`, reusing the common prefix; return the reused count.

        The last token is always (re)decoded so its logits are fresh; with `all_logits`
        every newly decoded token keeps its logits (the caller reads them at once). A
        `repeatable` (seeded or greedy) prompt reuses only whole aligned chunks, so its
        cells are computed exactly as a fresh prefill would compute them.
        """
        keep = 0
        limit = min(len(self.tokens), len(tokens) - 1)
        while keep < limit and self.tokens[keep] == tokens[keep]:
            keep += 1
        if repeatable:
            keep = min(keep // self.runner.n_batch * self.runner.n_batch, self.aligned)
        if not self.runner.forget(0, keep):
            self.reset()
            keep = 0
        self.tokens = list(tokens[:keep])
        self.aligned = min(self.aligned, keep)
        self.extend(tokens[keep:], all_logits=all_logits, aligned=repeatable)
        return keep

    def extend(
        self, tokens: Sequence[int], *, all_logits: bool = False, aligned: bool = False
    ) -> None:
        """Decode more tokens into sequence 0 (logits for the last one, or for all), in
        pieces of n_batch; with `aligned`, cut at multiples of n_batch from position 0."""
        n_batch = self.runner.n_batch
        last = len(tokens) - 1
        start = 0
        while start < len(tokens):
            base = len(self.tokens)
            size = n_batch - base % n_batch if aligned else n_batch
            piece = tokens[start : start + size]
            entries = [
                (t, base + j, (0,), all_logits or start + j == last) for j, t in enumerate(piece)
            ]
            try:
                self.runner.decode(entries)
            except RuntimeFailure:
                self.reset()
                raise
            self.tokens.extend(piece)
            if self.aligned == base and base % n_batch == 0 and len(piece) == n_batch:
                self.aligned += n_batch
            start += len(piece)
