"""The transformers backend: causal language models run by PyTorch on the CPU, from a Hugging
Face folder or from a GGUF file (transformers' GGUF loader dequantizes it to fp32).

It serves `slm run --backend transformers`, scoring and generation with the same stats and
stop handling as llama.cpp (`SequenceOutput`); it has no multi-sequence runner, so the
server's batching engine stays on llama.cpp. torch and transformers are imported only here.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slmkit.catalog.entries import ModelEntry
from slmkit.errors import InputError, InvalidOptionsError, ModelFormatError
from slmkit.options import GenerationOptions
from slmkit.runtime.base import Backend, Chunk, FinishReason, LogLikelihood, TokenLogprob
from slmkit.runtime.decoding import SequenceOutput, log_softmax, rows_logprobs, top_logprobs
from slmkit.runtime.encoder import import_torch
from slmkit.runtime.generate import score_rows


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte <-> printable-character table, inverted (byte-level BPE vocabularies)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def token_bytes(tokenizer: Any) -> list[bytes]:
    """Each token id's exact bytes, so a character split across tokens is rebuilt as
    llama.cpp's `piece` does (byte-level BPE, or SentencePiece with <0xNN> byte tokens)."""
    decoder = json.loads(tokenizer.backend_tokenizer.to_str()).get("decoder") or {}
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    if decoder.get("type") == "ByteLevel":
        table = _byte_decoder()
        return [bytes(table.get(ch, 63) for ch in (t or "")) for t in tokens]
    out = []
    for t in tokens:
        t = t or ""
        if len(t) == 6 and t.startswith("<0x") and t.endswith(">"):
            out.append(bytes([int(t[3:5], 16)]))
        else:
            out.append(t.replace("\u2581", " ").encode())
    return out


class TransformersBackend(Backend):
    """A causal LM in PyTorch (fp32), one sequence at a time with a key/value cache."""

    name = "transformers"

    def __init__(self, model: Any, tokenizer: Any, n_ctx: int) -> None:
        self.torch = import_torch()
        self.model, self.tokenizer = model, tokenizer
        self._n_ctx = n_ctx
        self._bytes = token_bytes(tokenizer)
        extra = getattr(model.generation_config, "eos_token_id", None)
        extra = extra if isinstance(extra, list) else [extra]
        self._eog = {int(t) for t in (tokenizer.eos_token_id, *extra) if t is not None}

    @classmethod
    def load(cls, path: Path, entry: ModelEntry, *, n_ctx: int, n_threads: int) -> Backend:
        torch = import_torch()
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        torch.set_num_threads(n_threads)
        path = Path(path)
        kw: dict[str, Any] = {}
        folder = path
        if path.is_file():
            folder, kw = path.parent, {"gguf_file": path.name}
        try:
            # The GGUF loader draws its own tqdm bar on stderr, which no setting turns off.
            with contextlib.redirect_stderr(io.StringIO()):
                tokenizer = AutoTokenizer.from_pretrained(str(folder), **kw)
                model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, **kw)
        except (OSError, ValueError, KeyError) as e:
            raise ModelFormatError(f"transformers cannot load {path}: {e}") from e
        return cls(model.eval(), tokenizer, n_ctx)

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        ids: list[int] = self.tokenizer(text, add_special_tokens=add_special)["input_ids"]
        return ids

    def detokenize(self, tokens: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(tokens)))

    def chat_template(self) -> str | None:
        template = self.tokenizer.chat_template
        return template if isinstance(template, str) else None

    def special_tokens(self) -> tuple[str, str]:
        return self.tokenizer.bos_token or "", self.tokenizer.eos_token or ""

    def _forward(self, ids: Sequence[int], past: Any = None) -> tuple[np.ndarray, Any]:
        with self.torch.inference_mode():
            out = self.model(input_ids=self.torch.tensor([list(ids)]), cache=past, use_cache=True)
        return out.logits[0].float().numpy(), out.cache

    def _sample(
        self, logits: np.ndarray, o: GenerationOptions, rng: np.random.Generator, recent: list[int]
    ) -> int:
        """llama.cpp's chain in numpy: repeat penalty, top-k, top-p, min-p, temperature."""
        z = logits.astype(np.float64)
        if o.repeat_penalty != 1.0 and recent:
            seen = np.unique(recent[-64:])
            z[seen] = np.where(z[seen] > 0, z[seen] / o.repeat_penalty, z[seen] * o.repeat_penalty)
        if o.temperature <= 0:
            return int(z.argmax())
        if o.top_k:
            z[z < np.sort(z)[-o.top_k]] = -np.inf
        p = np.exp(z - z.max())
        p /= p.sum()
        if o.top_p < 1.0:
            order = np.argsort(-p)
            cut = order[int(np.searchsorted(np.cumsum(p[order]), o.top_p)) + 1 :]
            p[cut] = 0.0
        if o.min_p > 0:
            p[p < o.min_p * p.max()] = 0.0
        p = p ** (1.0 / o.temperature)
        return int(rng.choice(len(p), p=p / p.sum()))

    def stream_tokens(self, tokens: Sequence[int], options: GenerationOptions) -> Iterator[Chunk]:
        if not tokens:
            raise InputError("cannot generate from an empty token list")
        if options.grammar:
            raise InvalidOptionsError("grammar-constrained output needs the llamacpp backend")
        out = SequenceOutput(options, len(tokens))
        recent = list(tokens)
        logits, past = self._forward(tokens)
        row = logits[-1]
        out.prefilled()
        rng = np.random.default_rng(options.seed)
        reason: FinishReason = "length"
        for _ in range(min(options.max_tokens, self._n_ctx - len(tokens))):
            tok = self._sample(row, options, rng, recent)
            recent.append(tok)
            k = options.logprobs
            lps = top_logprobs(row, tok, k, self._text) if k is not None else ()
            chunk, done = out.token(tok, self._bytes[tok], tok in self._eog, lps)
            if chunk is not None:
                yield chunk
            if done is not None:
                reason = done
                break
            logits, past = self._forward([tok], past)
            row = logits[-1]
        yield out.finish(reason)

    def _text(self, tok: int) -> str:
        return self._bytes[tok].decode("utf-8", errors="replace")

    def loglikelihood(self, context: Sequence[int], continuation: Sequence[int]) -> LogLikelihood:
        if not context or not continuation:
            raise InputError("loglikelihood needs a non-empty context and continuation")
        logits, _ = self._forward([*context, *continuation[:-1]])
        rows = logits[len(context) - 1 :]
        return score_rows(log_softmax(rows), continuation)

    def prompt_logprobs(self, tokens: Sequence[int], k: int) -> list[TokenLogprob]:
        if len(tokens) < 2:
            return []
        logits, _ = self._forward(tokens[:-1])
        return rows_logprobs(log_softmax(logits), tokens[1:], k, self._text)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vecs = []
        with self.torch.inference_mode():
            for text in texts:
                ids = self.torch.tensor([self.tokenize(text)])
                hidden = self.model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
                v = hidden[0].mean(dim=0).float().numpy()
                vecs.append((v / max(float(np.linalg.norm(v)), 1e-12)).tolist())
        return vecs

    def close(self) -> None:
        self.model = None
