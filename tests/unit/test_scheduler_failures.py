"""The scheduler's failure handling, driven by events alone: retries and their
backoff, timeouts, worker loss, splitting map chunks, cancelling running tasks."""

from __future__ import annotations

import pytest

from pel.scheduler import (
    Cancelled,
    Dispatch,
    Fail,
    Finished,
    Isolate,
    Kill,
    Lost,
    Retry,
    SchedulerState,
    Split,
    Started,
    Submitted,
    TaskSpec,
    Tick,
    WorkerJoined,
    WorkerLost,
    policy,
)


def spec(key: int, *deps: int, **options: object) -> TaskSpec:
    return TaskSpec(key, tuple(deps), **options)  # type: ignore[arg-type]


def long_tasks(state: SchedulerState) -> None:
    """Every worker holds one task at a time (tasks are believed long)."""
    state.group_seconds[0] = 1.0


def test_retry_delay_doubles_with_jitter_and_has_a_ceiling() -> None:
    delays = [policy.retry_delay(0.1, attempt, key=7) for attempt in range(1, 6)]
    for attempt, delay in enumerate(delays, start=1):
        assert 0.5 * 0.1 * 2 ** (attempt - 1) <= delay <= 1.5 * 0.1 * 2 ** (attempt - 1)
    assert policy.retry_delay(0.1, 3, key=7) == delays[2]  # deterministic
    assert len({policy.retry_delay(0.1, 1, key=k) for k in range(20)}) > 10  # spread
    assert policy.retry_delay(1.0, 40, key=0) == policy.MAX_RETRY_DELAY
    assert policy.retry_delay(0.0, 3, key=1) == 0.0


def test_a_crash_charges_only_the_running_task_and_requeues_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(policy, "INITIAL_PREFETCH", 3)
    s = SchedulerState()
    out = s.handle(
        WorkerJoined(0),
        Submitted([spec(0, retries=1, retry_delay=1.0, isolated=True), spec(1), spec(2)]),
    )
    assert out == [Dispatch(0, (0, 1, 2))]
    long_tasks(s)
    out = s.handle(WorkerLost(0, now=1.0))
    [retry] = out
    assert retry == Retry(0, 1, retry.delay, "crash")
    assert s.graph.nodes[0].attempts == 1
    assert [s.graph.nodes[k].attempts for k in (1, 2)] == [0, 0]
    # the others go back at once; 0 waits out its backoff
    assert s.handle(WorkerJoined(1, now=1.0)) == [Dispatch(1, (1,))]
    assert s.next_wakeup() == pytest.approx(1.0 + retry.delay)


def test_retry_waits_for_its_backoff_then_runs() -> None:
    s = SchedulerState()
    long_tasks(s)
    s.handle(WorkerJoined(0), Submitted([spec(0, retries=2, retry_delay=0.5, isolated=True)]))
    [retry] = s.handle(WorkerLost(0, now=10.0), WorkerJoined(1, now=10.0))
    assert retry.key == 0 and retry.attempt == 1 and retry.reason == "crash"
    assert 0.25 <= retry.delay <= 0.75
    assert s.handle(Tick(now=10.0 + retry.delay / 2)) == []
    assert s.handle(Tick(now=10.0 + retry.delay)) == [Dispatch(1, (0,))]
    assert s.next_wakeup() is None


def test_a_task_that_keeps_crashing_is_lost_after_its_retries() -> None:
    s = SchedulerState()
    long_tasks(s)
    s.handle(WorkerJoined(0), Submitted([spec(0, retries=2, isolated=True), spec(1, 0)]))
    now, worker = 0.0, 0
    for attempt in (1, 2):
        out = s.handle(WorkerLost(worker, now=now))
        assert [type(i) for i in out] == [Retry] and out[0].attempt == attempt  # type: ignore[union-attr]
        worker += 1
        now += 100.0
        assert s.handle(WorkerJoined(worker, now=now)) == [Dispatch(worker, (0,))]
    assert s.handle(WorkerLost(worker, now=now)) == [Lost(worker, 0, False, 3), Fail((1,), 0)]
    assert s.pending() == 0


def test_retriable_error_is_retried_within_budget_others_fail_at_once() -> None:
    s = SchedulerState()
    long_tasks(s)
    s.handle(WorkerJoined(0), Submitted([spec(0, retries=1), spec(1, retries=1)]))
    out = s.handle(Finished(0, [(0, False, 1.0)], now=1.0, retriable=(0,)))
    assert out == [Retry(0, 1, 0.0, "error"), Dispatch(0, (0,))]
    # not retriable: final at once, budget or not
    s2 = SchedulerState()
    s2.handle(WorkerJoined(0), Submitted([spec(0, retries=5), spec(1, 0)]))
    assert s2.handle(Finished(0, [(0, False, 1.0)], now=1.0)) == [Fail((1,), 0)]


def test_retriable_error_past_the_budget_fails() -> None:
    s = SchedulerState()
    long_tasks(s)
    s.handle(WorkerJoined(0), Submitted([spec(0, retries=1), spec(1, 0)]))
    # no delay asked: it is sent again at once
    out = s.handle(Finished(0, [(0, False, 1.0)], now=1.0, retriable=(0,)))
    assert out == [Retry(0, 1, 0.0, "error"), Dispatch(0, (0,))]
    out = s.handle(Finished(0, [(0, False, 1.0)], now=3.0, retriable=(0,)))
    assert out == [Fail((1,), 0)]


