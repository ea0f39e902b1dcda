"""Recovery: retries after crashes and errors, timeouts, worker recycling, and
the isolation of a poison item in ``map``. Processes backend (the others
cannot lose or kill a worker); every wait is bounded."""

from __future__ import annotations

import concurrent.futures
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import pel
import tasks
from pel.testing import wait_until

RESULT_TIMEOUT = 60
MakeExecutor = Callable[..., pel.Executor]


@pytest.fixture
def backend() -> str:
    return "processes"


# -- crashes ---------------------------------------------------------------------------


def test_a_crash_is_retried_and_the_task_succeeds(
    make_executor: MakeExecutor, tmp_path: Path
) -> None:
    ex = make_executor(2)
    future = ex.submit(tasks.crash_once, str(tmp_path / "crashed"), "second time lucky")
    assert future.result(timeout=RESULT_TIMEOUT) == "second time lucky"
    assert (tmp_path / "crashed").exists()
    assert wait_until(lambda: len(ex.worker_pids()) == 2, timeout=10)
    make_executor.remember_pids()  # type: ignore[attr-defined]


def test_a_task_that_always_crashes_fails_after_its_retries(make_executor: MakeExecutor) -> None:
    ex = make_executor(2, retries=2, retry_delay=0)
    before = ex.submit(tasks.identity, 0).result(timeout=RESULT_TIMEOUT)
    assert before == 0
    exc = ex.submit(tasks.exit_process, 5).exception(timeout=RESULT_TIMEOUT)
    assert isinstance(exc, pel.WorkerCrashedError)
    message = str(exc)
    assert "'exit_process' took its worker process down on 3 attempts" in message
    assert "exited with code 5" in message and "retries=2" in message
    assert exc.exitcode == 5
    make_executor.remember_pids()  # type: ignore[attr-defined]
    assert ex.submit(tasks.add, 2, 3).result(timeout=RESULT_TIMEOUT) == 5


def test_only_the_running_task_is_charged(make_executor: MakeExecutor) -> None:
    """One worker holds tasks queued behind the one that kills it: with retries
    off, only that one fails; the others run on the replacement."""
    ex = make_executor(1, retries=0)
    assert ex.submit(tasks.identity, 0).result(timeout=RESULT_TIMEOUT) == 0  # measured: quick
    before = [ex.submit(tasks.identity, i) for i in range(5)]
    crash = ex.submit(tasks.exit_process, 1)
    after = [ex.submit(tasks.identity, i) for i in range(5, 10)]
    assert isinstance(crash.exception(timeout=RESULT_TIMEOUT), pel.WorkerCrashedError)
    assert [f.result(timeout=RESULT_TIMEOUT) for f in before + after] == list(range(10))
    make_executor.remember_pids()  # type: ignore[attr-defined]


def test_task_options_override_the_executor_defaults(
    make_executor: MakeExecutor, tmp_path: Path
) -> None:
    ex = make_executor(1, retries=0)
    retried = pel.task(tasks.crash_once, retries=1)
    assert ex.submit(retried, str(tmp_path / "m"), 7).result(timeout=RESULT_TIMEOUT) == 7
    plain = ex.submit(tasks.crash_once, str(tmp_path / "n"), 7)
    assert isinstance(plain.exception(timeout=RESULT_TIMEOUT), pel.WorkerCrashedError)
    make_executor.remember_pids()  # type: ignore[attr-defined]


def test_dependents_wait_for_the_retry(make_executor: MakeExecutor, tmp_path: Path) -> None:
    ex = make_executor(2)
    root = ex.submit(tasks.crash_once, str(tmp_path / "m"), 20)
    child = ex.submit(tasks.add, root, 1)
    assert child.result(timeout=RESULT_TIMEOUT) == 21
    make_executor.remember_pids()  # type: ignore[attr-defined]


# -- a task's own errors ----------------------------------------------------------------


def test_retry_on_retries_the_listed_errors(make_executor: MakeExecutor, tmp_path: Path) -> None:
    ex = make_executor(2, retry_on=ConnectionError, retry_delay=0.01)
    calls = tmp_path / "calls"
    calls.mkdir()
    assert ex.submit(tasks.fail_times, str(calls), 2, "ok").result(timeout=RESULT_TIMEOUT) == "ok"
    assert len(list(calls.iterdir())) == 3


def test_errors_not_listed_are_not_retried(make_executor: MakeExecutor, tmp_path: Path) -> None:
    ex = make_executor(2, retry_on=ConnectionError)
    calls = tmp_path / "calls"
    calls.mkdir()
    future = ex.submit(tasks.fail_times, str(calls), 1, "ok", KeyError)
    assert isinstance(future.exception(timeout=RESULT_TIMEOUT), KeyError)
    assert len(list(calls.iterdir())) == 1


def test_the_last_error_is_raised_when_retries_run_out(
    make_executor: MakeExecutor, tmp_path: Path
) -> None:
    ex = make_executor(2)
    flaky = pel.task(tasks.fail_times, retries=2, retry_on=(ConnectionError,), retry_delay=0)
    calls = tmp_path / "calls"
    calls.mkdir()
    future = ex.submit(flaky, str(calls), 10, "never")
    with pytest.raises(ConnectionError, match="failure 3 of 10"):
        future.result(timeout=RESULT_TIMEOUT)
    assert len(list(calls.iterdir())) == 3


