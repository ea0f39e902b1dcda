"""Unit tests for pel.scheduler.SchedulerState, driven only by events.

Each test feeds events and compares the whole list of instructions returned.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter

import pytest

from pel.scheduler import (
    Cancel,
    Cancelled,
    Dispatch,
    Drop,
    Fail,
    Finished,
    Instruction,
    Isolate,
    Kill,
    Lost,
    Release,
    Retry,
    Returned,
    SchedulerState,
    Steal,
    Submitted,
    TaskSpec,
    Tick,
    WorkerJoined,
    WorkerLost,
    policy,
)
from pel.scheduler.state import DEFAULT_OVERHEAD


@pytest.fixture(autouse=True)
def two_tasks_before_measuring(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests exercise queueing and stealing, which need workers holding
    more than one task; pel's default sends one until durations are measured
    (test_default_sends_one_task_per_worker_until_measured checks that)."""
    monkeypatch.setattr(policy, "INITIAL_PREFETCH", 2)


def test_default_sends_one_task_per_worker_until_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()
    assert policy.INITIAL_PREFETCH == 1
    s = SchedulerState()
    out = s.handle(*workers(0, 1), Submitted([T(0), T(1), T(2), T(3, priority=5)]))
    assert out == [Dispatch(0, (3,)), Dispatch(1, (0,))]
    # a tiny task measured: now worth queueing behind the running one too
    out = s.handle(Finished(0, [(3, True, 1e-5)], now=1e-3))
    # each task to the least loaded worker, ties to the lower id
    assert out == [Release((3,)), Dispatch(0, (1, 2))]


def T(key: int, *deps: int, priority: int = 0, isolated: bool = False) -> TaskSpec:
    """A task; ``isolated``: a crash of its worker while it is first held is its own."""
    return TaskSpec(key, tuple(deps), priority, isolated=isolated)


def workers(*ids: int) -> list[WorkerJoined]:
    return [WorkerJoined(i) for i in ids]


def with_long_tasks(state: SchedulerState) -> None:
    """Make the state believe tasks run long, so every worker holds one task."""
    state.group_seconds[0] = 1.0
    assert state.prefetch_depth() == 1


# -- basics ----------------------------------------------------------------------------


def test_nothing_happens_without_workers() -> None:
    s = SchedulerState()
    assert s.handle(Submitted([T(0), T(1)])) == []
    assert s.pending() == 2
    assert s.ready_keys() == [0, 1]
    assert s.handle(WorkerJoined(0)) == [Dispatch(0, (0, 1))]


def test_nothing_happens_without_tasks() -> None:
    s = SchedulerState()
    assert s.handle(*workers(0, 1, 2)) == []
    assert s.handle() == []
    assert s.pending() == 0


def test_unknown_event_type_is_rejected() -> None:
    @dataclasses.dataclass
    class Bogus:
        now: float = 0.0

    with pytest.raises(TypeError, match="not a scheduler event"):
        SchedulerState().handle(Bogus())  # type: ignore[arg-type]


def test_non_event_object_is_rejected_with_type_error() -> None:
    with pytest.raises(TypeError, match="not a scheduler event"):
        SchedulerState().handle("finished")  # type: ignore[arg-type]


def test_initial_prefetch_depth() -> None:
    s = SchedulerState()
    assert s.prefetch_depth() == policy.INITIAL_PREFETCH
    out = s.handle(WorkerJoined(0), Submitted([T(k) for k in range(5)]))
    assert out == [Dispatch(0, tuple(range(policy.INITIAL_PREFETCH)))]


# -- dispatch order ----------------------------------------------------------------------


def test_dispatch_order_by_priority() -> None:
    s = SchedulerState()
    prios = [0, 5, 0, 5, -1, 2]
    s.handle(Submitted([T(k, priority=p) for k, p in enumerate(prios)]))
    assert s.ready_keys() == [1, 3, 5, 0, 2, 4]
    # six idle workers, one task each, in rank order
    out = s.handle(*workers(0, 1, 2, 3, 4, 5))
    assert out == [
        Dispatch(0, (1,)),
        Dispatch(1, (3,)),
        Dispatch(2, (5,)),
        Dispatch(3, (0,)),
        Dispatch(4, (2,)),
        Dispatch(5, (4,)),
    ]


