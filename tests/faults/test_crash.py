"""A worker process that dies, with retries off: the error its tasks get, and what
survives it. (Retries are tested in test_recovery.py.)

Processes backend only: the other backends have no worker process to lose.
Every wait is bounded, so a pel that hangs fails here instead of blocking.
"""

from __future__ import annotations

import concurrent.futures
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import pel
import tasks
from pel.testing import alive, wait_for_exit, wait_until

#: Long enough for a loaded 2-core machine, short enough that a hang fails fast.
RESULT_TIMEOUT = 30


@pytest.fixture
def backend() -> str:
    """Overrides the parametrized fixture of tests/conftest.py: processes only."""
    return "processes"


def crash_error(future: pel.Future[Any]) -> pel.WorkerCrashedError:
    """The future's error, which must be a WorkerCrashedError (waits, bounded)."""
    exc = future.exception(timeout=RESULT_TIMEOUT)
    assert isinstance(exc, pel.WorkerCrashedError), f"expected WorkerCrashedError, got {exc!r}"
    return exc


def crashed_pid(exc: BaseException) -> int:
    found = re.search(r"pid (\d+)", str(exc))
    assert found, f"the message does not name the worker's pid: {exc}"
    return int(found.group(1))


def started(ex: pel.Executor, count: int) -> list[int]:
    """Run one task so the workers exist; return their pids."""
    assert ex.submit(tasks.identity, 1).result(timeout=RESULT_TIMEOUT) == 1
    pids = ex.worker_pids()
    assert len(pids) == count
    return pids


CRASHES = [
    pytest.param(tasks.exit_process, (1,), "code 1", 1, id="os._exit(1)"),
    pytest.param(tasks.exit_process, (7,), "code 7", 7, id="os._exit(7)"),
    pytest.param(tasks.kill_self, (), "SIGKILL", -9, id="SIGKILL"),
    pytest.param(tasks.segfault, (), "SIGSEGV", -11, id="segfault"),
    pytest.param(tasks.raise_system_exit, (3,), "code 3", 3, id="SystemExit(3)"),
]


@pytest.mark.parametrize(("fn", "args", "how", "exitcode"), CRASHES)
def test_crash_fails_the_future_with_worker_crashed_error(
    make_executor: Callable[..., pel.Executor],
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    how: str,
    exitcode: int,
) -> None:
    ex = make_executor(2, retries=0)
    before = started(ex, 2)
    make_executor.remember_pids()  # type: ignore[attr-defined]

    exc = crash_error(ex.submit(fn, *args))

    assert isinstance(exc, concurrent.futures.BrokenExecutor)
    assert isinstance(exc, pel.PelError)
    message = str(exc)
    assert how in message
    assert fn.__name__ in message
    assert exc.exitcode == exitcode
    dead = crashed_pid(exc)
    assert dead in before
    assert wait_for_exit([dead], timeout=10) == []

    # The dead worker was replaced: as many workers as before, the dead one not among them.
    assert wait_until(
        lambda: len(ex.worker_pids()) == 2 and dead not in ex.worker_pids(), timeout=10
    ), f"worker {dead} was not replaced: {ex.worker_pids()}"
    make_executor.remember_pids()  # type: ignore[attr-defined]
    after = ex.worker_pids()
    assert set(after) != set(before)
    assert all(alive(p) for p in after)

    # And the executor still works, on every worker.
    assert ex.submit(tasks.add, 2, 3).result(timeout=RESULT_TIMEOUT) == 5
    assert list(ex.map(tasks.add, range(20), range(20), chunksize=1)) == [2 * i for i in range(20)]


def test_system_exit_with_a_message_is_code_1(make_executor: Callable[..., pel.Executor]) -> None:
    ex = make_executor(1, retries=0)
    exc = crash_error(ex.submit(tasks.raise_system_exit, "bye"))
    assert "code 1" in str(exc)
    assert exc.exitcode == 1
    assert ex.submit(tasks.identity, "still here").result(timeout=RESULT_TIMEOUT) == "still here"


