"""The scheduler alone: plain Python, no model, no runner."""

from __future__ import annotations

import pytest

from slmkit.engine.scheduler import Request, Scheduler
from slmkit.errors import ContextOverflowError, EngineFullError, InputError


def req(tokens: list[int], max_tokens: int = 4) -> Request:
    return Request(list(tokens), max_tokens)


def run_prompt(s: Scheduler, r: Request) -> None:
    """Schedule until r's prompt is prefilled and its first token sampled."""
    while r.last < 0:
        plan = s.schedule()
        s.update_from_output([(q, 1, None) for q, _ in plan.outputs])


def test_admission_reserves_prompt_plus_max_tokens() -> None:
    s = Scheduler(n_seq=4, n_ctx=100)
    a, b = req([1] * 30, 20), req([2] * 30, 30)
    s.add(a)
    s.add(b)
    plan = s.schedule()
    assert plan.admitted == [a] and s.reserved == 50  # b needs 60 more cells: waits
    assert list(s.waiting) == [b]
    assert len(plan.entries) == 30 and plan.outputs == [(a, 29)]


def test_waiting_request_is_admitted_when_cells_free_up() -> None:
    s = Scheduler(n_seq=4, n_ctx=100, keep_prefix=0)
    a, b = req([1] * 30, 20), req([2] * 30, 30)
    s.add(a)
    s.add(b)
    s.schedule()
    forget = s.update_from_output([(a, 7, "stop")])
    assert forget == [(a.slot, 0)] and s.reserved == 0
    plan = s.schedule()
    assert plan.admitted == [b] and s.reserved == 60


def test_decode_tokens_come_first_then_prefill_chunks_fill_the_batch() -> None:
    s = Scheduler(n_seq=4, n_ctx=4096, n_batch=16)
    a = req([1, 2, 3])
    s.add(a)
    run_prompt(s, a)
    b = req(list(range(10, 40)))
    s.add(b)
    plan = s.schedule()
    assert plan.entries[0] == (1, 3, (a.slot,), True)  # a's next token at position 3
    assert s.chunk == 12 and len(plan.entries) == 13  # then b's first chunk (16 - 4 tokens)
    assert [e[0] for e in plan.entries[1:]] == list(range(10, 22))
    assert all(not e[3] for e in plan.entries[1:])  # no logits until b's last prompt token
    plan = s.schedule()
    assert [e[0] for e in plan.entries[1:]] == list(range(22, 34))  # the next whole chunk
    plan = s.schedule()
    assert plan.outputs[-1] == (b, len(plan.entries) - 1)


def test_best_prefix_slot_is_chosen_and_only_the_rest_prefilled() -> None:
    s = Scheduler(n_seq=3, n_ctx=4096)
    system = list(range(100, 140))
    a = req(system + [1, 2, 3])
    s.add(a)
    run_prompt(s, a)
    s.update_from_output([(a, 5, "stop")])
    assert s.kept[a.slot] == a.tokens  # the prompt's cells stay
    b = req(system + [7, 8])
    s.add(b)
    plan = s.schedule()
    assert b.slot == a.slot and s.reused_tokens == 40
    assert (a.slot, 40) in plan.forget  # a's own turn is dropped, the system prompt kept
    assert [e[1] for e in plan.entries] == [40, 41]  # prefill starts after the shared part


def test_a_prompt_equal_to_the_kept_prefix_still_decodes_its_last_token() -> None:
    s = Scheduler(n_seq=1, n_ctx=4096)
    a = req([5, 6, 7])
    s.add(a)
    run_prompt(s, a)
    s.update_from_output([(a, 1, "stop")])
    b = req([5, 6, 7])
    s.add(b)
    plan = s.schedule()
    assert [e[:2] for e in plan.entries] == [(7, 2)] and plan.outputs == [(b, 0)]


def test_kept_prefixes_are_dropped_oldest_first_when_room_is_needed() -> None:
    s = Scheduler(n_seq=4, n_ctx=300, keep_prefix=1000)
    done = []
    for word in (1, 2, 3):
        r = req([word] * 80, 4)
        s.add(r)
        run_prompt(s, r)
        s.update_from_output([(r, 0, "stop")])
        done.append(r)
    assert s.used_cells == 240
    big = req([9] * 120, 10)
    s.add(big)
    plan = s.schedule()
    assert plan.admitted == [big]
    dropped = [slot for slot, start in plan.forget if start == 0]
    assert dropped == [done[0].slot]  # the oldest kept prefix gave way, only it
    assert s.used_cells <= 300