def test_dispatch_order_height_breaks_priority_ties() -> None:
    s = SchedulerState()
    # 1 -> 2 -> 3 is a chain (height of 1 is 3); 4 -> 5 (height of 4 is 2);
    # 0 and 6 are alone; 7 alone but with a higher priority
    s.handle(Submitted([T(0), T(1), T(2, 1), T(3, 2), T(4), T(5, 4), T(6), T(7, priority=1)]))
    assert s.ready_keys() == [7, 1, 4, 0, 6]
    assert s.handle(*workers(0, 1, 2, 3, 4)) == [
        Dispatch(0, (7,)),
        Dispatch(1, (1,)),
        Dispatch(2, (4,)),
        Dispatch(3, (0,)),
        Dispatch(4, (6,)),
    ]


def test_dispatch_rerank_when_later_submission_lifts_a_ready_task() -> None:
    s = SchedulerState()
    s.handle(Submitted([T(0), T(1), T(2)]))
    assert s.ready_keys() == [0, 1, 2]
    s.handle(Submitted([T(3, 2)]))
    assert s.ready_keys() == [2, 0, 1]
    s.handle(Submitted([T(4, 1), T(5, 4)]))
    assert s.ready_keys() == [1, 2, 0]
    assert s.handle(*workers(0, 1, 2)) == [
        Dispatch(0, (1,)),
        Dispatch(1, (2,)),
        Dispatch(2, (0,)),
    ]


def test_dispatch_order_submission_order_last() -> None:
    s = SchedulerState()
    keys = [9, 3, 7, 1]  # keys are submission order; the lowest key goes first
    s.handle(Submitted([T(k) for k in keys]))
    assert s.ready_keys() == [1, 3, 7, 9]
    with_long_tasks(s)
    assert s.handle(*workers(0, 1, 2, 3)) == [
        Dispatch(0, (1,)),
        Dispatch(1, (3,)),
        Dispatch(2, (7,)),
        Dispatch(3, (9,)),
    ]


def test_one_worker_gets_tasks_in_rank_order() -> None:
    s = SchedulerState()
    s.handle(Submitted([T(0), T(1, priority=3), T(2), T(3, 2), T(4, priority=-2)]))
    with_long_tasks(s)
    out = s.handle(WorkerJoined(0))
    assert out == [Dispatch(0, (1,))]
    order = [1]
    now = 0.0
    while True:
        now += 1.0
        out = s.handle(Finished(0, [(order[-1], True, 1.0)], now=now))
        dispatches = [i for i in out if isinstance(i, Dispatch)]
        if not dispatches:
            break
        assert len(dispatches) == 1
        order.extend(dispatches[0].keys)
    assert order == [1, 2, 0, 3, 4]
    assert s.pending() == 0


# -- round-robin fill ---------------------------------------------------------------------


def test_round_robin_fill() -> None:
    s = SchedulerState()
    out = s.handle(*workers(0, 1, 2), Submitted([T(k) for k in range(6)]))
    # depth 2: one each in turn, then a second each in turn
    assert out == [Dispatch(0, (0, 3)), Dispatch(1, (1, 4)), Dispatch(2, (2, 5))]


def test_fill_least_loaded_first() -> None:
    s = SchedulerState()
    assert s.handle(WorkerJoined(0), Submitted([T(0)])) == [Dispatch(0, (0,))]
    out = s.handle(*workers(1, 2), Submitted([T(k) for k in range(1, 6)]))
    # 1 and 2 are empty, 0 holds one: 1, 2, 0 in turn; 0 is then full
    assert out == [Dispatch(1, (1, 4)), Dispatch(2, (2, 5)), Dispatch(0, (3,))]


def test_fill_ties_broken_by_worker_id() -> None:
    s = SchedulerState()
    out = s.handle(WorkerJoined(5), WorkerJoined(2), WorkerJoined(9), Submitted([T(0), T(1)]))
    assert out == [Dispatch(2, (0,)), Dispatch(5, (1,))]


def test_fill_stops_at_prefetch_depth() -> None:
    s = SchedulerState()
    out = s.handle(*workers(0, 1), Submitted([T(k) for k in range(10)]))
    assert out == [Dispatch(0, (0, 2)), Dispatch(1, (1, 3))]
    assert s.ready_keys() == [4, 5, 6, 7, 8, 9]


# -- prefetch depth adapts ---------------------------------------------------------------