def test_dependents_of_a_crashed_task_fail_with_dependency_error(
    make_executor: Callable[..., pel.Executor], tmp_path: Path
) -> None:
    ex = make_executor(2, retries=0)
    gate = tmp_path / "crash-now"
    crash = ex.submit(tasks.exit_after_file, str(gate), 1)
    # Submitted while the crashing task is still running: they wait in the graph.
    child = ex.submit(tasks.identity, crash)
    grandchild = ex.submit(tasks.add, child, 1)
    bystander = ex.submit(tasks.add, 1, 1)
    assert bystander.result(timeout=RESULT_TIMEOUT) == 2
    gate.touch()

    exc = crash_error(crash)
    assert "exit_after_file" in str(exc)
    for dependent in (child, grandchild):
        err = dependent.exception(timeout=RESULT_TIMEOUT)
        assert isinstance(err, pel.DependencyError), repr(err)
    err = child.exception()
    assert err.dependency == "exit_after_file"
    assert isinstance(err.__cause__, pel.WorkerCrashedError)
    assert "exit_after_file" in str(err)

    # Submitted after the crash is known: fails at once, the same way.
    late = ex.submit(tasks.identity, crash)
    err = late.exception(timeout=RESULT_TIMEOUT)
    assert isinstance(err, pel.DependencyError)
    assert isinstance(err.__cause__, pel.WorkerCrashedError)

    assert ex.submit(tasks.identity, 5).result(timeout=RESULT_TIMEOUT) == 5


def test_results_finished_before_the_crash_are_delivered(
    make_executor: Callable[..., pel.Executor],
) -> None:
    ex = make_executor(2, retries=0)
    early = [ex.submit(tasks.identity, i) for i in range(8)]
    assert [f.result(timeout=RESULT_TIMEOUT) for f in early] == list(range(8))
    crash_error(ex.submit(tasks.kill_self))
    assert [f.result(timeout=0) for f in early] == list(range(8))


def test_system_exit_sends_the_results_already_computed_first(
    make_executor: Callable[..., pel.Executor],
) -> None:
    """One worker holds them all: its earlier results leave before it exits."""
    ex = make_executor(1, retries=0)
    early = [ex.submit(tasks.identity, i) for i in range(3)]
    crash = ex.submit(tasks.raise_system_exit, 3)
    assert "code 3" in str(crash_error(crash))
    assert [f.result(timeout=RESULT_TIMEOUT) for f in early] == [0, 1, 2]


def test_a_finished_task_is_not_lost_with_the_next_one(
    make_executor: Callable[..., pel.Executor],
) -> None:
    """A task that took a while and finished is delivered even when the very next
    task on the same worker kills it."""
    ex = make_executor(1, retries=0)
    finished = ex.submit(tasks.sleep_then, 0.2, "finished")
    crash = ex.submit(tasks.exit_process, 1)
    assert "code 1" in str(crash_error(crash))
    assert finished.result(timeout=RESULT_TIMEOUT) == "finished"


def test_a_result_is_delivered_while_the_worker_runs_its_next_task(
    make_executor: Callable[..., pel.Executor], tmp_path: Path
) -> None:
    """The result of a finished task must not wait for the worker's next task (here,
    one that then crashes): it is delivered while that task still runs."""
    ex = make_executor(1, retries=0)
    gate = tmp_path / "crash-now"
    try:
        first = ex.submit(tasks.sleep_then, 0.05, "first")
        crash = ex.submit(tasks.exit_after_file, str(gate), 1)
        assert first.result(timeout=5) == "first"
        assert not crash.done()
    finally:
        gate.touch()
    assert "code 1" in str(crash_error(crash))
    assert first.result(timeout=0) == "first"