def test_keep_prefix_bounds_what_a_slot_keeps() -> None:
    s = Scheduler(n_seq=2, n_ctx=4096, keep_prefix=10)
    r = req(list(range(50)))
    s.add(r)
    run_prompt(s, r)
    assert s.update_from_output([(r, 0, "length")]) == [(r.slot, 10)]
    assert s.kept[r.slot] == list(range(10))


def test_a_failed_request_keeps_nothing() -> None:
    s = Scheduler(n_seq=2, n_ctx=4096)
    r = req([1, 2, 3])
    s.add(r)
    s.schedule()
    failed, forget = s.fail_running()
    assert failed == [r] and forget == [(r.slot, 0)] and not s.kept and s.reserved == 0


def test_cancellation_of_running_and_waiting_requests() -> None:
    s = Scheduler(n_seq=1, n_ctx=4096)
    a, b = req([1, 2]), req([3, 4])
    s.add(a)
    s.add(b)
    s.schedule()
    a.cancelled = b.cancelled = True
    plan = s.schedule()
    assert (a, "cancelled") in plan.finished and (b, "cancelled") in plan.finished
    assert not s.running and not s.waiting and s.free == [0] and s.reserved == 0


def test_queue_limit_counts_free_slots() -> None:
    s = Scheduler(n_seq=2, n_ctx=4096, max_waiting=1)
    for _ in range(3):
        s.add(req([1, 2]))
    with pytest.raises(EngineFullError):
        s.add(req([1, 2]))


def test_requests_that_can_never_fit_are_refused_at_once() -> None:
    s = Scheduler(n_seq=2, n_ctx=100)
    with pytest.raises(ContextOverflowError) as e:
        s.add(req([1] * 90, 20))
    assert e.value.n_ctx == 100 and e.value.prompt_tokens == 90
    with pytest.raises(InputError):
        s.add(req([]))


def test_sequences_share_a_step_and_leave_when_done() -> None:
    s = Scheduler(n_seq=3, n_ctx=4096)
    rs = [req([i, i + 1]) for i in range(3)]
    for r in rs:
        s.add(r)
    plan = s.schedule()
    assert len(plan.outputs) == 3 and {r.slot for r in rs} == {0, 1, 2}
    s.update_from_output([(rs[0], 9, "stop"), (rs[1], 9, None), (rs[2], 9, None)])
    plan = s.schedule()
    assert [q for q, _ in plan.outputs] == [rs[1], rs[2]]
    assert [e[1] for e in plan.entries] == [2, 2]  # each at its own next position


def test_repeatable_requests_reuse_only_chunk_aligned_cells() -> None:
    """A seeded/greedy request reuses a kept prefix only up to a chunk boundary that the
    earlier request computed as a whole chunk, and prefills from there in whole chunks."""
    s = Scheduler(n_seq=2, n_ctx=4096, n_batch=12)  # chunk 10
    shared = list(range(100, 125))  # 25 tokens: chunks [0,10) [10,20) then 5
    a = req(shared + [1, 2])
    s.add(a)
    run_prompt(s, a)
    assert a.aligned == 20
    s.update_from_output([(a, 0, "stop")])
    b = Request(shared + [3, 4], 4, repeatable=True)
    s.add(b)
    plan = s.schedule()
    assert b.slot == a.slot and plan.forget == [(b.slot, 20)]  # the unaligned tail is redone
    assert [e[1] for e in plan.entries] == list(range(20, 27))
    c = req(shared + [5, 6])  # not repeatable: reuses all 25 shared tokens
    s.update_from_output([(b, 0, "stop")])
    s.add(c)
    s.schedule()
    assert c.n_prefilled == 27 and s.reused_tokens == 20 + 25


