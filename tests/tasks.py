"""Task functions the tests submit; importable by worker processes."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pel


def identity(x: Any) -> Any:
    return x


def add(x: Any, y: Any = 0) -> Any:
    return x + y


def total(values: Any) -> Any:
    return sum(values)


def fail(message: str = "boom") -> None:
    raise ValueError(message)


def sleep_then(seconds: float, value: Any = None) -> Any:
    time.sleep(seconds)
    return value


def wait_for_file(path: str, value: Any = None, timeout: float = 30.0) -> Any:
    """Block until ``path`` exists: lets a test hold a task running, then release it."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.005)
    return value


def pid() -> int:
    return os.getpid()


def thread_name() -> str:
    return threading.current_thread().name


def exit_process(code: int = 1) -> None:
    os._exit(code)


def kill_self() -> None:
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def segfault() -> None:
    import ctypes

    ctypes.string_at(0)


def unpicklable_result() -> Any:
    return threading.Lock()


def raise_system_exit(code: int = 3) -> None:
    raise SystemExit(code)


def failing_initializer(message: str = "initializer broke") -> None:
    raise RuntimeError(message)


def exit_after_file(path: str, code: int = 1) -> None:
    """Wait (bounded) until ``path`` exists, then end the worker with ``os._exit``."""
    wait_for_file(path)
    os._exit(code)


# -- used by tests/conformance ------------------------------------------------------


class TaskError(Exception):
    """A task's own exception type, importable so it unpickles in the parent."""


def raise_task_error(message: str, detail: Any = None) -> None:
    err = TaskError(message)
    err.detail = detail  # type: ignore[attr-defined]
    raise err


def echo(*args: Any, **kwargs: Any) -> Any:
    """Return the call as received: ``(args, kwargs)``."""
    return args, kwargs


def fail_at(x: Any, bad: Any) -> Any:
    """``x``, or ValueError when ``x == bad`` (for map error positions)."""
    if x == bad:
        raise ValueError(f"bad item {x!r}")
    return x


def hold(started: str, release: str, value: Any = None) -> Any:
    """Create ``started``, then block until ``release`` exists; return ``value``."""
    with open(started, "w"):
        pass
    return wait_for_file(release, value)


def monotonic_ns(*_after: Any) -> int:
    """When this ran (the clock is system-wide, so comparable across workers)."""
    return time.monotonic_ns()


_init_state: Any = None


def record_init(directory: str, value: Any) -> None:
    """An initializer: leave one file per call in ``directory`` and remember ``value``."""
    global _init_state
    _init_state = value
    name = f"{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}"
    with open(os.path.join(directory, name), "w"):
        pass


def init_state() -> Any:
    """What ``record_init`` left in this worker (``None`` if it did not run here)."""
    return _init_state


@pel.task(name="failing-root")
def failing_root(message: str = "root failed", *_after: Any) -> None:
    raise ValueError(message)


@pel.task(name="high", priority=10)
def high_priority(x: Any) -> Any:
    return x


def announce_then_wait(directory: str, path: str, timeout: float = 30.0) -> None:
    """Create ``directory/started-<pid>`` (the task is running), then wait for ``path``."""
    with open(os.path.join(directory, f"started-{os.getpid()}"), "w"):
        pass
    wait_for_file(path, None, timeout)


def exit_on(x: Any, bad: Any, code: int = 1) -> Any:
    """Return ``x``, except for ``bad``, which ends the worker process."""
    if x == bad:
        os._exit(code)
    return x


# -- used by tests/faults/test_recovery.py ----------------------------------------------


def first_time(marker: str) -> bool:
    """True for the first caller with this marker path, across processes."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def crash_once(marker: str, value: Any) -> Any:
    """Kill the worker the first time; return ``value`` after."""
    if first_time(marker):
        os._exit(1)
    return value


def hang_once(marker: str, value: Any) -> Any:
    """Hang (far past any test timeout) the first time; return ``value`` after."""
    if first_time(marker):
        time.sleep(600)
    return value


def fail_times(
    directory: str, times: int, value: Any, error: type[Exception] = ConnectionError
) -> Any:
    """Raise ``error`` on the first ``times`` calls (counted with files), then return."""
    calls = len(os.listdir(directory))
    with open(os.path.join(directory, f"call-{calls}-{os.getpid()}-{time.monotonic_ns()}"), "w"):
        pass
    if calls < times:
        raise error(f"failure {calls + 1} of {times}")
    return value


_hoard: list[bytearray] = []


def hoard(megabytes: int) -> int:
    """Keep ``megabytes`` MiB alive in this worker (a leak); return its pid."""
    block = bytearray(megabytes << 20)
    block[:: 1 << 12] = b"x" * len(block[:: 1 << 12])  # touch every page
    _hoard.append(block)
    return os.getpid()


def hoard_then_wait(megabytes: int, seconds: float) -> int:
    """Grab ``megabytes`` MiB, then sleep: a task that blows past a memory limit."""
    hoard(megabytes)
    time.sleep(seconds)
    return os.getpid()


class BreaksInWorker:
    """Pickles in the parent; unpickling it in any other process raises."""

    def __init__(self) -> None:
        self.home = os.getpid()

    def __reduce__(self) -> Any:
        return (_rebuild_only_at_home, (self.home,))


class CallableOnlyAtHome:
    """A callable that pickles in the parent; unpickling it elsewhere raises."""

    def __init__(self) -> None:
        self.home = os.getpid()

    def __call__(self, x: Any) -> Any:
        return x

    def __reduce__(self) -> Any:
        return (_callable_only_at_home, (self.home,))


def _callable_only_at_home(home: int) -> CallableOnlyAtHome:
    if os.getpid() != home:
        raise ValueError("CallableOnlyAtHome cannot be rebuilt away from home")
    obj = CallableOnlyAtHome.__new__(CallableOnlyAtHome)
    obj.home = home
    return obj


def _rebuild_only_at_home(home: int) -> BreaksInWorker:
    if os.getpid() != home:
        raise ValueError("BreaksInWorker cannot be rebuilt away from home")
    obj = BreaksInWorker.__new__(BreaksInWorker)
    obj.home = home
    return obj


class BreaksInParent:
    """Made in a worker; unpickling it in the parent raises."""

    def __init__(self, parent: int) -> None:
        self.parent = parent

    def __reduce__(self) -> Any:
        return (_rebuild_away_from, (self.parent,))


def _rebuild_away_from(parent: int) -> BreaksInParent:
    if os.getpid() == parent:
        raise ValueError("BreaksInParent cannot be rebuilt in the parent")
    return BreaksInParent(parent)


def make_breaks_in_parent(parent: int) -> BreaksInParent:
    return BreaksInParent(parent)


def exit_or_hold(x: int, directory: str, release: str) -> int:
    """For map: kill the worker on item 0; hold the others until ``release`` exists."""
    if x == 0:
        os._exit(1)
    with open(os.path.join(directory, f"started-{x}-{os.getpid()}"), "w"):
        pass
    wait_for_file(release)
    return x


def hang_on(x: int, bad: int, release: str) -> int:
    """Quick, except on ``bad``: there it blocks until ``release`` exists."""
    if x == bad:
        wait_for_file(release, timeout=60)
    return x


def unpicklable_result_of(_: Any) -> Any:
    return threading.Lock()


def total_unless(values: Any, bad: bool) -> float:
    """For map over large arrays: their sum, or kill the worker when ``bad``."""
    if bad:
        os._exit(1)
    return float(values.sum())
