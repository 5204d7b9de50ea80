"""The user-facing model object: chat, stream, complete, score, embed."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.catalog.entries import ModelEntry
from slmkit.errors import (
    ChatTemplateError,
    ContextOverflowError,
    EmptyPromptError,
    InputError,
    RuntimeFailure,
)
from slmkit.options import GenerationOptions, make_options, with_defaults
from slmkit.runtime.base import Backend, Chunk, GenerationStats, LogLikelihood

Message = Mapping[str, str]
_ROLES = {"system", "user", "assistant"}


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished generation: the joined text of the streamed chunks."""

    text: str
    finish_reason: str
    stats: GenerationStats


def join(chunks: Iterator[Chunk]) -> Completion:
    """Collect a chunk stream into one Completion."""
    parts: list[str] = []
    for c in chunks:
        parts.append(c.text)
        if c.finish_reason is not None:
            assert c.stats is not None
            return Completion("".join(parts), c.finish_reason, c.stats)
    raise RuntimeFailure("generation ended without a final chunk")


class Model:
    """A loaded model. Build one with `slmkit.load(id)`."""

    def __init__(self, entry: ModelEntry, backend: Backend, path: Path) -> None:
        self.entry = entry
        self.backend = backend
        self.path = path
        self.draft: Model | None = None  # speculative decoding's draft model (load(draft=))
        self._formatter: Any = None

    @property
    def id(self) -> str:
        return self.entry.id

    @property
    def n_ctx(self) -> int:
        return self.backend.n_ctx

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Free the native model and context (and the draft model's)."""
        self.backend.close()
        if self.draft is not None:
            self.draft.close()
            self.draft = None

    def count_tokens(self, text: str) -> int:
        return len(self.backend.tokenize(text))

    # --- prompts ----------------------------------------------------------------------------
    def format_chat(self, messages: Sequence[Message], *, system: str | None = None) -> str:
        """Render messages with the model's own chat template (adds the generation prompt).

        `system` overrides the default system prompt; "" sends none (the template's own
        default, if it has one, then applies).
        """
        msgs = _check_messages(messages)
        if msgs[0]["role"] != "system":
            sys_prompt = self.entry.default_system_prompt if system is None else system
            if sys_prompt:
                msgs = [{"role": "system", "content": sys_prompt}, *msgs]
        elif system:
            msgs = [{"role": "system", "content": system}, *msgs[1:]]
        return str(self._chat_formatter()(messages=msgs).prompt)

    def _chat_formatter(self) -> Any:
        if self._formatter is None:
            template = self.backend.chat_template()
            if not template:
                raise ChatTemplateError(
                    f"{self.id} has no chat template (it is a base model): use "
                    "`complete`/`slm run --raw` for plain text completion"
                )
            from slmkit.runtime.chat_template import chat_formatter

            bos, eos = self.backend.special_tokens()
            self._formatter = chat_formatter(template, bos=bos, eos=eos)
        return self._formatter

    def fit(self, tokens: list[int], o: GenerationOptions) -> tuple[list[int], int]:
        """Apply the overflow policy: return (tokens to run, tokens dropped)."""
        need = len(tokens) + o.max_tokens
        if need <= self.n_ctx:
            return tokens, 0
        msg = (
            f"prompt is {len(tokens)} tokens + max_tokens {o.max_tokens} = {need} > context "
            f"window {self.n_ctx}; shorten the prompt, lower max_tokens, raise n_ctx, "
            "or use overflow='truncate'"
        )
        if o.overflow == "error" or o.max_tokens >= self.n_ctx:
            raise ContextOverflowError(
                msg, prompt_tokens=len(tokens), n_ctx=self.n_ctx, max_tokens=o.max_tokens
            )
        keep = self.n_ctx - o.max_tokens
        return tokens[len(tokens) - keep :], len(tokens) - keep

    def _run(self, tokens: list[int], dropped: int, o: GenerationOptions) -> Iterator[Chunk]:
        for chunk in self.backend.stream_tokens(tokens, o):
            if chunk.stats is not None:
                chunk.stats.dropped_tokens = dropped
            yield chunk

    # --- generation -------------------------------------------------------------------------
    def stream(
        self,
        prompt: str | Sequence[Message],
        *,
        system: str | None = None,
        options: GenerationOptions | None = None,
        **kw: Any,
    ) -> Iterator[Chunk]:
        """Stream chunks: a str is completed as raw text, a message list is chatted."""
        o = self.options(options, **kw)
        if isinstance(prompt, str):
            return self._stream_text(prompt, o)
        return self._stream_chat(prompt, system, o)

    def options(self, options: GenerationOptions | None = None, **kw: Any) -> GenerationOptions:
        """The caller's options, the model card's sampling for what they leave unset."""
        return with_defaults(make_options(options, **kw), self.entry.generation_defaults)

    def _stream_text(self, prompt: str, o: GenerationOptions) -> Iterator[Chunk]:
        if not prompt.strip():
            raise EmptyPromptError("the prompt is empty")
        tokens, dropped = self.fit(self.backend.tokenize(prompt), o)
        return self._run(tokens, dropped, o)

    def _stream_chat(
        self, messages: Sequence[Message], system: str | None, o: GenerationOptions
    ) -> Iterator[Chunk]:
        msgs = _check_messages(messages)
        tokens = self.backend.tokenize(self.format_chat(msgs, system=system))
        dropped = 0
        # Truncation for chat drops whole turns (oldest first), never cuts the template.
        while len(tokens) + o.max_tokens > self.n_ctx and o.overflow == "truncate":
            first = 1 if msgs[0]["role"] == "system" else 0
            if len(msgs) - first <= 1:
                break
            msgs = msgs[:first] + msgs[first + 1 :]
            shorter = self.backend.tokenize(self.format_chat(msgs, system=system))
            dropped += len(tokens) - len(shorter)
            tokens = shorter
        if len(tokens) + o.max_tokens > self.n_ctx:
            self.fit(tokens, o.model_copy(update={"overflow": "error"}))
        return self._run(tokens, dropped, o)

    def complete(
        self, prompt: str, *, options: GenerationOptions | None = None, **kw: Any
    ) -> Completion:
        """Complete raw text (no chat template); returns the joined result."""
        return join(self._stream_text(prompt, self.options(options, **kw)))

    def chat(
        self,
        messages: Sequence[Message] | str,
        *,
        system: str | None = None,
        options: GenerationOptions | None = None,
        **kw: Any,
    ) -> Completion:
        """Answer a conversation (or one user message) with the model's chat template."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        return join(self._stream_chat(messages, system, self.options(options, **kw)))

    # --- scoring and embeddings ---------------------------------------------------------------
    def pair_tokens(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Tokenize jointly so the boundary is natural; return (context, continuation) ids."""
        if not context or not continuation:
            raise EmptyPromptError("context and continuation must both be non-empty")
        whole = self.backend.tokenize(context + continuation)
        ctx = self.backend.tokenize(context)
        n = len(ctx)
        # Joint tokenization may merge across the boundary; keep at least one scored token.
        while n > 0 and whole[:n] != ctx[:n]:
            n -= 1
        n = min(n, len(whole) - 1)
        if n < 1:
            raise InputError("context tokenizes to nothing; give a longer context")
        return whole[:n], whole[n:]

    def loglikelihood(self, context: str, continuation: str) -> LogLikelihood:
        """log P(continuation | context), summed over the continuation's tokens."""
        return self.backend.loglikelihood(*self.pair_tokens(context, continuation))

    def loglikelihood_many(self, pairs: Sequence[tuple[str, str]]) -> list[LogLikelihood]:
        """Score many (context, continuation) pairs in shared batches; same order as given."""
        return self.backend.loglikelihood_many([self.pair_tokens(c, x) for c, x in pairs])

    def embed(self, texts: str | Sequence[str]) -> list[list[float]]:
        """Embed one text or many; returns one normalised vector per text."""
        batch = [texts] if isinstance(texts, str) else list(texts)
        if not batch or any(not t.strip() for t in batch):
            raise EmptyPromptError("texts to embed must be non-empty")
        return self.backend.embed(batch)


def _check_messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    if not messages:
        raise EmptyPromptError("the message list is empty")
    out = []
    for i, m in enumerate(messages):
        role, content = m.get("role"), m.get("content")
        if role not in _ROLES or not isinstance(content, str):
            raise InputError(
                f"message {i} must have role in {sorted(_ROLES)} and string content, got {m!r}"
            )
        out.append({"role": role, "content": content})
    if not any(m["content"].strip() for m in out if m["role"] == "user"):
        raise EmptyPromptError("no user message with content")
    return out