def test_map_items_are_retried_in_place(make_executor: MakeExecutor, tmp_path: Path) -> None:
    ex = make_executor(2)
    calls = tmp_path / "calls"
    calls.mkdir()
    flaky = pel.task(tasks.fail_times, retries=3, retry_on=ConnectionError, retry_delay=0.001)
    out = list(ex.map(flaky, [str(calls)] * 6, [2] * 6, range(6)))
    assert out == list(range(6))


# -- timeouts ------------------------------------------------------------------------------


def test_a_timeout_kills_the_attempt_and_fails_after_retries(make_executor: MakeExecutor) -> None:
    ex = make_executor(2, task_timeout=0.5, retries=1, retry_delay=0)
    slow = ex.submit(tasks.sleep_then, 600, "never")
    quick = [ex.submit(tasks.identity, i) for i in range(20)]
    exc = slow.exception(timeout=RESULT_TIMEOUT)
    assert isinstance(exc, pel.TaskTimeoutError)
    assert isinstance(exc, TimeoutError)
    assert "'sleep_then' ran past its timeout of 0.5 s on 2 attempts" in str(exc)
    assert [f.result(timeout=RESULT_TIMEOUT) for f in quick] == list(range(20))
    assert wait_until(lambda: len(ex.worker_pids()) == 2, timeout=10)
    make_executor.remember_pids()  # type: ignore[attr-defined]


def test_a_hung_attempt_is_retried(make_executor: MakeExecutor, tmp_path: Path) -> None:
    ex = make_executor(2)
    hung = pel.task(tasks.hang_once, timeout=0.5, retry_delay=0)
    assert ex.submit(hung, str(tmp_path / "m"), "done").result(timeout=RESULT_TIMEOUT) == "done"
    make_executor.remember_pids()  # type: ignore[attr-defined]


def test_a_task_can_opt_out_of_the_executor_timeout(make_executor: MakeExecutor) -> None:
    ex = make_executor(1, task_timeout=0.05, retries=0)
    patient = pel.task(tasks.sleep_then, timeout=math.inf)
    assert ex.submit(patient, 0.3, "waited").result(timeout=RESULT_TIMEOUT) == "waited"


def test_map_timeout_isolates_the_slow_item(make_executor: MakeExecutor) -> None:
    ex = make_executor(2, task_timeout=1.0, retries=0)
    seconds = [0.0] * 12
    seconds[5] = 600
    out = ex.map(tasks.sleep_then, seconds, range(12), chunksize=4)
    got: list[Any] = []
    errors: list[BaseException] = []
    while True:
        try:
            got.append(next(out))
        except StopIteration:
            break
        except pel.TaskTimeoutError as exc:
            errors.append(exc)
    assert got == [i for i in range(12) if i != 5]
    [error] = errors
    assert "raised for input item 5 of Executor.map" in error.__notes__
    make_executor.remember_pids()  # type: ignore[attr-defined]


# -- poison items in map -------------------------------------------------------------


@pytest.mark.parametrize("chunksize", [16, "auto"])
def test_map_isolates_the_item_that_kills_its_worker(
    make_executor: MakeExecutor, chunksize: Any
) -> None:
    ex = make_executor(2, retries=1, retry_delay=0)
    out = ex.map(tasks.exit_on, range(64), [37] * 64, chunksize=chunksize)
    got: list[int] = []
    failed: list[BaseException] = []
    while True:
        try:
            got.append(next(out))
        except StopIteration:
            break
        except pel.WorkerCrashedError as exc:
            failed.append(exc)
    assert got == [i for i in range(64) if i != 37]
    [error] = failed
    assert "code 1" in str(error)
    assert "raised for input item 37 of Executor.map" in error.__notes__
    make_executor.remember_pids()  # type: ignore[attr-defined]
    assert ex.submit(tasks.identity, "after").result(timeout=RESULT_TIMEOUT) == "after"


# -- recycling --------------------------------------------------------------------------