def test_prefetch_grows_for_tiny_tasks() -> None:
    s = SchedulerState()
    out = s.handle(WorkerJoined(0), Submitted([T(k) for k in range(200)]))
    assert out == [Dispatch(0, (0, 1))]
    # task 0 went to an idle worker at t=0; its round trip is a clean sample
    now, seconds = 0.001, 1e-5
    out = s.handle(Finished(0, [(0, True, seconds), (1, True, seconds)], now=now))
    expected_task = policy.smooth(policy.smooth(None, seconds), seconds)
    expected_overhead = policy.smooth(DEFAULT_OVERHEAD, now - 0.0 - seconds)
    assert s.task_seconds == pytest.approx(expected_task)
    assert s.overhead_seconds == pytest.approx(expected_overhead)
    depth = policy.prefetch_depth(expected_task, expected_overhead)
    assert depth > 30
    assert s.prefetch_depth() == depth
    assert out == [Release((0, 1)), Dispatch(0, tuple(range(2, 2 + depth)))]


def test_prefetch_stays_one_for_long_tasks() -> None:
    s = SchedulerState()
    out = s.handle(WorkerJoined(0), Submitted([T(k) for k in range(5)]))
    assert out == [Dispatch(0, (0, 1))]
    # 2 s task, 200 us round trip: queueing behind it is not worth it
    out = s.handle(Finished(0, [(0, True, 2.0)], now=2.0002))
    assert s.prefetch_depth() == 1
    assert out == [Release((0,))]  # the worker still holds task 1: nothing more
    out = s.handle(Finished(0, [(1, True, 2.0)], now=4.0004))
    assert s.prefetch_depth() == 1
    assert out == [Release((1,)), Dispatch(0, (2,))]
    out = s.handle(Finished(0, [(2, True, 2.0)], now=6.0006))
    assert out == [Release((2,)), Dispatch(0, (3,))]
    assert s.prefetch_depth() == 1


def test_overhead_measured_only_on_tasks_sent_to_idle_workers() -> None:
    s = SchedulerState()
    s.handle(WorkerJoined(0), Submitted([T(0), T(1)]))
    # task 1 was queued behind task 0: its wait is not a round trip
    s.handle(Finished(0, [(0, True, 1.0)], now=1.0))
    assert s.overhead_seconds == pytest.approx(policy.smooth(DEFAULT_OVERHEAD, 0.0))
    before = s.overhead_seconds
    s.handle(Finished(0, [(1, True, 1.0)], now=50.0))
    assert s.overhead_seconds == before


# -- dependencies --------------------------------------------------------------------------


def test_dependencies_become_ready_on_finished() -> None:
    s = SchedulerState()
    out = s.handle(*workers(0, 1), Submitted([T(0), T(1, 0), T(2, 0)]))
    assert out == [Dispatch(0, (0,))]
    out = s.handle(Finished(0, [(0, True, 0.001)], now=0.002))
    assert s.prefetch_depth() == 2
    assert out == [Dispatch(0, (1,)), Dispatch(1, (2,))]
    # 0's result is kept until both dependents are final (one may be stolen
    # back and sent again)
    assert s.handle(Finished(0, [(1, True, 0.001)], now=0.003)) == [Release((1,))]
    assert s.handle(Finished(1, [(2, True, 0.001)], now=0.003)) == [Release((0, 2))]


def test_dependency_waits_for_all_of_its_deps() -> None:
    s = SchedulerState()
    with_long_tasks(s)
    out = s.handle(*workers(0, 1), Submitted([T(0), T(1), T(2, 0, 1)]))
    assert out == [Dispatch(0, (0,)), Dispatch(1, (1,))]
    assert s.handle(Finished(0, [(0, True, 1.0)], now=1.0)) == []
    out = s.handle(Finished(1, [(1, True, 1.0)], now=1.0))
    assert out == [Dispatch(0, (2,))]
    assert s.handle(Finished(0, [(2, True, 1.0)], now=2.0)) == [Release((0, 1, 2))]


def test_dependency_on_forgotten_task_is_ready_at_once() -> None:
    s = SchedulerState()
    with_long_tasks(s)
    assert s.handle(WorkerJoined(0), Submitted([T(0)])) == [Dispatch(0, (0,))]
    assert s.handle(Finished(0, [(0, True, 1.0)], now=1.0)) == [Release((0,))]
    assert s.handle(Submitted([T(1, 0)])) == [Dispatch(0, (1,))]


