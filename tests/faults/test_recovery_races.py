"""Regressions from a review of the failure path: blame, cancel, split, kill."""

from __future__ import annotations

import concurrent.futures
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

import pel
import tasks
from pel.testing import wait_until

RESULT_TIMEOUT = 60
MakeExecutor = Callable[..., pel.Executor]


@pytest.fixture
def backend() -> str:
    return "processes"


def test_a_crash_among_quick_tasks_is_blamed_on_the_culprit_only(
    make_executor: MakeExecutor,
) -> None:
    """Quick tasks' results are batched: when one kills its worker, the tasks
    before it may have finished with their results unsent. None of them may
    be charged (with retries=0: failed) for it."""
    ex = make_executor(1, retries=0)
    for future in [ex.submit(tasks.exit_on, i, -1) for i in range(600)]:
        future.result(timeout=RESULT_TIMEOUT)  # the function is known quick now
    futures = [ex.submit(tasks.exit_on, i, 300) for i in range(600)]
    failed = [i for i, f in enumerate(futures) if f.exception(timeout=RESULT_TIMEOUT)]
    assert failed == [300]
    assert isinstance(futures[300].exception(), pel.WorkerCrashedError)
    make_executor.remember_pids()  # type: ignore[attr-defined]


def test_cancel_stops_a_quick_function_that_hangs_and_frees_the_results_before_it(
    make_executor: MakeExecutor, tmp_path: Path
) -> None:
    release = str(tmp_path / "release")
    ex = make_executor(1, retries=0)
    try:
        for future in [ex.submit(tasks.hang_on, i, -1, release) for i in range(500)]:
            future.result(timeout=RESULT_TIMEOUT)
        futures = [ex.submit(tasks.hang_on, i, 400, release) for i in range(500)]
        assert wait_until(lambda: futures[399].done() or futures[400].running(), timeout=30)
        assert futures[400].cancel()
        # The worker is killed: what it held runs elsewhere, what it finished arrives.
        assert futures[399].result(timeout=RESULT_TIMEOUT) == 399
        assert [f.result(timeout=RESULT_TIMEOUT) for f in futures[401:]] == list(range(401, 500))
        assert not (tmp_path / "release").exists()  # nothing waited for the release
    finally:
        (tmp_path / "release").touch()
    make_executor.remember_pids()  # type: ignore[attr-defined]


def test_cancelling_tasks_on_starting_workers_does_not_break_the_executor(
    make_executor: MakeExecutor, tmp_path: Path
) -> None:
    """pel's own kills of workers still starting are not failed starts."""
    started = tmp_path / "initialized"
    ex = make_executor(1, initializer=tasks.wait_for_file, initargs=(str(started),))
    try:
        for i in range(12):
            future = ex.submit(tasks.identity, i)
            assert wait_until(future.running, timeout=RESULT_TIMEOUT)  # sent to the worker
            assert future.cancel()
            make_executor.remember_pids()  # type: ignore[attr-defined]
    finally:
        started.touch()
    assert ex.submit(tasks.identity, 42).result(timeout=RESULT_TIMEOUT) == 42
    make_executor.remember_pids()  # type: ignore[attr-defined]


def test_a_worker_killed_while_starting_charges_no_task(
    make_executor: MakeExecutor, tmp_path: Path
) -> None:
    started = tmp_path / "initialized"
    ex = make_executor(1, retries=0, initializer=tasks.wait_for_file, initargs=(str(started),))
    future = ex.submit(tasks.identity, 1)
    assert wait_until(lambda: future.running() and ex.worker_pids(), timeout=RESULT_TIMEOUT)
    make_executor.remember_pids()  # type: ignore[attr-defined]
    os.kill(ex.worker_pids()[0], signal.SIGKILL)
    started.touch()
    assert future.result(timeout=RESULT_TIMEOUT) == 1
    make_executor.remember_pids()  # type: ignore[attr-defined]


def test_shutdown_cancelling_a_split_chunk_settles_the_map(
    make_executor: MakeExecutor, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    ex = make_executor(2, retries=0)
    try:
        results = ex.map(
            tasks.exit_or_hold, range(4), [str(tmp_path)] * 4, [str(release)] * 4, chunksize=4
        )
        # The chunk killed its worker and was split; both halves are running.
        assert wait_until(lambda: len(list(tmp_path.glob("started-*"))) >= 2, timeout=30)
        make_executor.remember_pids()  # type: ignore[attr-defined]
        ex.shutdown(wait=True, cancel_futures=True)
        with pytest.raises(concurrent.futures.CancelledError):
            list(results)
    finally:
        release.touch()


def test_terminate_with_a_chain_pending(make_executor: MakeExecutor, tmp_path: Path) -> None:
    ex = make_executor(1)
    started, release = tmp_path / "started", tmp_path / "release"
    try:
        a = ex.submit(tasks.hold, str(started), str(release), 1)
        b = ex.submit(tasks.add, a, 1)
        c = ex.submit(tasks.add, b, 1)
        assert wait_until(started.exists, timeout=RESULT_TIMEOUT)
        make_executor.remember_pids()  # type: ignore[attr-defined]
        ex.terminate()
    finally:
        release.touch()
    assert isinstance(a.exception(timeout=RESULT_TIMEOUT), pel.WorkerCrashedError)
    assert b.cancelled() and c.cancelled()
    assert ex._runtime.broken is None  # the runtime thread did not fail


def test_an_error_shared_by_a_failed_chunks_items_is_noted_once(
    make_executor: MakeExecutor,
) -> None:
    ex = make_executor(1, retries=0)
    results = ex.map(tasks.unpicklable_result_of, range(4), chunksize=4)
    notes = []
    for _ in range(4):
        with pytest.raises(pel.SerializationError) as info:
            next(results)
        notes.append(list(info.value.__notes__))
    note = "raised for input items 0 to 3 of Executor.map (raised for each: their chunk failed"
    assert notes == [[note + " as a whole)"]] * 4