def test_max_tasks_per_worker_recycles_workers(make_executor: MakeExecutor) -> None:
    ex = make_executor(1, max_tasks_per_worker=2)
    pids = [ex.submit(tasks.pid).result(timeout=RESULT_TIMEOUT) for _ in range(6)]
    make_executor.remember_pids()  # type: ignore[attr-defined]
    assert len(set(pids)) == 3
    # queued work is handed over, not lost, when a worker retires mid-queue
    assert [
        f.result(timeout=RESULT_TIMEOUT) for f in [ex.submit(tasks.identity, i) for i in range(30)]
    ] == list(range(30))
    assert list(ex.map(tasks.add, range(50), range(50), chunksize=1)) == [2 * i for i in range(50)]


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_worker_memory_limit_retires_a_leaky_worker_between_tasks(
    make_executor: MakeExecutor,
) -> None:
    ex = make_executor(1, worker_memory_limit="150MiB", retries=0)
    first = ex.submit(tasks.hoard, 200).result(timeout=RESULT_TIMEOUT)
    second = ex.submit(tasks.pid).result(timeout=RESULT_TIMEOUT)
    make_executor.remember_pids()  # type: ignore[attr-defined]
    assert first != second


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_worker_memory_limit_kills_a_task_that_blows_past_it(make_executor: MakeExecutor) -> None:
    ex = make_executor(1, worker_memory_limit="100MiB", retries=0)
    future = ex.submit(tasks.hoard_then_wait, 300, 60)
    exc = future.exception(timeout=RESULT_TIMEOUT)
    assert isinstance(exc, pel.WorkerCrashedError)
    assert "1.5 x worker_memory_limit (100 MiB)" in str(exc)
    assert "out-of-memory" not in str(exc)
    make_executor.remember_pids()  # type: ignore[attr-defined]
    assert ex.submit(tasks.identity, 1).result(timeout=RESULT_TIMEOUT) == 1


def test_recycling_options_are_checked(make_executor: MakeExecutor) -> None:
    for bad in (0, -1, 1.5, "3"):
        with pytest.raises(pel.OptionError, match="max_tasks_per_worker"):
            make_executor(1, max_tasks_per_worker=bad)
    for bad_size in (0, -5, "lots", "12 parsecs", 1.5):
        with pytest.raises(pel.OptionError, match="worker_memory_limit"):
            make_executor(1, worker_memory_limit=bad_size)
    with pytest.raises(pel.OptionError, match="processes backend"):
        make_executor(1, backend="threads", max_tasks_per_worker=3)


def test_shutdown_waits_for_a_task_being_retried(
    make_executor: MakeExecutor, tmp_path: Path
) -> None:
    ex = make_executor(1, retry_delay=0.2)
    future = ex.submit(tasks.crash_once, str(tmp_path / "m"), "after the retry")
    make_executor.remember_pids()  # type: ignore[attr-defined]
    ex.shutdown(wait=True)
    assert future.result(timeout=0) == "after the retry"


def test_cancel_of_a_task_waiting_for_its_retry(
    make_executor: MakeExecutor, tmp_path: Path
) -> None:
    ex = make_executor(1, retry_delay=30)
    future = ex.submit(tasks.crash_once, str(tmp_path / "m"), "x")
    assert wait_until(lambda: (tmp_path / "m").exists(), timeout=RESULT_TIMEOUT)
    assert future.cancel()
    done, _ = concurrent.futures.wait([future], timeout=RESULT_TIMEOUT)
    assert done == {future}
    make_executor.remember_pids()  # type: ignore[attr-defined]
    assert ex.submit(tasks.identity, 3).result(timeout=RESULT_TIMEOUT) == 3


def test_workers_that_die_as_they_start_break_the_executor(make_executor: MakeExecutor) -> None:
    """No endless restarts: past MAX_FAILED_STARTS in a row, the executor breaks."""
    ex = make_executor(2, initializer=tasks.exit_process, initargs=(2,))
    future = ex.submit(tasks.identity, 1)
    assert isinstance(future.exception(timeout=RESULT_TIMEOUT), pel.WorkerCrashedError)

    def broken() -> bool:
        try:
            ex.submit(tasks.identity, 2).cancel()
        except pel.WorkerCrashedError as exc:
            assert "worker processes in a row died as they started" in str(exc)
            assert "exited with code 2" in str(exc)
            return True
        return False

    assert wait_until(broken, timeout=RESULT_TIMEOUT)


def test_a_chunk_split_during_shutdown_still_delivers(make_executor: MakeExecutor) -> None:
    """The halves of a split chunk are submitted by the runtime itself: shutdown
    must wait for them too (it once stopped with them still in its inbox)."""
    ex = make_executor(2, retries=0)
    results = ex.map(tasks.exit_on, range(40), [30] * 40, chunksize=40)
    ex.shutdown(wait=True)
    make_executor.remember_pids()  # type: ignore[attr-defined]
    got: list[int] = []
    crashed = 0
    while True:
        try:
            got.append(next(results))
        except StopIteration:
            break
        except pel.WorkerCrashedError:
            crashed += 1
    assert got == [i for i in range(40) if i != 30]
    assert crashed == 1


def test_a_split_chunk_of_large_arrays_keeps_them_in_shared_memory(
    make_executor: MakeExecutor,
) -> None:
    np = pytest.importorskip("numpy")
    ex = make_executor(2, retries=0)
    arrays = [np.full(300_000, float(i)) for i in range(6)]  # 2.4 MB each: out of band
    bad = [i == 4 for i in range(6)]
    results = ex.map(tasks.total_unless, arrays, bad, chunksize=6)
    got: list[Any] = []
    for _ in range(6):
        try:
            got.append(next(results))
        except pel.WorkerCrashedError:
            got.append("crashed")
    assert got == [300_000.0 * i for i in range(4)] + ["crashed", 300_000.0 * 5]
    make_executor.remember_pids()  # type: ignore[attr-defined]