# -- release -------------------------------------------------------------------------------


def test_release_after_every_dependent_is_final() -> None:
    s = SchedulerState()
    with_long_tasks(s)
    out = s.handle(WorkerJoined(0), Submitted([T(0), T(1, 0), T(2, 0)]))
    assert out == [Dispatch(0, (0,))]
    out = s.handle(Finished(0, [(0, True, 1.0)], now=1.0))
    assert out == [Dispatch(0, (1,))]  # 2 still needs 0's result
    out = s.handle(Finished(0, [(1, True, 1.0)], now=2.0))
    assert out == [Release((1,)), Dispatch(0, (2,))]
    out = s.handle(Finished(0, [(2, True, 1.0)], now=3.0))
    assert out == [Release((0, 2))]
    assert s.graph.nodes == {}


def test_release_when_the_last_dependent_is_cancelled() -> None:
    s = SchedulerState()
    out = s.handle(WorkerJoined(0), Submitted([T(0), T(1), T(2, 0)]))
    assert out == [Dispatch(0, (0, 1))]
    # long task: the worker keeps task 1 and takes nothing more
    assert s.handle(Finished(0, [(0, True, 1.0)], now=1.0)) == []
    assert s.ready_keys() == [2]
    assert s.handle(Cancelled([2])) == [Release((0,))]
    assert s.ready_keys() == []


def test_no_release_while_a_late_dependent_still_waits() -> None:
    s = SchedulerState()
    with_long_tasks(s)
    s.handle(*workers(0, 1), Submitted([T(0), T(1)]))
    out = s.handle(Finished(0, [(0, True, 1.0)], now=1.0), Submitted([T(2, 0, 1)]))
    assert out == [Release((0,))]  # 0 was done and unneeded before 2 came
    out = s.handle(Finished(1, [(1, True, 1.0)], now=2.0))
    assert out == [Dispatch(0, (2,))]
    assert s.handle(Finished(0, [(2, True, 1.0)], now=3.0)) == [Release((1, 2))]


# -- failure -------------------------------------------------------------------------------


def test_failure_fails_all_descendants_transitively() -> None:
    s = SchedulerState()
    out = s.handle(
        *workers(0, 1),
        Submitted([T(0), T(1, 0), T(2, 1), T(3, 0), T(4), T(5, 4, 2), T(6, 3)]),
    )
    assert out == [Dispatch(0, (0,)), Dispatch(1, (4,))]
    # 4 finishes; 5 still waits on 2; the long task brings the depth to 1
    assert s.handle(Finished(1, [(4, True, 0.01)], now=0.01)) == []
    out = s.handle(Finished(0, [(0, False, 0.01)], now=0.02))
    # 5 no longer needs 4's result
    assert out == [Fail((1, 2, 3, 5, 6), 0), Release((4,))]
    assert s.pending() == 0
    assert s.graph.nodes == {}
    assert s.handle(WorkerJoined(2)) == []


def test_failure_without_dependents_fails_nothing_else() -> None:
    s = SchedulerState()
    out = s.handle(WorkerJoined(0), Submitted([T(0), T(1)]))
    assert out == [Dispatch(0, (0, 1))]
    assert s.handle(Finished(0, [(0, False, 1.0)], now=1.0)) == []
    assert s.pending() == 1


def test_failure_keeps_independent_work_going() -> None:
    s = SchedulerState()
    with_long_tasks(s)
    out = s.handle(*workers(0, 1), Submitted([T(0), T(1, 0), T(2), T(3)]))
    assert out == [Dispatch(0, (0,)), Dispatch(1, (2,))]
    out = s.handle(Finished(0, [(0, False, 1.0)], now=1.0))
    assert out == [Fail((1,), 0), Dispatch(0, (3,))]


def test_finished_for_a_task_already_failed_is_ignored() -> None:
    s = SchedulerState()
    with_long_tasks(s)
    s.handle(*workers(0), Submitted([T(0, isolated=True)]))
    assert s.handle(WorkerLost(0)) == [Lost(0, 0, False, 1)]
    assert s.handle(Finished(0, [(0, True, 1.0)], now=1.0)) == []


# -- cancellation --------------------------------------------------------------------------