def test_a_crash_does_not_touch_the_other_workers_tasks(
    make_executor: Callable[..., pel.Executor], tmp_path: Path
) -> None:
    ex = make_executor(2, retries=0)
    started(ex, 2)
    gate = tmp_path / "release"
    try:
        held = ex.submit(tasks.wait_for_file, str(gate), "survived")
        crash = ex.submit(tasks.kill_self)
        assert "SIGKILL" in str(crash_error(crash))
    finally:
        gate.touch()
    assert held.result(timeout=RESULT_TIMEOUT) == "survived"


def test_repeated_crashes_leave_the_executor_usable(
    make_executor: Callable[..., pel.Executor],
) -> None:
    """Crash after crash, each reported and each worker replaced; nothing breaks."""
    ex = make_executor(1, retries=0)
    seen: set[int] = set()
    for round_ in range(15):
        early = [ex.submit(tasks.identity, (round_, i)) for i in range(2)]
        crash = ex.submit(tasks.raise_system_exit, 3)
        exc = crash_error(crash)
        assert "code 3" in str(exc), f"round {round_}: {exc}"
        seen.add(crashed_pid(exc))
        assert [f.result(timeout=RESULT_TIMEOUT) for f in early] == [(round_, 0), (round_, 1)]
        make_executor.remember_pids()  # type: ignore[attr-defined]
    assert len(seen) == 15
    assert ex.submit(tasks.identity, "ok").result(timeout=RESULT_TIMEOUT) == "ok"
    assert wait_for_exit(seen, timeout=10) == []


def test_a_failing_initializer_breaks_the_executor(
    make_executor: Callable[..., pel.Executor],
) -> None:
    ex = make_executor(
        2, initializer=tasks.failing_initializer, initargs=("initializer broke: 42",)
    )
    futures = [ex.submit(tasks.identity, i) for i in range(3)]
    for future in futures:
        exc = crash_error(future)
        assert "initializer broke: 42" in str(exc)
        assert "RuntimeError" in str(exc)
    make_executor.remember_pids()  # type: ignore[attr-defined]

    with pytest.raises(pel.WorkerCrashedError, match="initializer broke: 42"):
        ex.submit(tasks.identity, 9)
    with pytest.raises(pel.WorkerCrashedError):
        ex.map(tasks.identity, [1, 2])
    # Shutting a broken executor down does not hang (the fixture checks its workers).
    ex.shutdown(wait=True)


def test_a_failing_initializer_with_queued_tasks_and_dependents(
    make_executor: Callable[..., pel.Executor],
) -> None:
    """More tasks than the workers take at once, and tasks that wait on others:
    every one fails with the initializer's error, and nothing else goes wrong."""
    ex = make_executor(
        2, initializer=tasks.failing_initializer, initargs=("initializer broke: 43",)
    )
    futures = [ex.submit(tasks.identity, i) for i in range(10)]
    futures += [ex.submit(tasks.add, futures[0], 1), ex.submit(tasks.add, futures[1], futures[2])]
    for future in futures:
        exc = future.exception(timeout=RESULT_TIMEOUT)
        assert isinstance(exc, (pel.WorkerCrashedError, pel.DependencyError)), repr(exc)
        assert "initializer broke: 43" in str(exc)
    make_executor.remember_pids()  # type: ignore[attr-defined]
    with pytest.raises(pel.WorkerCrashedError, match="initializer broke: 43"):
        ex.submit(tasks.identity, 9)


@pytest.mark.parametrize("ordered", [True, False])
def test_a_crash_inside_map(make_executor: Callable[..., pel.Executor], ordered: bool) -> None:
    ex = make_executor(2, retries=0)
    got = []
    with pytest.raises(pel.WorkerCrashedError) as info:
        for value in ex.map(tasks.exit_on, range(40), [25] * 40, chunksize=1, ordered=ordered):
            got.append(value)
    assert "code 1" in str(info.value)
    assert "exit_on" in str(info.value)
    assert 25 not in got
    assert len(set(got)) == len(got)
    if ordered:
        assert got == list(range(len(got)))  # in order, up to where the crash was met
    assert ex.submit(tasks.identity, "after").result(timeout=RESULT_TIMEOUT) == "after"
