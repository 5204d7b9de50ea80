"""The engine's decisions as plain Python (no llama.cpp): admission, slot choice, kept
prefixes, cache accounting and batch composition.

Shaped like vLLM's scheduler: `schedule()` says what the next forward pass holds and
which cache cells to drop first; `update_from_output()` takes what was sampled and
releases the sequences that finished. The engine calls both under its one lock and runs
the plan on a `BatchRunner` between them, so this module is tested without a model.

Admission reserves prompt + max_tokens cache cells per sequence, so a decode never runs
out of cache. Prefix reuse: a finished sequence's slot keeps its prompt's cells (at most
`keep_prefix`); a new request takes the free slot whose kept prompt shares the longest
prefix with its own and prefills only the rest. Kept cells count against the cache and
the least recently kept give way first when room is needed.

With `per_seq` each slot has its own n_ctx // n_seq cells (llama.cpp's per-sequence KV
streams): a request must fit one slot, and kept prefixes never compete for room.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

from slmkit.errors import ContextOverflowError, EngineFullError, InputError
from slmkit.runtime.base import Entry, FinishReason

Forget = tuple[int, int]  # (slot, first position to drop)


@dataclass(eq=False)
class Request:
    """One generation as the scheduler sees it. `state` belongs to the engine."""

    tokens: list[int]
    max_tokens: int
    state: Any = None
    cancelled: bool = False
    slot: int = -1
    n_prefilled: int = 0
    n_past: int = 0
    last: int = -1
    # Seeded or greedy: prefilled from the start in fixed chunks, reusing only cells that
    # were computed in those same chunks, so its text never depends on what came before.
    repeatable: bool = False
    aligned: int = 0  # leading prompt tokens computed in full chunks aligned at position 0
    # Bulk work (a summary's chunks): admitted and prefilled after interactive requests, so
    # a chat arriving beside it is not queued behind its prompts.
    background: bool = False
    # Speculative decoding: tokens drafted to follow `last` in the next step (set by the
    # engine before schedule()), and how many of them the samples kept (set after it).
    draft: list[int] = field(default_factory=list)
    kept: int = 0
    # Scoring (log-likelihoods, no sampling): tokens decoded after the prompt in the next
    # step, all with logits, their cells dropped after it (set by the engine before
    # schedule(), like a draft).
    probe: list[int] = field(default_factory=list)

    @property
    def reserve(self) -> int:
        return len(self.tokens) + self.max_tokens


@dataclass
class Plan:
    """One step: cache cells to drop, then the batch to decode and who samples where."""

    forget: list[Forget] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    outputs: list[tuple[Request, int]] = field(default_factory=list)  # (request, batch index)
    admitted: list[Request] = field(default_factory=list)
    finished: list[tuple[Request, FinishReason]] = field(default_factory=list)


class Scheduler:
    """n_seq slots sharing n_ctx cache cells (`per_seq`: n_ctx // n_seq each); at most
    n_batch tokens per step."""

    def __init__(
        self,
        *,
        n_seq: int,
        n_ctx: int,
        n_batch: int = 512,
        max_waiting: int = 64,
        keep_prefix: int = 1024,
        per_seq: bool = False,
    ) -> None:
        self.n_seq, self.n_ctx, self.n_batch, self.per_seq = n_seq, n_ctx, n_batch, per_seq
        self.max_waiting, self.keep_prefix = max_waiting, keep_prefix
        self.waiting: collections.deque[Request] = collections.deque()
        self.running: list[Request] = []
        self.free = list(range(n_seq))
        self.reserved = 0
        self.kept: dict[int, list[int]] = {}  # slot -> tokens its cells hold, oldest first
        self.kept_aligned: dict[int, int] = {}  # slot -> how many of those are chunk-aligned
        self.reused_tokens = 0

    @property
    def max_request(self) -> int:
        """Cache cells one request may use (prompt + max_tokens)."""
        return self.n_ctx // self.n_seq if self.per_seq else self.n_ctx

    @property
    def chunk(self) -> int:
        """Prompt chunk size: every prefill is cut at multiples of it from position 0, and a
        step always has room for one full chunk beside every sequence's next token."""
        return max(1, self.n_batch - self.n_seq)

    # --- intake -----------------------------------------------------------------------------
    def add(self, req: Request) -> None:
        """Queue a request; ContextOverflowError if it could never fit, EngineFullError
        when the waiting queue is full."""
        if not req.tokens:
            raise InputError("cannot generate from an empty token list")
        if req.reserve > self.max_request:
            per = f" per sequence ({self.n_ctx} / {self.n_seq})" if self.per_seq else ""
            raise ContextOverflowError(
                f"prompt {len(req.tokens)} + max_tokens {req.max_tokens} > engine context "
                f"{self.max_request}{per}",
                prompt_tokens=len(req.tokens),
                n_ctx=self.max_request,
                max_tokens=req.max_tokens,
            )
        if len(self.waiting) >= self.max_waiting + len(self.free):
            raise EngineFullError(f"{len(self.waiting)} requests already waiting")
        if req.background or not self.waiting or not self.waiting[-1].background:
            self.waiting.append(req)
        else:  # ahead of the queued background requests, behind other interactive ones
            first_bg = next(i for i, r in enumerate(self.waiting) if r.background)
            self.waiting.insert(first_bg, req)

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    @property
    def used_cells(self) -> int:
        return self.reserved + sum(len(v) for v in self.kept.values())

    # --- one step ---------------------------------------------------------------------------
    def schedule(self) -> Plan:
        """Drop cancelled requests, admit waiting ones, and compose the next batch: one
        next token per sequence past its prompt, then prompt chunks in the room left."""
        plan = Plan()
        for req in [r for r in self.running if r.cancelled]:
            plan.forget += self._release(req, "cancelled")
            plan.finished.append((req, "cancelled"))
        self._admit(plan)
        group = list(self.running)
        for req in group:
            if req.n_prefilled < len(req.tokens):
                continue
            # the next token (a draft's rows follow it), or a scoring request's probe
            rows = (req.last, *req.draft) if req.last >= 0 else req.probe
            if rows:
                plan.outputs.append((req, len(plan.entries)))
            for tok in rows:  # all with logits
                plan.entries.append((tok, req.n_past, (req.slot,), True))
                req.n_past += 1
        for req in sorted(group, key=lambda r: r.background):  # interactive prompts first
            room = self.n_batch - len(plan.entries)
            if req.n_prefilled < len(req.tokens) and room > 0:
                self._prefill_chunk(req, room, plan)
        if self.per_seq:
            _slot_order(plan)
        return plan

    def _prefill_chunk(self, req: Request, room: int, plan: Plan) -> None:
        to_boundary = self.chunk - req.n_prefilled % self.chunk
        take = min(to_boundary, len(req.tokens) - req.n_prefilled)
        take = min(take, room)  # a repeatable prompt runs alone: it always has the room
        if req.aligned == req.n_prefilled and take == self.chunk:
            req.aligned += take
        end = len(req.tokens) - 1
        for idx in range(req.n_prefilled, req.n_prefilled + take):
            if idx == end:
                plan.outputs.append((req, len(plan.entries)))
            plan.entries.append((req.tokens[idx], idx, (req.slot,), idx == end))
        req.n_prefilled += take
        req.n_past = req.n_prefilled

    def _admit(self, plan: Plan) -> None:
        while self.waiting and self.free:
            req = self.waiting[0]
            if req.cancelled:
                self.waiting.popleft()
                plan.finished.append((req, "cancelled"))
                continue
            slot, common = self.best_slot(req.tokens)
            aligned = min(common, self.kept_aligned.get(slot, 0)) // self.chunk * self.chunk
            if req.repeatable:
                common = aligned
            if not self._make_room(req.reserve, slot, plan):
                break  # wait for running sequences to free cache cells
            self.waiting.popleft()
            self.free.remove(slot)
            if len(self.kept.pop(slot, ())) > common:
                plan.forget.append((slot, common))
            req.slot = slot
            req.aligned = aligned
            req.n_prefilled = req.n_past = common
            self.reused_tokens += common
            self.reserved += req.reserve
            self.running.append(req)
            plan.admitted.append(req)

    def best_slot(self, tokens: list[int]) -> tuple[int, int]:
        """The free slot keeping the longest prefix of `tokens` (at most all but the last
        token, which must be decoded for logits), else the one keeping the least."""
        best, best_len = -1, -1
        # per_seq: lowest slots first on ties, so running slots stay consecutive (schedule)
        for slot in sorted(self.free) if self.per_seq else self.free:
            kept = self.kept.get(slot, ())
            n = 0
            limit = min(len(kept), len(tokens) - 1)
            while n < limit and kept[n] == tokens[n]:
                n += 1
            if n > best_len or (n == best_len and len(kept) < len(self.kept.get(best, ()))):
                best, best_len = slot, n
        return best, max(best_len, 0)

    def _make_room(self, need: int, slot: int, plan: Plan) -> bool:
        """Drop other free slots' kept prefixes, oldest first, until `need` cells fit
        (per_seq: a slot's own cells always fit it)."""
        if self.per_seq:
            return True

        def used() -> int:
            return self.reserved + sum(len(v) for k, v in self.kept.items() if k != slot)

        for other in [k for k in self.kept if k != slot]:
            if used() + need <= self.n_ctx:
                break
            plan.forget.append((other, 0))
            del self.kept[other]
        return used() + need <= self.n_ctx

    # --- results ----------------------------------------------------------------------------
    def update_from_output(
        self, results: list[tuple[Request, int, FinishReason | None]]
    ) -> list[Forget]:
        """Record each sampled token; release the sequences that finished. Returns the
        cache cells to drop."""
        forget: list[Forget] = []
        for req, tok, reason in results:
            rejected = len(req.draft) - req.kept + len(req.probe)
            req.draft, req.kept, req.probe = [], 0, []
            if reason is None:
                req.last = tok  # (a scoring request's: -1)
                if rejected:  # rejected drafts' (or a probe's) cells go; `tok` is decoded next
                    req.n_past -= rejected
                    forget.append((req.slot, req.n_past))
            else:
                forget += self._release(req, reason)
        return forget

    def fail_running(self) -> tuple[list[Request], list[Forget]]:
        """A decode failed: every running sequence ends with an error (its cells dropped)."""
        failed = list(self.running)
        forget = [op for req in failed for op in self._release(req, "error")]
        return failed, forget

    def drain(self) -> list[Request]:
        """Shutdown: everything running or waiting is cancelled."""
        out = [*self.running, *self.waiting]
        for req in list(self.running):
            self._release(req, "cancelled")
        self.waiting.clear()
        return out

    def _release(self, req: Request, reason: FinishReason) -> list[Forget]:
        """Free a running request's slot; keep its prompt's cells unless it failed."""
        if req not in self.running:
            return []
        self.running.remove(req)
        keep = min(req.n_prefilled, self.keep_prefix) if reason != "error" else 0
        if keep:
            self.kept[req.slot] = req.tokens[:keep]
            self.kept_aligned[req.slot] = min(keep, req.aligned)
        self.free.append(req.slot)
        self.reserved -= req.reserve
        return [(req.slot, keep)]


def _slot_order(plan: Plan) -> None:
    """Sort a plan's entries by slot (each slot's in position order), its outputs with them.

    llama.cpp cuts a batch over per-sequence KV streams into passes of consecutive sequence
    ids, scanning in batch order, each pass taking as many tokens from every sequence in it
    (llama-batch.cpp, split_equal); in admission order a batch of 16 decodes could take up
    to 16 passes, in slot order it takes one per run of busy slots."""
    order = sorted(range(len(plan.entries)), key=lambda i: plan.entries[i][2][0])
    where = {old: new for new, old in enumerate(order)}
    plan.entries = [plan.entries[i] for i in order]
    plan.outputs = [(req, where[i]) for req, i in plan.outputs]