def test_cancel_cancels_descendants() -> None:
    s = SchedulerState()
    s.handle(Submitted([T(0), T(1, 0), T(2, 1), T(3), T(4, 3, 2)]))
    assert s.handle(Cancelled([0])) == [Cancel((1, 2, 4), 0)]
    assert s.ready_keys() == [3]
    assert s.pending() == 1
    assert s.handle(WorkerJoined(0)) == [Dispatch(0, (3,))]


def test_cancel_without_descendants_and_of_unknown_or_final_tasks() -> None:
    s = SchedulerState()
    s.handle(Submitted([T(0), T(1)]))
    assert s.handle(Cancelled([1])) == []
    assert s.handle(Cancelled([1, 99])) == []
    assert s.ready_keys() == [0]


def test_cancel_several_in_one_event() -> None:
    s = SchedulerState()
    s.handle(Submitted([T(0), T(1), T(2, 0), T(3, 1), T(4, 2, 3)]))
    assert s.handle(Cancelled([1, 0])) == [Cancel((3, 4), 1), Cancel((2,), 0)]
    assert s.pending() == 0


def test_cancel_of_a_task_not_sent_after_all_frees_the_worker() -> None:
    s = SchedulerState()
    with_long_tasks(s)
    out = s.handle(WorkerJoined(0), Submitted([T(0), T(1, 0), T(2)]))
    assert out == [Dispatch(0, (0,))]
    # the runtime found 0's future cancelled when it came to send it
    out = s.handle(Returned(0, [0], stolen=False), Cancelled([0]))
    assert out == [Cancel((1,), 0), Dispatch(0, (2,))]


def test_cancel_of_a_running_task_kills_its_worker_and_charges_nobody() -> None:
    s = SchedulerState()
    assert s.handle(WorkerJoined(0), Submitted([T(0), T(1), T(2, 0)])) == [Dispatch(0, (0, 1))]
    with_long_tasks(s)
    assert s.handle(Cancelled([0])) == [Kill(0), Cancel((2,), 0)]
    # a killed worker gets nothing more; what it held goes back to the queue
    assert s.handle(Submitted([T(3)])) == []
    assert s.handle(WorkerLost(0), WorkerJoined(1)) == [Dispatch(1, (1,))]
    assert s.pending() == 2


def test_cancel_of_a_queued_task_drops_it_from_its_worker() -> None:
    s = SchedulerState()
    out = s.handle(WorkerJoined(0), Submitted([T(0), T(1), T(2)]))
    assert out == [Dispatch(0, (0, 1))]
    with_long_tasks(s)
    assert s.handle(Cancelled([1])) == [Drop(0, (1,))]
    # held until the worker answers
    assert list(s.workers[0].assigned) == [0, 1]
    assert s.handle(Returned(0, [1], stolen=False)) == []
    assert list(s.workers[0].assigned) == [0]


def test_a_cancelled_task_its_worker_did_not_drop_is_killed_once_first() -> None:
    s = SchedulerState()
    s.handle(WorkerJoined(0), Submitted([T(0), T(1), T(2)]))
    with_long_tasks(s)
    assert s.handle(Cancelled([1])) == [Drop(0, (1,))]
    # 0's result arrives, and no answer to the drop: 1 is running
    out = s.handle(Finished(0, [(0, True, 1.0)], now=1.0))
    assert out == [Release((0,)), Kill(0)]
    assert s.workers[0].killing == (1, "cancel")
    # the kill charges nobody; 2 was never held by it
    assert s.handle(WorkerLost(0, now=1.1), WorkerJoined(1, now=1.1)) == [Dispatch(1, (2,))]


# -- worker loss ---------------------------------------------------------------------------


def test_worker_lost_fails_the_running_task_and_requeues_the_rest() -> None:
    s = SchedulerState()
    tasks = [T(0, isolated=True), T(1), T(2), T(3, 0), T(4, 3)]
    out = s.handle(*workers(0, 1), Submitted(tasks))
    assert out == [Dispatch(0, (0, 2)), Dispatch(1, (1,))]
    out = s.handle(WorkerLost(0))
    # 0 was running: it is charged (no retries: it fails); 2 goes back
    assert out == [Lost(0, 0, False, 1), Fail((3, 4), 0), Dispatch(1, (2,))]
    assert s.pending() == 2
    # a late report from the dead worker changes nothing
    assert s.handle(Finished(0, [(0, True, 0.1)], now=1.0)) == []


