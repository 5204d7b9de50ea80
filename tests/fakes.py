"""A fake backend for the model-free test tier: deterministic tokens, scripted
log-likelihoods and embeddings, no weights.

Tokens are bytes (id = byte value, EOS = 256). The fake language model answers a prompt
with `reply(prompt_text)` and then EOS; each next token is computed from what the
sequence's cache holds, so a scheduler that corrupts a cache (wrong positions, a kept
prefix that is not the prompt's) produces wrong text or fails the contiguity check.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slmkit.catalog.entries import LocalSource, ModelEntry
from slmkit.catalog.store import Store
from slmkit.errors import RuntimeFailure
from slmkit.options import GenerationOptions
from slmkit.runtime import generate, register_backend
from slmkit.runtime.base import Backend, BatchRunner, Chunk, Entry, LogLikelihood, TokenLogprob
from slmkit.runtime.speculate import CostModel, DraftModel, make_draft

EOS = 256
ASSISTANT = b"<|assistant|>"
N_VOCAB = 257
TEMPLATE = (
    "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def default_reply(prompt: str) -> str:
    """'You said: <last user message>' for chats; raw text gets its words reversed. A
    classification question (tasks/classify.py's) is answered with the first label word found
    in its text, else '?' (default_score's rule, for scoring through logits)."""
    asked = re.search(r"Answer with one of: (.*?)\.\n\n(?:.*\n)?Text: (.*?)\n", prompt, re.S)
    if asked:
        words = asked.group(1).split(", ")
        return next((w for w in words if w.lower() in asked.group(2).lower()), "?")
    users = re.findall(r"<\|user\|>(.*?)\n", prompt)
    if users:
        return f"You said: {users[-1].strip()} (café)"
    return " " + " ".join(reversed(prompt.split()))


def default_score(context: str, continuation: str) -> float:
    """Per-token log-probability: a label word found in the text to classify is likely."""
    text = context.rsplit("Text:", 1)[-1].lower()
    return -0.2 if continuation.strip().lower() in text else -2.0


class FakeRunner(BatchRunner):
    """Per-sequence caches as token lists; logits from the fake model's next token."""

    def __init__(
        self, reply: Callable[[str], str], *, n_ctx: int, n_seq: int, n_batch: int = 512
    ) -> None:
        self.reply = reply
        self.n_ctx, self.n_seq, self.n_batch, self.n_vocab = n_ctx, n_seq, n_batch, N_VOCAB
        self.cache: dict[int, list[int]] = {s: [] for s in range(n_seq)}
        self.prompt_end: dict[int, int | None] = {s: None for s in range(n_seq)}
        self.out: dict[int, tuple[int, int]] = {}  # batch index -> (seq, cache length)
        # Like llama.cpp, logits live in one buffer that the next decode overwrites.
        self._rows = np.zeros((n_batch, N_VOCAB), dtype=np.float32)
        self.last_out = -1
        self.decodes = 0
        self.fail_next = 0  # decodes to fail (tests of failure handling)
        self.delay_s = 0.0  # time one decode takes (tests of concurrency)
        self.closed = False

    def decode(self, entries: Sequence[Entry]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeFailure("fake decode failure")
        if self.delay_s:
            time.sleep(self.delay_s)
        assert 0 < len(entries) <= self.n_batch, "batch size out of range"
        self.out = {}
        for j, (tok, pos, seqs, want) in enumerate(entries):
            for s in seqs:
                assert pos == len(self.cache[s]), f"seq {s}: pos {pos} != {len(self.cache[s])}"
                self.cache[s].append(tok)
            if want:
                for s in seqs:
                    if self.prompt_end[s] is None:
                        self.prompt_end[s] = pos + 1
                self.out[j] = (seqs[0], pos + 1)
                self.last_out = j
        for j, (s, upto) in self.out.items():
            self._rows[j] = 0.0
            self._rows[j, self._next(s, upto)] = 8.0
        if self.per_seq:  # like llama.cpp's per-sequence streams: n_ctx // n_seq cells each
            assert max(map(len, self.cache.values())) <= self.n_ctx // self.n_seq
        else:
            assert sum(map(len, self.cache.values())) <= self.n_ctx
        self.decodes += 1

    def _next(self, seq: int, upto: int) -> int:
        hist = self.cache[seq][:upto]
        end = self.prompt_end[seq] or upto
        # a chat's prompt ends after its last assistant header, however its cells were kept
        # or dropped (a scoring probe decodes after the prompt, then drops those cells)
        marker = bytes(hist).rfind(ASSISTANT) if max(hist, default=0) < 256 else -1
        if marker >= 0:
            end = marker + len(ASSISTANT)
        prompt = bytes(t for t in hist[:end] if t < 256).decode("utf-8", errors="replace")
        target = self.reply(prompt).encode()
        n = upto - end
        return target[n] if n < len(target) else EOS

    def logits(self, idx: int) -> np.ndarray:
        return self._rows[self.last_out if idx == -1 else idx]

    def logit_rows(self, n: int) -> np.ndarray:
        # llama.cpp returns output rows in batch order, packed: copy them together here.
        packed = self._rows[sorted(self.out)[:n]]
        self._rows[:n] = packed
        return self._rows[:n]

    def new_sampler(self, options: GenerationOptions) -> Any:
        if options.grammar == "reject":
            raise RuntimeFailure("the fake rejects this grammar")
        return np.random.default_rng(options.seed) if options.temperature > 0 else None

    def free_sampler(self, sampler: Any) -> None:
        return None

    def sample(self, sampler: Any, idx: int) -> int:
        row = self.logits(idx)
        if sampler is None:
            return int(row.argmax())
        p = np.exp(row - row.max())
        return int(sampler.choice(N_VOCAB, p=p / p.sum()))

    def piece(self, tok: int) -> bytes:
        return bytes([tok]) if tok < 256 else b""

    def is_eog(self, tok: int) -> bool:
        return tok == EOS

    def forget(self, seq: int, start: int = 0) -> bool:
        self.cache[seq] = self.cache[seq][:start]
        end = self.prompt_end[seq]
        if end is not None and start <= end:
            self.prompt_end[seq] = None
        return True

    def copy_seq(self, src: int, dst: int) -> None:
        self.cache[dst] = list(self.cache[src])

    def clear(self) -> None:
        for s in self.cache:
            self.forget(s)

    def close(self) -> None:
        self.closed = True


class FakeBackend(Backend):
    name = "fake"
    reply: Callable[[str], str] = staticmethod(default_reply)
    score: Callable[[str, str], float] = staticmethod(default_score)

    def __init__(self, entry: ModelEntry, path: Path, n_ctx: int = 2048) -> None:
        self.entry, self.path, self._n_ctx = entry, path, n_ctx
        self.runner = FakeRunner(self.reply, n_ctx=n_ctx, n_seq=1)
        self._cache = generate.PromptCache(self.runner)
        self.runners: list[FakeRunner] = []
        self.closed = False
        # speculation drafts whatever it costs here: fake timings say nothing about hardware
        self.costs = CostModel(guard=False)
        self.draft: DraftModel | None = None

    @classmethod
    def load(cls, path: Path, entry: ModelEntry, *, n_ctx: int, n_threads: int) -> Backend:
        return cls(entry, path, n_ctx)

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return list(text.encode())

    def detokenize(self, tokens: Sequence[int]) -> str:
        return bytes(t for t in tokens if t < 256).decode("utf-8", errors="replace")

    def chat_template(self) -> str | None:
        return TEMPLATE if self.entry.chat_template != "none" else None

    def special_tokens(self) -> tuple[str, str]:
        return "", ""

    def stream_tokens(self, tokens: Sequence[int], options: GenerationOptions) -> Iterator[Chunk]:
        return generate.stream(self._cache, tokens, options, self.draft, self.costs)

    def attach_draft(self, draft: Backend | None) -> None:
        self.draft = None if draft is None else make_draft(self.runner, draft, self.n_ctx)

    def prompt_logprobs(self, tokens: Sequence[int], k: int) -> list[TokenLogprob]:
        return generate.prompt_logprobs(self._cache, tokens, k)  # the real code, fake logits

    def loglikelihood(self, context: Sequence[int], continuation: Sequence[int]) -> LogLikelihood:
        per = self.score(self.detokenize(context), self.detokenize(continuation))
        vals = (per,) * len(continuation)
        return LogLikelihood(sum(vals), len(vals), per > -1.0, vals)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [list(map(float, hashed_vector(t))) for t in texts]

    def batch_runner(
        self, *, n_ctx: int, n_seq: int, n_batch: int = 512, per_seq: bool = False
    ) -> BatchRunner:
        runner = FakeRunner(self.reply, n_ctx=n_ctx, n_seq=n_seq, n_batch=n_batch)
        runner.per_seq = per_seq
        self.runners.append(runner)
        return runner

    def close(self) -> None:
        self.closed = True


def hashed_vector(text: str, dim: int = 64) -> np.ndarray:
    """Bag of hashed lower-case words, L2-normalised: shared words mean similar vectors."""
    v = np.zeros(dim)
    for w in re.findall(r"\w+", text.lower()):
        v[int(hashlib.sha256(w.encode()).hexdigest(), 16) % dim] += 1.0
    n = np.linalg.norm(v)
    return v / n if n else v


class FakeEmbedder:
    """Stands in for MiniLM (same interface as tasks.embed's embedders)."""

    name, dim = "fake-embedder", 64

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([hashed_vector(t) for t in texts]).astype(np.float32)


register_backend("fake", FakeBackend)


def fake_entry(model_id: str = "fake-chat", *, chat: bool = True, n_ctx: int = 2048) -> ModelEntry:
    return ModelEntry(
        id=model_id,
        family="fake",
        params=1000,
        context_length=n_ctx,
        license="apache-2.0",
        format="gguf",
        quantization="F32",
        backend="fake",
        chat_template="gguf" if chat else "none",
        filename="fake.bin",
        size_bytes=4,
        sources=(LocalSource(path="/nonexistent/fake.bin"),),
        imported=True,
    )


def install_fake(store: Store, entry: ModelEntry) -> Path:
    """Put a fake model in a store the way a pull leaves one: the file and its manifest."""
    d = store.model_dir(entry.id)
    d.mkdir(parents=True, exist_ok=True)
    (d / entry.filename).write_bytes(b"fake")
    manifest = {
        "id": entry.id,
        "filename": entry.filename,
        "size_bytes": 4,
        "sha256": hashlib.sha256(b"fake").hexdigest(),
        "origin": "test",
        "entry": entry.model_dump(mode="json"),
    }
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d / entry.filename


def stalled_stream(port: int, body: dict[str, Any], path: str = "/v1/chat/completions") -> Any:
    """A client that asks for a streamed completion, reads the first bytes, then stops
    reading (a 4 KiB receive buffer, so the server's writes back up soon). Returns the open
    socket; close it to end the stall."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    data = json.dumps({**body, "stream": True}).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    sock.sendall(head + data)
    got = sock.recv(1024)
    assert got.startswith(b"HTTP/1.1 200"), got[:200]
    return sock
