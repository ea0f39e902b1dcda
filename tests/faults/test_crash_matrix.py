"""The crash matrix: every point where a task can fail, on the processes backend.

For each: the exact error type and message the caller gets, whether it was
retried, that the executor is still usable afterwards (none of these breaks
it), and (through the ``make_executor`` fixture) that no worker process is
left. Crashes get ``retries=1``: the task kills two workers, then fails.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest

import pel
import tasks

RESULT_TIMEOUT = 60


@pytest.fixture
def backend() -> str:
    return "processes"


def _at_submit_unpicklable(ex: pel.Executor) -> Any:
    return ex.submit(tasks.identity, threading.Lock())


MATRIX = [
    # (where, submit, error type, message fragments)
    (
        "pickling the call",
        _at_submit_unpicklable,
        pel.SerializationError,
        ["cannot send task 'identity'", "argument 0 (lock)", "cannot pickle"],
    ),
    (
        "unpickling the call in the worker",
        lambda ex: ex.submit(tasks.identity, tasks.BreaksInWorker()),
        pel.SerializationError,
        ["could not be unpickled in the worker", "cannot be rebuilt away from home"],
    ),
    (
        "unpickling the function in the worker",
        lambda ex: ex.submit(tasks.CallableOnlyAtHome(), 1),
        pel.SerializationError,
        ["function could not be unpickled in the worker", "rebuilt away from home"],
    ),
    (
        "running: an exception",
        lambda ex: ex.submit(tasks.fail, "own error"),
        ValueError,
        ["own error"],
    ),
    (
        "running: segfault (ctypes)",
        lambda ex: ex.submit(tasks.segfault),
        pel.WorkerCrashedError,
        ["'segfault' took its worker process down on 2 attempts", "SIGSEGV", "retries=1"],
    ),
    (
        "running: os._exit",
        lambda ex: ex.submit(tasks.exit_process, 9),
        pel.WorkerCrashedError,
        ["'exit_process' took its worker process down on 2 attempts", "exited with code 9"],
    ),
    (
        "running: sys.exit",
        lambda ex: ex.submit(tasks.raise_system_exit, 4),
        pel.WorkerCrashedError,
        ["'raise_system_exit' took its worker process down on 2 attempts", "code 4"],
    ),
    (
        "running: kill -9",
        lambda ex: ex.submit(tasks.kill_self),
        pel.WorkerCrashedError,
        ["'kill_self' took its worker process down on 2 attempts", "SIGKILL"],
    ),
    (
        "pickling the result",
        lambda ex: ex.submit(tasks.unpicklable_result),
        pel.SerializationError,
        ["result of the task, a lock, cannot be pickled"],
    ),
    (
        "unpickling the result in the parent",
        lambda ex: ex.submit(tasks.make_breaks_in_parent, os.getpid()),
        pel.SerializationError,
        ["result could not be unpickled here", "cannot be rebuilt in the parent"],
    ),
]


@pytest.mark.parametrize(
    ("where", "submit", "error", "fragments"), MATRIX, ids=[row[0] for row in MATRIX]
)
def test_crash_matrix(
    make_executor: Callable[..., pel.Executor],
    where: str,
    submit: Callable[[pel.Executor], Any],
    error: type[BaseException],
    fragments: list[str],
) -> None:
    ex = make_executor(2, retries=1, retry_delay=0)
    bystanders = [ex.submit(tasks.identity, i) for i in range(10)]
    if where == "pickling the call":
        with pytest.raises(error) as info:
            submit(ex)
        exc: BaseException = info.value
    else:
        future = submit(ex)
        found = future.exception(timeout=RESULT_TIMEOUT)
        assert found is not None
        exc = found
    assert type(exc) is error, f"{where}: got {type(exc).__name__}: {exc}"
    for fragment in fragments:
        assert fragment in str(exc), f"{where}: {fragment!r} not in {exc}"
    # The executor is not broken: earlier tasks delivered, new ones run.
    assert [f.result(timeout=RESULT_TIMEOUT) for f in bystanders] == list(range(10))
    assert ex.submit(tasks.add, 2, 3).result(timeout=RESULT_TIMEOUT) == 5
    assert list(ex.map(tasks.add, range(10), range(10))) == [2 * i for i in range(10)]
    make_executor.remember_pids()  # type: ignore[attr-defined]