def test_worker_lost_while_idle_or_unknown() -> None:
    s = SchedulerState()
    s.handle(*workers(0, 1))
    assert s.handle(WorkerLost(0)) == []
    assert s.handle(WorkerLost(42)) == []
    assert s.handle(Submitted([T(0)])) == [Dispatch(1, (0,))]


def test_worker_lost_releases_results_its_tasks_needed() -> None:
    s = SchedulerState()
    with_long_tasks(s)
    out = s.handle(*workers(0, 1), Submitted([T(0, isolated=True), T(1), T(2, 0, 1)]))
    assert out == [Dispatch(0, (0,)), Dispatch(1, (1,))]
    s.handle(Finished(1, [(1, True, 1.0)], now=1.0))
    out = s.handle(WorkerLost(0))
    assert out == [Lost(0, 0, False, 1), Fail((2,), 0), Release((1,))]
    assert s.graph.nodes == {}


def test_replacement_worker_takes_the_remaining_work() -> None:
    s = SchedulerState()
    with_long_tasks(s)
    s.handle(WorkerJoined(0), Submitted([T(0, isolated=True), T(1), T(2)]))
    out = s.handle(WorkerLost(0), WorkerJoined(1))
    assert out == [Lost(0, 0, False, 1), Dispatch(1, (1,))]


# -- stealing -----------------------------------------------------------------------------


def test_idle_worker_steals_and_returned_tasks_are_redispatched() -> None:
    s = SchedulerState()
    assert s.handle(WorkerJoined(0), Submitted([T(0), T(1)])) == [Dispatch(0, (0, 1))]
    # a new worker with nothing ready asks the busy one for half its unstarted work
    assert s.handle(WorkerJoined(1)) == [Steal(0, 1)]
    # one steal at a time per victim
    assert s.handle() == []
    assert s.ready_keys() == []
    out = s.handle(Returned(0, [1]))
    assert out == [Dispatch(1, (1,))]
    out = s.handle(Finished(1, [(1, True, 1.0)], now=1.0))
    assert out == [Release((1,))]


