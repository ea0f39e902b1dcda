"""The runtime takes a burst of submits in slices (``MAX_INTAKE`` a turn).

Driven turn by turn, without a runtime thread: a backend that records what
it is sent stands in for the workers.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pel
from pel import _runtime
from pel._futures import Future
from pel._record import Prepared, Record
from pel._task import DEFAULT_RETRIES, DEFAULT_RETRY_DELAY, TaskPolicy
from pel.backends.base import Backend, BackendOptions, Call, Report
from pel.testing import wait_until


class Recording(Backend):
    """Records the calls sent; reports nothing (no call ever finishes)."""

    name = "recording"

    def __init__(self) -> None:
        super().__init__(BackendOptions(1, None, (), None))
        self.sent: list[list[int]] = []

    def start_worker(self) -> int:
        return 0

    def send(self, worker: int, calls: list[Call]) -> None:
        self.sent.append([call.key for call in calls])

    def steal(self, worker: int, count: int) -> None:
        pass

    def kill_worker(self, worker: int) -> None:
        pass

    def drop(self, worker: int, keys: list[int]) -> None:
        pass

    def wait(self, timeout: float | None) -> list[Report]:
        return []

    def wakeup(self) -> None:
        pass

    def close(self, *, kill: bool) -> None:
        pass


def _noop() -> None:
    pass


def _runtime_with(tasks: int) -> tuple[_runtime.Runtime, Recording]:
    backend = Recording()
    keys = itertools.count()
    runtime = _runtime.Runtime(backend, 1, keys)
    policy = TaskPolicy(DEFAULT_RETRIES, (), None, DEFAULT_RETRY_DELAY)
    prepared = Prepared(_noop, None, 0, None, "_noop", 0, policy)
    runtime._inbox.append(("joined", 0))
    for _ in range(tasks):
        future: Future[Any] = Future(runtime, next(keys), "_noop")
        runtime._inbox.append(Record(future, prepared, ((), {}), ()))
    return runtime, backend


def test_a_burst_is_taken_in_slices_and_the_first_slice_is_sent_at_once() -> None:
    burst = 2 * _runtime.MAX_INTAKE + 10
    runtime, backend = _runtime_with(burst)
    assert runtime._turn([])
    assert len(runtime._records) == _runtime.MAX_INTAKE
    assert len(runtime._inbox) == burst - _runtime.MAX_INTAKE
    assert backend.sent == [[0]]  # dispatched before the rest of the burst is taken
    assert runtime._wait_timeout() == 0  # the next turn does not wait
    assert runtime._turn([])
    assert len(runtime._records) == 2 * _runtime.MAX_INTAKE
    assert runtime._turn([])
    assert len(runtime._records) == burst
    assert not runtime._inbox


def test_a_close_queued_behind_a_burst_is_taken_with_it() -> None:
    """shutdown() and terminate() are not kept waiting behind the slices."""
    runtime, _ = _runtime_with(2 * _runtime.MAX_INTAKE)
    runtime._started = True  # as after a first submit (no thread here)
    runtime.close(wait=False, cancel_futures=False)
    runtime._turn([])
    assert runtime._closing and len(runtime._records) == 2 * _runtime.MAX_INTAKE


def test_a_task_found_cancelled_at_dispatch_is_cancelled_next_turn() -> None:
    """Its own cancel entry waits in the inbox behind more than a turn's
    intake; meanwhile it must be neither dispatched again (a second claim of
    a cancelled future raises) nor kept."""
    runtime, backend = _runtime_with(2 * _runtime.MAX_INTAKE + 10)
    first = runtime._inbox[1]
    assert isinstance(first, Record)
    first.future._cancel()  # as Future.cancel() does, its entry posted last
    runtime._inbox.append(("cancel", first.future))
    runtime._turn([])  # takes it, finds it cancelled as it dispatches
    runtime._turn([])
    assert ("cancel", first.future) in runtime._inbox
    assert first.future.key not in runtime._records
    assert first.future.key not in runtime._state.graph.nodes
    while runtime._inbox:
        runtime._turn([])
    assert first.future.cancelled()
    assert all(first.future.key not in keys for keys in backend.sent)


def _submit_dependents(count: int) -> list[pel.Future[Any]]:
    ex, failed = _HELD
    return [ex.submit(_noop_of, failed) for _ in range(count)]


def _noop_of(value: Any) -> Any:
    return value


def _boom() -> None:
    raise ValueError("boom")


#: (executor, failed future), for the task below: given as an argument, the
#: failed future would make that task a dependent too.
_HELD: list[Any] = []


def test_inline_settles_a_burst_of_doomed_tasks_submitted_from_a_task() -> None:
    """A task on the inline backend submits more than a turn takes, all
    depending on a failed task: every slice is settled at intake (no event),
    and the pump must still go on to the next slice before submit returns."""
    with pel.Executor(backend="inline") as ex:
        _HELD[:] = [ex, ex.submit(_boom)]
        try:
            outer = ex.submit(_submit_dependents, 3 * _runtime.MAX_INTAKE)
            inner = outer.result()
            assert all(f.done() for f in inner)
            assert all(isinstance(f.exception(), pel.DependencyError) for f in inner)
        finally:
            _HELD.clear()


def _identity(value: Any) -> Any:
    return value


def _after(gate: threading.Event, value: Any) -> Any:
    assert gate.wait(30)
    return value


def test_submits_do_not_wait_again_on_a_runtime_stuck_in_a_callback(
    monkeypatch: Any,
) -> None:
    """A done-callback holds the runtime thread: the first submit past the
    backlog waits for a turn and gives up; the rest do not wait at all, so
    many submits finish (each waiting would take a second here: the test's
    own timeout would end it)."""
    monkeypatch.setattr(_runtime, "BACKLOG_WAIT", 1.0)
    with pel.Executor(1, backend="threads") as ex:
        attached, gate, stuck = threading.Event(), threading.Event(), threading.Event()
        where: list[str] = []

        def hold_runtime(_: Any) -> None:
            where.append(threading.current_thread().name)
            stuck.set()
            gate.wait(300)  # past the test timeout: only gate.set() ends it

        first = ex.submit(_after, attached, 0)
        first.add_done_callback(hold_runtime)  # before it can finish
        attached.set()
        assert stuck.wait(30)
        futures = [ex.submit(_identity, i) for i in range(2 * _runtime.MAX_BACKLOG)]
        gate.set()
        assert [f.result(timeout=30) for f in futures] == list(range(2 * _runtime.MAX_BACKLOG))
        assert where == ["pel-runtime"]


def test_a_callback_on_the_runtime_thread_submits_past_the_backlog_without_waiting(
    monkeypatch: Any,
) -> None:
    """The runtime thread never waits for its own turn."""
    monkeypatch.setattr(_runtime, "BACKLOG_WAIT", 10.0)
    with pel.Executor(1, backend="threads") as ex:
        attached, done = threading.Event(), threading.Event()
        made: list[pel.Future[Any]] = []
        where: list[str] = []

        def fan_out(_: Any) -> None:
            where.append(threading.current_thread().name)
            made.extend(ex.submit(_identity, i) for i in range(2 * _runtime.MAX_BACKLOG))
            done.set()

        first = ex.submit(_after, attached, 0)
        first.add_done_callback(fan_out)
        attached.set()
        assert done.wait(5)  # ten seconds a submit, were it to wait
        assert where == ["pel-runtime"]
        assert [f.result(timeout=30) for f in made] == list(range(2 * _runtime.MAX_BACKLOG))


def test_a_submitter_past_the_backlog_waits_until_a_turn_begins(monkeypatch: Any) -> None:
    monkeypatch.setattr(_runtime, "BACKLOG_WAIT", 60.0)
    runtime, _ = _runtime_with(_runtime.MAX_BACKLOG + 1)
    runtime._thread = threading.Thread()  # stands for a runtime thread (not this one)
    returned = threading.Event()

    def submitter() -> None:
        runtime.throttle()
        returned.set()

    thread = threading.Thread(target=submitter)
    thread.start()
    assert wait_until(lambda: runtime._throttled == 1, timeout=30)
    assert not returned.is_set()
    runtime._turn([])
    assert returned.wait(30)
    thread.join(30)
    assert runtime._stalled_at == -1  # it did not run out