def test_timeout_kills_the_worker_and_charges_the_task() -> None:
    s = SchedulerState()
    long_tasks(s)
    s.handle(WorkerJoined(0), Submitted([spec(0, timeout=2.0), spec(1)]))
    assert s.next_wakeup() is None  # the clock starts when the task does
    assert s.handle(Started(0, 0, now=5.0)) == []
    assert s.next_wakeup() == 7.0
    assert s.handle(Tick(now=6.9)) == []
    assert s.handle(Tick(now=7.0)) == [Kill(0)]
    # a killed worker takes nothing more, and the kill is charged to task 0
    assert s.handle(Submitted([spec(2)])) == []
    out = s.handle(WorkerLost(0, now=7.1), WorkerJoined(1, now=7.1))
    assert out == [Lost(0, 0, True, 1), Dispatch(1, (1,))]


def test_timeout_with_retries_left_retries_as_a_timeout() -> None:
    s = SchedulerState()
    long_tasks(s)
    s.handle(WorkerJoined(0), Submitted([spec(0, timeout=1.0, retries=1)]))
    s.handle(Started(0, 0, now=0.0))
    assert s.handle(Tick(now=1.0)) == [Kill(0)]
    [retry] = s.handle(WorkerLost(0, now=1.0))
    assert retry.reason == "timeout"  # type: ignore[union-attr]


def test_a_task_that_finishes_before_its_kill_lands_is_not_charged() -> None:
    s = SchedulerState()
    long_tasks(s)
    s.handle(WorkerJoined(0), Submitted([spec(0, timeout=1.0)]))
    s.handle(Started(0, 0, now=0.0))
    assert s.handle(Tick(now=1.5)) == [Kill(0)]
    s.handle(Finished(0, [(0, True, 1.4)], now=1.6))
    assert s.handle(WorkerLost(0, now=1.7)) == []
    assert s.pending() == 0


def test_a_finished_task_does_not_time_out_and_a_stale_start_is_ignored() -> None:
    s = SchedulerState()
    long_tasks(s)
    s.handle(WorkerJoined(0), Submitted([spec(0, timeout=1.0), spec(1)]))
    s.handle(Started(0, 0, now=0.0))
    assert Dispatch(0, (1,)) in s.handle(Finished(0, [(0, True, 0.5)], now=0.5))
    assert s.handle(Tick(now=5.0)) == []
    assert s.handle(Started(0, 0, now=6.0)) == []  # no longer assigned
    assert s.next_wakeup() is None or s.handle(Tick(now=100.0)) == []


def test_a_splittable_task_that_crashes_is_split_without_charge() -> None:
    s = SchedulerState()
    long_tasks(s)
    s.handle(WorkerJoined(0), Submitted([spec(0, retries=0, splittable=True)]))
    assert s.handle(WorkerLost(0)) == [Split(0)]
    assert 0 not in s.graph.nodes


def test_cancelling_a_delayed_retry_drops_it() -> None:
    s = SchedulerState()
    long_tasks(s)
    s.handle(
        WorkerJoined(0),
        Submitted([spec(0, retries=1, retry_delay=1.0, isolated=True), spec(1, 0)]),
    )
    s.handle(WorkerLost(0, now=0.0), WorkerJoined(1, now=0.0))
    out = s.handle(Cancelled([0], now=0.1))
    assert [type(i).__name__ for i in out] == ["Cancel"]
    assert s.handle(Tick(now=10.0)) == []
    assert s.pending() == 0


def test_a_crash_nobody_can_be_blamed_for_isolates_every_task_it_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first task held may have finished with its result unsent: nobody is
    charged; all go back isolated, and the next crash is known."""
    monkeypatch.setattr(policy, "INITIAL_PREFETCH", 3)
    s = SchedulerState()
    s.handle(WorkerJoined(0), Submitted([spec(0, retries=0), spec(1, retries=0), spec(2)]))
    long_tasks(s)
    assert s.handle(WorkerLost(0)) == [Isolate((0, 1, 2))]
    assert all(s.graph.nodes[k].attempts == 0 for k in (0, 1, 2))
    assert s.handle(WorkerJoined(1)) == [Dispatch(1, (0,))]
    # 0 was first again, isolated this time: it is the culprit
    assert s.handle(WorkerLost(1), WorkerJoined(2)) == [Lost(1, 0, False, 1), Dispatch(2, (1,))]


def test_a_worker_that_dies_starting_charges_nobody() -> None:
    s = SchedulerState()
    long_tasks(s)
    s.handle(WorkerJoined(0), Submitted([spec(0, retries=0, isolated=True)]))
    out = s.handle(WorkerLost(0, started=False), WorkerJoined(1))
    assert out == [Dispatch(1, (0,))]
    assert s.graph.nodes[0].attempts == 0


def test_deadlines_are_kept_per_worker_not_per_task() -> None:
    s = SchedulerState()
    long_tasks(s)
    s.handle(WorkerJoined(0), Submitted([spec(k, timeout=3600.0) for k in range(100)]))
    for key in range(100):
        s.handle(Started(0, key, now=float(key)))
        s.handle(Finished(0, [(key, True, 0.5)], now=key + 0.5))
    assert s.pending() == 0
    assert s.next_wakeup() is None