def test_steal_count_is_half_the_unstarted_rounded_up() -> None:
    s = SchedulerState()
    s.handle(WorkerJoined(0), Submitted([T(k) for k in range(60)]))
    s.handle(Finished(0, [(0, True, 1e-5), (1, True, 1e-5)], now=0.001))
    depth = s.prefetch_depth()
    assert 5 < depth < 58
    # a new worker takes the rest of the ready queue
    out = s.handle(WorkerJoined(1))
    dispatched = out[0]
    assert isinstance(dispatched, Dispatch)
    assert dispatched.worker == 1
    held0 = depth
    held1 = len(dispatched.keys)
    assert held0 + held1 == 58
    assert out == [Dispatch(1, tuple(range(2 + depth, 60)))]
    # a third one, idle, steals from the most loaded
    victim, count = (0, held0) if held0 >= held1 else (1, held1)
    assert s.handle(WorkerJoined(2)) == [Steal(victim, count // 2)]
    assert count // 2 == -(-(count - 1) // 2)


def test_several_idle_workers_steal_from_the_most_loaded_first() -> None:
    s = SchedulerState()
    out = s.handle(*workers(0, 1), Submitted([T(k) for k in range(4)]))
    assert out == [Dispatch(0, (0, 2)), Dispatch(1, (1, 3))]
    # each idle worker takes from a different victim
    assert s.handle(*workers(2, 3, 4)) == [Steal(0, 1), Steal(1, 1)]


def test_no_steal_from_a_worker_holding_one_task() -> None:
    s = SchedulerState()
    with_long_tasks(s)
    assert s.handle(WorkerJoined(0), Submitted([T(0)])) == [Dispatch(0, (0,))]
    assert s.handle(WorkerJoined(1)) == []


def test_returned_tasks_keep_their_rank() -> None:
    s = SchedulerState()
    out = s.handle(WorkerJoined(0), Submitted([T(0), T(1, priority=1), T(2)]))
    assert out == [Dispatch(0, (1, 0))]
    with_long_tasks(s)
    assert s.handle(Finished(0, [(1, True, 1.0)], now=1.0)) == [Release((1,))]
    # the worker took nothing more (it still holds 0); 2 is ready
    assert s.ready_keys() == [2]
    assert s.handle(Returned(0, [0])) == [Dispatch(0, (0,))]
    assert s.ready_keys() == [2]


def test_returned_with_nothing_or_with_keys_no_longer_held() -> None:
    s = SchedulerState()
    s.handle(WorkerJoined(0), Submitted([T(0), T(1)]))
    assert s.handle(WorkerJoined(1)) == [Steal(0, 1)]
    # the worker finished 1 before the steal reached it
    out = s.handle(Finished(0, [(0, True, 1.0), (1, True, 1.0)], now=1.0), Returned(0, [1]))
    assert out == [Release((0, 1))]
    assert s.pending() == 0
    assert s.handle(Returned(7, [0])) == []


# -- determinism ---------------------------------------------------------------------------


class Driver:
    """Plays a random but seeded runtime against a SchedulerState."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.state = SchedulerState()
        self.log: list[tuple[tuple[object, ...], list[Instruction]]] = []
        self.held: dict[int, list[int]] = {}
        self.steals: list[Steal] = []
        self.specs: dict[int, TaskSpec] = {}
        self.done: set[int] = set()
        self.dead: set[int] = set()  # failed, cancelled or crashed
        self.finals: Counter[int] = Counter()
        self.released: Counter[int] = Counter()
        self.now = 0.0
        self.next_key = 0
        self.next_worker = 0
        self.total = self.rng.randint(40, 120)

    def handle(self, *events: object) -> None:
        out = self.state.handle(*events)  # type: ignore[arg-type]
        self.log.append((events, out))
        for ins in out:
            if isinstance(ins, Dispatch):
                assert ins.keys
                assert ins.worker in self.held
                for key in ins.keys:
                    assert key in self.specs
                    assert key not in self.done and key not in self.dead
                    assert all(key not in keys for keys in self.held.values())
                    for dep in self.specs[key].deps:
                        assert dep in self.done, (key, dep)
                self.held[ins.worker].extend(ins.keys)
            elif isinstance(ins, (Fail, Cancel)):
                assert ins.cause in self.dead
                for key in ins.keys:
                    self.final(key, dead=True)
            elif isinstance(ins, Lost):
                assert ins.worker not in self.held
                self.final(ins.key, dead=True)
            elif isinstance(ins, Isolate):
                for key in ins.keys:
                    assert key in self.specs and key not in self.done
            elif isinstance(ins, Retry):
                if ins.reason == "error":  # finish() counted it as final
                    self.finals[ins.key] -= 1
                    self.dead.discard(ins.key)
            elif isinstance(ins, Steal):
                assert ins.count >= 1
                self.steals.append(ins)
            elif isinstance(ins, Release):
                for key in ins.keys:
                    assert key in self.done
                    self.released[key] += 1
            else:  # pragma: no cover
                raise AssertionError(ins)

    def final(self, key: int, *, dead: bool) -> None:
        self.finals[key] += 1
        (self.dead if dead else self.done).add(key)

    def submit(self) -> Submitted:
        tasks = []
        for _ in range(self.rng.randint(1, 10)):
            if self.next_key == self.total:
                break
            key = self.next_key
            self.next_key += 1
            live = [k for k in range(key) if k not in self.dead]
            deps = tuple(self.rng.sample(live, min(len(live), self.rng.choice([0, 0, 1, 1, 2, 3]))))
            spec = TaskSpec(
                key,
                deps,
                self.rng.choice([0, 0, 0, 1, -1]),
                retries=self.rng.choice([0, 0, 1, 3]),
                retry_delay=self.rng.choice([0.0, 0.001]),
            )
            self.specs[key] = spec
            tasks.append(spec)
        return Submitted(tasks, now=self.now)

    def join(self) -> WorkerJoined:
        worker = self.next_worker
        self.next_worker += 1
        self.held[worker] = []
        return WorkerJoined(worker, now=self.now)

    def step(self) -> bool:
        rng = self.rng
        self.now += rng.uniform(0.0, 0.01)
        busy = [w for w, keys in self.held.items() if keys]
        roll = rng.random()
        if self.next_key < self.total and (roll < 0.25 or not busy):
            events: list[object] = [self.submit()]
            if busy and rng.random() < 0.3:
                events.append(self.finish(rng.choice(busy)))
            self.handle(*events)
        elif self.steals and roll < 0.4:
            steal = self.steals.pop(rng.randrange(len(self.steals)))
            keys = self.held.get(steal.worker)
            if keys is not None:
                # the worker gives back its last unstarted tasks (never the running one)
                back = keys[1:][-steal.count :] if len(keys) > 1 else []
                for key in back:
                    keys.remove(key)
                if self.done and rng.random() < 0.3:
                    # a task it finished meanwhile: not held any more, to be ignored
                    back = [*back, rng.choice(sorted(self.done))]
                self.handle(Returned(steal.worker, back, now=self.now))
        elif 0.4 <= roll < 0.45:
            self.cancel_one()
        elif roll < 0.48 and len(self.held) > 1 and busy:
            victim = rng.choice(busy)
            del self.held[victim]
            self.steals = [s for s in self.steals if s.worker != victim]
            events = [WorkerLost(victim, now=self.now)]
            if rng.random() < 0.7:
                events.append(self.join())
            self.handle(*events)
        elif roll < 0.5 and len(self.held) < 6:
            self.handle(self.join())
        elif busy:
            self.handle(self.finish(rng.choice(busy)))
        elif self.next_key < self.total:
            self.handle(self.submit())
        elif (wakeup := self.state.next_wakeup()) is not None:
            self.now = max(self.now, wakeup)
            self.handle(Tick(self.now))
        else:
            return False
        return True

    def finish(self, worker: int) -> Finished:
        keys = self.held[worker]
        n = self.rng.randint(1, len(keys))
        results = []
        retriable = []
        for key in keys[:n]:
            ok = self.rng.random() > 0.1
            results.append((key, ok, self.rng.choice([1e-5, 1e-3, 0.05, 0.5])))
            if not ok and self.rng.random() < 0.5:
                retriable.append(key)
            self.final(key, dead=not ok)
        del keys[:n]
        return Finished(worker, results, now=self.now, retriable=tuple(retriable))

    def cancel_one(self) -> None:
        held = {k for keys in self.held.values() for k in keys}
        open_keys = [
            k for k in self.specs if k not in self.done and k not in self.dead and k not in held
        ]
        if open_keys:
            key = self.rng.choice(open_keys)
            self.final(key, dead=True)
            self.handle(Cancelled([key], now=self.now))

    def run(self) -> None:
        self.handle(*(self.join() for _ in range(self.rng.randint(1, 4))))
        for _ in range(20_000):
            if not self.step():
                break
        else:  # pragma: no cover
            raise AssertionError("the simulation did not settle")


@pytest.mark.parametrize("seed", range(12))
def test_random_runs_are_deterministic_and_every_task_ends_once(seed: int) -> None:
    first = Driver(seed)
    first.run()
    second = Driver(seed)
    second.run()
    assert first.log == second.log
    assert len(first.log) > 10

    # every task reached a final state exactly once
    assert set(first.finals) == set(range(first.total))
    assert all(count == 1 for count in first.finals.values()), first.finals.most_common(3)
    assert first.done.isdisjoint(first.dead)
    # every successful result was released exactly once, nothing else was
    assert set(first.released) == first.done
    assert all(count == 1 for count in first.released.values())
    # nothing left behind
    assert first.state.pending() == 0
    assert first.state.graph.nodes == {}
    assert first.state.ready_keys() == []
    assert all(not w.assigned for w in first.state.workers.values())


def test_random_runs_differ_between_seeds() -> None:
    a, b = Driver(1), Driver(2)
    a.run()
    b.run()
    assert a.log != b.log


def test_durations_are_averaged_per_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny tasks of one function must not make another's long tasks queue deep."""
    monkeypatch.undo()  # the real INITIAL_PREFETCH
    s = SchedulerState()
    s.handle(*workers(0), Submitted([T(0)]))  # group 0
    s.handle(Finished(0, [(0, True, 1e-6)], now=1e-3))
    assert s.prefetch_depth(0) > 1
    out = s.handle(Submitted([TaskSpec(k, (), 0, 7) for k in range(1, 5)]))
    assert out == [Dispatch(0, (1,))]  # group 7 is unmeasured: one at a time
    out = s.handle(Finished(0, [(1, True, 1.0)], now=1.0012))
    assert s.prefetch_depth(7) == 1
    assert out == [Release((1,)), Dispatch(0, (2,))]