def test_background_requests_yield_the_queue_and_the_prefill_budget() -> None:
    """Bulk work (a summary's chunks) queued and prefilling does not hold up a chat: the
    chat is admitted ahead of queued background requests and its prompt is prefilled first,
    so its first token comes from the next step."""
    s = Scheduler(n_seq=2, n_ctx=4096, n_batch=64)
    bg = [Request([7] * 100, 4, background=True) for _ in range(3)]
    for r in bg:
        s.add(r)
    s.schedule()  # two background prompts running, one queued
    chat = req([1, 2, 3, 4, 5])
    s.add(chat)
    assert list(s.waiting) == [chat, bg[2]]
    s.update_from_output([(bg[0], 1, "stop")])  # a slot frees: the chat takes it
    plan = s.schedule()
    assert chat in plan.admitted and bg[2] not in plan.admitted
    assert (chat, 4) in plan.outputs  # its whole prompt came first: it samples this step


def test_per_seq_slots_have_their_own_cells_and_kept_prefixes_never_compete() -> None:
    """With per-sequence cache streams a request must fit one slot's n_ctx // n_seq cells,
    and one slot's kept prompt never has to give way to another slot's request."""
    s = Scheduler(n_seq=4, n_ctx=400, per_seq=True, keep_prefix=1024)
    assert s.max_request == 100
    with pytest.raises(ContextOverflowError, match=r"> engine context 100 per sequence"):
        s.add(req([1] * 90, 20))
    a = req([1] * 90, 10)
    s.add(a)
    run_prompt(s, a)
    s.update_from_output([(a, 5, "stop")])
    others = [req([k] * 90, 10) for k in (2, 3, 4)]  # 300 cells beside a's 90 kept ones
    for r in others:
        s.add(r)
    plan = s.schedule()
    assert plan.admitted == others and s.kept[a.slot] == a.tokens
    assert all(slot != a.slot for slot, _ in plan.forget)
    shared = Scheduler(n_seq=4, n_ctx=380, keep_prefix=1024)  # one shared pool: 390 > 380
    b = req([1] * 90, 10)
    shared.add(b)
    run_prompt(shared, b)
    shared.update_from_output([(b, 5, "stop")])
    for r in [req([k] * 90, 10) for k in (2, 3, 4)]:
        shared.add(r)
    plan = shared.schedule()
    assert (b.slot, 0) in plan.forget and b.slot not in shared.kept  # b's cells gave way


def test_per_seq_batches_list_sequences_in_slot_order() -> None:
    """llama.cpp decodes a per-sequence-stream batch as one pass per run of consecutive
    sequence ids in batch order; admission order must not break the runs."""
    s = Scheduler(n_seq=4, n_ctx=400, per_seq=True, keep_prefix=0)
    first = [req([k] * 5, 10) for k in range(4)]
    for r in first:
        s.add(r)
        run_prompt(s, r)
    s.update_from_output([(first[0], 5, "stop"), (first[2], 5, "stop")])
    late = [req([9] * 5, 10), req([8] * 5, 10)]
    for r in late:
        s.add(r)
    plan = s.schedule()
    assert sorted(r.slot for r in late) == [first[0].slot, first[2].slot]
    slots = [e[2][0] for e in plan.entries]
    assert slots == sorted(slots) and set(slots) == {0, 1, 2, 3}
    for r, i in plan.outputs:  # each output still points at its own sequence's last entry
        assert plan.entries[i][2] == (r.slot,) and plan.entries[i][3]
    assert [e[1] for e in plan.entries if e[2] == (late[0].slot,)] == list(range(5))


def test_a_probe_decodes_after_the_prompt_and_its_cells_are_dropped() -> None:
    """Scoring: after the prompt, a probe's tokens are decoded from the prompt's end, all with
    logits, then dropped, so the next probe starts there again; the prompt's cells stay."""
    s = Scheduler(n_seq=2, n_ctx=100)
    r = req([5] * 10, 3)
    s.add(r)
    plan = s.schedule()
    assert plan.outputs == [(r, 9)]
    assert s.update_from_output([(r, -1, None)]) == [] and r.last == -1
    assert s.schedule().entries == []  # nothing to decode until a probe is set
    for probe in ([7, 8, 9], [6]):
        r.probe = probe
        plan = s.schedule()
        assert plan.entries == [(t, 10 + i, (r.slot,), True) for i, t in enumerate(probe)]
        assert plan.outputs == [(r, 0)]
        assert s.update_from_output([(r, -1, None)]) == [(r.slot, 10)]
        assert r.n_past == 10 and r.probe == []
    assert s.update_from_output([(r, -1, "stop")]) == [(r.slot, 10)]
    assert s.kept[r.slot] == [5] * 10
