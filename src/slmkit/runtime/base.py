"""The small interface every runtime backend implements, and the chunks they stream."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from slmkit.catalog.entries import ModelEntry
from slmkit.errors import BackendUnavailableError
from slmkit.options import GenerationOptions

FinishReason = Literal["stop", "length", "cancelled", "error"]


@dataclass(slots=True)
class GenerationStats:
    """Timings and counts for one generation; benchmarks read these same fields."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    dropped_tokens: int = 0
    completion_tokens: int = 0
    prompt_s: float = 0.0
    ttft_s: float = 0.0
    decode_s: float = 0.0
    total_s: float = 0.0
    drafted_tokens: int = 0  # prompt lookup: tokens proposed
    accepted_tokens: int = 0  # ...and kept

    @property
    def tokens_per_s(self) -> float:
        """Decode rate after the first token (wall clock, sampling included)."""
        n = self.completion_tokens - 1
        return n / self.decode_s if n > 0 and self.decode_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """A generated token's log-probability and the most likely alternatives."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()
    eog: bool = False  # the end-of-generation token (no text; completions report it)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of streamed output. The last chunk has finish_reason and stats set."""

    text: str
    token_ids: tuple[int, ...] = ()
    finish_reason: FinishReason | None = None
    stats: GenerationStats | None = None
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class LogLikelihood:
    """log P(continuation | context), summed over the continuation's tokens."""

    logprob: float
    n_tokens: int
    is_greedy: bool
    token_logprobs: tuple[float, ...] = field(default=())


# One batch entry: (token, position, sequence ids it belongs to, whether to keep its logits).
Entry = tuple[int, int, tuple[int, ...], bool]


class BatchRunner(ABC):
    """A context of one loaded model holding up to `n_seq` sequences in `n_ctx` cache cells:
    shared by all of them (`per_seq` False), or `n_ctx // n_seq` of them per sequence.

    The one place a backend exposes its token-level machinery: batch decoding, samplers,
    token text, logits and cache edits. The single-stream loop, the engine and batched
    scoring are written against this interface only. `idx` arguments index the entries of
    the last `decode` that asked for logits (-1: the last of them).
    """

    n_ctx: int
    n_seq: int
    n_batch: int
    n_vocab: int
    per_seq: bool = False

    @abstractmethod
    def decode(self, entries: Sequence[Entry]) -> None:
        """Decode at most n_batch entries in one forward pass; RuntimeFailure on failure."""

    @abstractmethod
    def new_sampler(self, options: GenerationOptions) -> Any:
        """An opaque sampler handle for one sequence (free it with `free_sampler`)."""

    @abstractmethod
    def free_sampler(self, sampler: Any) -> None:
        """Release a sampler."""

    @abstractmethod
    def sample(self, sampler: Any, idx: int) -> int:
        """Sample a token from the logits of output `idx` of the last decode."""

    @abstractmethod
    def logits(self, idx: int) -> np.ndarray:
        """Raw logits (n_vocab floats) of output `idx` of the last decode; may be a view that
        the next decode overwrites (copy to keep)."""

    @abstractmethod
    def logit_rows(self, n: int) -> np.ndarray:
        """The last decode's first `n` outputs' logits, shape (n, n_vocab); a view, as above."""

    @abstractmethod
    def piece(self, tok: int) -> bytes:
        """A token's text as bytes (a multi-byte character may span several tokens)."""

    @abstractmethod
    def is_eog(self, tok: int) -> bool:
        """Whether the token ends generation (EOS, end of turn)."""

    @abstractmethod
    def forget(self, seq: int, start: int = 0) -> bool:
        """Drop sequence `seq`'s cache cells from position `start` on; False if it can't."""

    @abstractmethod
    def copy_seq(self, src: int, dst: int) -> None:
        """Make sequence `dst` share all of `src`'s cells."""

    @abstractmethod
    def clear(self) -> None:
        """Empty the cache."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the context (a runner over a borrowed context releases nothing)."""


class Backend(ABC):
    """A loaded model. One module per backend implements this; see runtime/llamacpp.py."""

    name: str = ""

    @classmethod
    @abstractmethod
    def load(cls, path: Path, entry: ModelEntry, *, n_ctx: int, n_threads: int) -> Backend:
        """Load the model file; raise ModelFormatError if it cannot be loaded."""

    @property
    @abstractmethod
    def n_ctx(self) -> int:
        """Context window in tokens."""

    @abstractmethod
    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        """Text to token ids (special-token text is parsed)."""

    @abstractmethod
    def detokenize(self, tokens: Sequence[int]) -> str:
        """Token ids to text."""

    @abstractmethod
    def chat_template(self) -> str | None:
        """The Jinja chat template embedded in the model, if any."""

    @abstractmethod
    def special_tokens(self) -> tuple[str, str]:
        """(bos_text, eos_text) for chat templates."""

    @abstractmethod
    def stream_tokens(self, tokens: Sequence[int], options: GenerationOptions) -> Iterator[Chunk]:
        """Generate after `tokens`, yielding chunks; the last one carries stats."""

    @abstractmethod
    def loglikelihood(self, context: Sequence[int], continuation: Sequence[int]) -> LogLikelihood:
        """Score continuation tokens given context tokens."""

    def loglikelihood_many(
        self, requests: Sequence[tuple[Sequence[int], Sequence[int]]]
    ) -> list[LogLikelihood]:
        """Score many (context, continuation) pairs; backends may batch them."""
        return [self.loglikelihood(c, x) for c, x in requests]

    def prompt_logprobs(self, tokens: Sequence[int], k: int) -> list[TokenLogprob]:
        """Every token after the first: its log-probability given the tokens before it, and
        the k most likely tokens there (a completion's `echo` with `logprobs`)."""
        raise BackendUnavailableError(f"the {self.name} backend does not score prompt tokens")

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One L2-normalised vector per text."""

    def attach_draft(self, draft: Backend | None) -> None:
        """Speculative decoding with a smaller model of the same vocabulary (None: detach);
        InputError if the vocabularies differ."""
        raise BackendUnavailableError(f"the {self.name} backend has no speculative decoding")

    def batch_runner(
        self, *, n_ctx: int, n_seq: int, n_batch: int = 512, per_seq: bool = False
    ) -> BatchRunner:
        """A new multi-sequence context over the loaded weights (the engine runs on one);
        `per_seq`: each sequence its own `n_ctx // n_seq` cells (BatchRunner)."""
        raise BackendUnavailableError(f"the {self.name} backend has no batched runner")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release native resources."""
