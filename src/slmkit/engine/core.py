"""The continuous-batching engine: a thread that drives a `Scheduler` and a `BatchRunner`.

Each step, under the one lock that `submit()` also takes, the scheduler plans the next
batch (the next token of every running sequence plus chunked prefill of newly admitted
ones); outside the lock the runner drops cache cells, decodes the batch once and samples
every sequence that produced logits with its own sampler; then, under the lock again, the
scheduler records the tokens and frees the slots of sequences that finished. A sequence
leaves the batch the moment it finishes or its caller cancels, and a waiting one takes
its slot. Chunks go to each caller's `emit`; an `emit` that raises cancels its own
request, never the engine.

Repeatable requests (seeded; greedy too with `solo_greedy`) run in a second lane: their own
one-sequence llama.cpp context, made at the first such request, one request at a time. On
a CPU the attention kernels' rounding depends on the batch's row count and on where a
sequence's cells sit in a shared KV cache (the split-KV decode path cuts the cache into one
range per thread), so a sequence sharing the main context could not give the same text
twice. In its own context its cells always sit in the same places; each step decodes the
main batch, then the solo lane's. With per-sequence cache streams (`per_seq`), a request
too long for one stream runs in a third lane, made at the first such request: `long_seq`
streams of up to `long_ctx` cells each, so that many long requests decode together.

Drafting (prompt lookup, a draft model) is engine/drafting.py; scoring requests
(`submit_score`) are engine/scoring.py. This file holds the request API and the loop.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from slmkit.engine.drafting import Drafter
from slmkit.engine.scheduler import Forget, Plan, Request, Scheduler
from slmkit.engine.scoring import Scoring, plan_probes, read_rows
from slmkit.errors import EngineClosedError, EngineFullError, InputError, RuntimeFailure
from slmkit.options import GenerationOptions
from slmkit.runtime.base import (
    Backend,
    BatchRunner,
    Chunk,
    FinishReason,
    LogLikelihood,
    TokenLogprob,
)
from slmkit.runtime.decoding import SequenceOutput, top_logprobs
from slmkit.runtime.speculate import CostModel, DraftModel, Speculator

__all__ = ["Engine", "EngineFullError", "Handle"]

Emit = Callable[[Chunk], None]
log = logging.getLogger("slmkit.engine")


@dataclass(eq=False)
class _Lane:
    """A scheduler and the context it plans for (made at the lane's first request)."""

    scheduler: Scheduler
    runner: BatchRunner | None = None


@dataclass(eq=False)
class _Active:
    """The engine's side of a request: where chunks go, its output state and sampler."""

    options: GenerationOptions
    emit: Emit
    out: SequenceOutput
    lane: _Lane
    sampler: Any = None
    ended: bool = False  # the final chunk was emitted
    spec: Speculator | None = None  # drafting (prompt lookup or the draft model)
    scoring: Scoring | None = None  # a scoring request (submit_score) instead of generation


class Handle:
    """A submitted request: cancel() frees its slot at the next step."""

    def __init__(self, engine: Engine, req: Request) -> None:
        self._engine, self._req = engine, req

    def cancel(self) -> None:
        with self._engine._cv:
            self._req.cancelled = True
            self._engine._cv.notify()


class Engine:
    """Serve many generations on one loaded model.

    n_seq: sequences decoded together; n_ctx: cache cells shared by all of them, or with
    `per_seq` n_ctx // n_seq for each (each decode row then attends over its own cells only,
    faster with many streams: docs/serve.md; a longer request, up to `long_ctx` cells, runs
    in the long lane, `long_seq` at a time); max_waiting: queued requests beyond the running
    ones before submit() refuses.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        n_seq: int = 16,
        n_ctx: int = 8192,
        n_batch: int = 512,
        max_waiting: int = 64,
        keep_prefix: int = 1024,
        on_step: Callable[[int], None] | None = None,
        solo_greedy: bool = False,
        per_seq: bool = False,
        long_ctx: int | None = None,
        long_seq: int = 2,
        draft: Backend | None = None,
    ) -> None:
        self.backend = backend
        self.runner: BatchRunner = backend.batch_runner(
            n_ctx=n_ctx, n_seq=n_seq, n_batch=n_batch, per_seq=per_seq
        )
        kw: dict[str, Any] = {
            "n_batch": n_batch,
            "max_waiting": max_waiting,
            "keep_prefix": keep_prefix,
        }
        self.scheduler = Scheduler(n_seq=n_seq, n_ctx=n_ctx, per_seq=per_seq, **kw)
        self.main = _Lane(self.scheduler, self.runner)
        # repeatable requests (module docstring)
        self.solo = _Lane(Scheduler(n_seq=1, n_ctx=long_ctx or n_ctx, **kw))
        self.long: _Lane | None = None  # requests too long for a per-sequence stream
        if per_seq and long_ctx:
            n_long = max(1, long_seq)
            self.long = _Lane(Scheduler(n_seq=n_long, n_ctx=n_long * long_ctx, per_seq=True, **kw))
        self._lanes = tuple(ln for ln in (self.main, self.solo, self.long) if ln is not None)
        self.on_step = on_step
        self.solo_greedy = solo_greedy  # greedy requests take the solo lane too
        self.drafter = Drafter(backend, self.runner, draft, self.max_request)
        self.steps = 0
        self.batch_sizes: collections.Counter[int] = collections.Counter()
        self._cv = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="slmkit-engine", daemon=True)
        self._thread.start()

    # --- public ---------------------------------------------------------------------------
    def submit(
        self,
        tokens: Sequence[int],
        options: GenerationOptions,
        emit: Emit,
        *,
        background: bool = False,
    ) -> Handle:
        """Queue a generation; emit(chunk) is called from the engine thread for each chunk.
        `background` (bulk work): admitted and prefilled after interactive requests.

        Raises EngineFullError when the waiting queue is full, ContextOverflowError when
        the request could never fit the cache, EngineClosedError after close().
        """
        return self._submit(list(tokens), options, emit, background)

    def _submit(
        self,
        tokens: list[int],
        options: GenerationOptions,
        emit: Emit,
        background: bool,
        scoring: Scoring | None = None,
    ) -> Handle:
        solo = options.seed is not None or (self.solo_greedy and options.temperature == 0)
        lane = self.solo if solo else self.main
        if not solo and len(tokens) + options.max_tokens > self.main.scheduler.max_request:
            lane = self.long or self.solo
        state = _Active(options, emit, SequenceOutput(options, len(tokens)), lane)
        state.scoring = scoring
        req = Request(
            tokens,
            options.max_tokens,
            state,
            # only the solo lane's requests are repeatable: in the shared batch their text
            # depends on the traffic anyway, and aligned-only reuse would make every greedy
            # request prefill its whole prompt again (16 clients: TTFT p50 0.13 s -> 1.28 s)
            repeatable=solo,
            background=background,
        )
        with self._cv:
            if self._stop:
                raise EngineClosedError("the engine is closed (its model was unloaded); retry")
            lane.scheduler.add(req)
            self._cv.notify()
        return Handle(self, req)

    def submit_score(
        self,
        context: Sequence[int],
        continuations: Sequence[Sequence[int]],
        done: Callable[[list[LogLikelihood] | None, FinishReason], None],
        *,
        background: bool = False,
    ) -> Handle:
        """Queue the scoring of log P(continuation | context) for each continuation, in the
        batch with other traffic: the context is prefilled once (reusing a kept prefix), then
        each continuation longer than one token is decoded after it in one step and dropped.
        `done(results, "stop")` is called from the engine thread, or `done(None, reason)` if
        the request was cancelled or failed. Raises as submit() does."""
        conts = [list(c) for c in continuations]
        if not context or not conts or not all(conts):
            raise InputError("scoring needs a non-empty context and non-empty continuations")
        longest = max(map(len, conts))
        # (sampling options are unused: a score never takes the solo lane)
        opts = GenerationOptions(max_tokens=max(1, longest - 1), temperature=1.0)
        state = Scoring(conts, done)
        return self._submit(list(context), opts, lambda c: None, background, scoring=state)

    def score(
        self,
        context: Sequence[int],
        continuations: Sequence[Sequence[int]],
        timeout: float | None = None,
    ) -> list[LogLikelihood]:
        """Blocking helper: one LogLikelihood per continuation (RuntimeFailure if the
        request failed, TimeoutError as generate())."""
        done = threading.Event()
        box: list[tuple[list[LogLikelihood] | None, FinishReason]] = []

        def finish(results: list[LogLikelihood] | None, reason: FinishReason) -> None:
            box.append((results, reason))
            done.set()

        handle = self.submit_score(context, continuations, finish)
        if not done.wait(timeout):
            handle.cancel()
            raise TimeoutError(f"scoring did not finish within {timeout} s")
        results, reason = box[0]
        if results is None:
            raise RuntimeFailure(f"scoring ended: {reason}")
        return results

    def generate(
        self, tokens: Sequence[int], options: GenerationOptions, timeout: float | None = None
    ) -> list[Chunk]:
        """Blocking helper: all chunks of one generation (TimeoutError, and the request
        cancelled, if it has not finished within `timeout` seconds)."""
        done = threading.Event()
        chunks: list[Chunk] = []

        def emit(c: Chunk) -> None:
            chunks.append(c)
            if c.finish_reason is not None:
                done.set()

        handle = self.submit(tokens, options, emit)
        if not done.wait(timeout):
            handle.cancel()
            raise TimeoutError(f"generation did not finish within {timeout} s")
        return chunks

    @property
    def n_ctx(self) -> int:
        """Cache cells of the main context (shared by all sequences unless per_seq)."""
        return self.scheduler.n_ctx

    @property
    def max_request(self) -> int:
        """Cache cells one request may use: prompt + max_tokens."""
        long = self.long.scheduler.max_request if self.long is not None else 0
        return max(self.scheduler.max_request, self.solo.scheduler.n_ctx, long)

    @property
    def batched_request(self) -> int:
        """Cache cells a request may use and still share the main batch (longer ones run in
        the long lane, a few at a time)."""
        return self.scheduler.max_request

    @property
    def queue_depth(self) -> int:
        return sum(len(lane.scheduler.waiting) for lane in self._lanes)

    @property
    def running(self) -> int:
        return sum(len(lane.scheduler.running) for lane in self._lanes)

    @property
    def alive(self) -> bool:
        """Whether the engine thread runs (it stops only at close())."""
        return self._thread.is_alive()

    @property
    def reused_tokens(self) -> int:
        return sum(lane.scheduler.reused_tokens for lane in self._lanes)

    # drafting's figures and hooks (engine/drafting.py), where callers have always read them
    @property
    def costs(self) -> CostModel:
        return self.drafter.costs

    @costs.setter
    def costs(self, value: CostModel) -> None:
        self.drafter.costs = value

    @property
    def draft(self) -> DraftModel | None:
        return self.drafter.draft

    @property
    def drafted(self) -> int:
        return self.drafter.drafted

    @property
    def accepted(self) -> int:
        return self.drafter.accepted

    @property
    def on_draft(self) -> Callable[[int, int], None] | None:
        return self.drafter.on_draft

    @on_draft.setter
    def on_draft(self, fn: Callable[[int, int], None] | None) -> None:
        self.drafter.on_draft = fn

    def close(self) -> None:
        """Cancel what is queued or running, stop the thread, free the context."""
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(timeout=30)
        for lane in self._lanes:
            if lane.runner is not None:
                lane.runner.close()
        self.drafter.close()

    # --- engine thread ----------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._stop and not any(ln.scheduler.has_work for ln in self._lanes):
                    self._cv.wait()
                if self._stop:
                    leftover = [r for ln in self._lanes for r in ln.scheduler.drain()]
                else:
                    plans = [(ln, self._plan(ln)) for ln in self._lanes]
            if self._stop:
                for req in leftover:
                    self._end(req, "cancelled")
                return
            for lane, plan in plans:
                self._run(lane, plan)

    def _plan(self, lane: _Lane) -> Plan:
        """(Under the lock) a lone prompt-lookup request's draft, then the lane's plan."""
        sched = lane.scheduler
        plan_probes(sched)
        if len(sched.running) == 1 and not sched.waiting:
            req = sched.running[0]
            spec = req.state.spec
            if spec is not None and req.last >= 0 and req.n_prefilled == len(req.tokens):
                alone = lane is self.solo or sched.per_seq
                req.draft = self.drafter.draft_for(req, spec, alone=alone, n_batch=sched.n_batch)
        return sched.schedule()

    def _lane_runner(self, lane: _Lane) -> BatchRunner:
        if lane.runner is None:  # the solo or long lane, at its first request
            sched = lane.scheduler
            lane.runner = self.backend.batch_runner(
                n_ctx=sched.n_ctx, n_seq=sched.n_seq, n_batch=sched.n_batch, per_seq=sched.per_seq
            )
        return lane.runner

    def _run(self, lane: _Lane, plan: Plan) -> None:
        runner = self._lane_runner(lane) if plan.entries or plan.forget else lane.runner
        if runner is not None:
            self._forget(runner, plan.forget)
        for req, reason in plan.finished:
            self._end(req, reason)
        for req in plan.admitted:
            self._start(req)
        if runner is not None and plan.entries:
            self._step(lane, runner, plan)

    def _step(self, lane: _Lane, runner: BatchRunner, plan: Plan) -> None:
        """Decode one batch and sample it; a failure fails this lane's running requests."""
        try:
            t0 = time.perf_counter()
            runner.decode(plan.entries)
            if len(plan.outputs) == 1 and len(plan.entries) == 1 + len(plan.outputs[0][0].draft):
                self.drafter.costs.note_rows(len(plan.entries), time.perf_counter() - t0)
            results = self._sample_all(plan, runner)
        except Exception:  # a failed step fails its requests, not the server
            log.exception("engine step failed")
            with self._cv:
                failed, forget = lane.scheduler.fail_running()
            self._forget(runner, forget)
            for req in failed:
                self._end(req, "error")
            return
        with self._cv:
            forget = lane.scheduler.update_from_output(results)
        self._forget(runner, forget)
        for req, _, done in results:
            if done is not None:
                self._end(req, done)

    @staticmethod
    def _forget(runner: BatchRunner, ops: list[Forget]) -> None:
        for slot, start in ops:
            runner.forget(slot, start)

    def _sample_all(
        self, plan: Plan, runner: BatchRunner
    ) -> list[tuple[Request, int, FinishReason | None]]:
        self.steps += 1
        self.batch_sizes[len(plan.outputs)] += 1
        if self.on_step is not None:
            self.on_step(len(plan.outputs))
        return [
            (req, *self._sampler_of(req)(req, idx, runner))
            for req, idx in plan.outputs
            if not req.state.ended
        ]

    def _sampler_of(
        self, req: Request
    ) -> Callable[[Request, int, BatchRunner], tuple[int, FinishReason | None]]:
        if req.state.scoring is not None:
            return read_rows
        return self._verify if req.draft else self._sample

    def _verify(self, req: Request, idx: int, r: BatchRunner) -> tuple[int, FinishReason | None]:
        return self.drafter.verify(req, idx, r, self._sample)

    def _start(self, req: Request) -> None:
        """Give an admitted request its sampler; one that cannot be built (a grammar
        llama.cpp rejects) fails that request alone."""
        if req.state.scoring is not None:
            return  # reads log-probabilities, samples nothing
        try:
            req.state.sampler = self.runner.new_sampler(req.state.options)
        except Exception:
            log.exception("could not build a sampler; failing that request")
            self._end(req, "error")
            req.cancelled = True  # the scheduler frees its slot at the next step
            return
        req.state.spec = self.drafter.speculator(req.state.options, req.tokens)

    def _sample(self, req: Request, idx: int, r: BatchRunner) -> tuple[int, FinishReason | None]:
        st: _Active = req.state
        tok = r.sample(st.sampler, idx)
        if st.spec is not None:
            st.spec.note(tok)
        k = st.options.logprobs
        lps: tuple[TokenLogprob, ...] = ()
        if k is not None:
            lps = top_logprobs(r.logits(idx), tok, k, self._text)
        chunk, reason = st.out.token(tok, r.piece(tok), r.is_eog(tok), lps)
        if chunk is not None:
            self._emit(req, chunk)
        return tok, reason

    def _text(self, tok: int) -> str:
        return self.runner.piece(tok).decode("utf-8", errors="replace")

    def _end(self, req: Request, reason: FinishReason) -> None:
        st: _Active = req.state
        if st.ended:
            return
        st.ended = True
        if st.sampler is not None:
            self.runner.free_sampler(st.sampler)
            st.sampler = None
        if st.spec is not None:
            st.out.stats.drafted_tokens = st.spec.drafted
            st.out.stats.accepted_tokens = st.spec.accepted
        if st.scoring is not None:
            done = reason == "stop" and st.scoring.complete
            try:
                st.scoring.done(st.scoring.result() if done else None, reason)
            except Exception:
                log.exception("a scoring request's done callback failed")
            return
        self._emit(req, st.out.finish(reason))

    def _emit(self, req: Request, chunk: Chunk) -> None:
        """Hand a chunk to its caller; a caller that raises loses its request, nothing else."""
        try:
            req.state.emit(chunk)
        except Exception:
            log.exception("a request's emit callback failed; cancelling that request")
            req.cancelled = True
