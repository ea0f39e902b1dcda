"""Task functions the tests submit; importable by worker processes."""

from __future__ import annotations

import os
import threading
import time
from typing import Any


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
