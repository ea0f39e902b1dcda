"""Helpers for testing code that uses pel, and for testing pel's backends.

Waiting is always on a condition with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._executor import Executor

__all__ = ["BACKENDS", "WorkerKiller", "alive", "kill_workers", "wait_for_exit", "wait_until"]

#: Every backend that needs nothing beyond pel itself.
BACKENDS = ("processes", "threads", "inline")


def alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie."""
    if sys.platform.startswith("linux"):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return False
        return state not in (b"Z", b"X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - exists, not ours
        return True
    return True


def wait_until(
    condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01
) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` passes; return its last value.

    For conditions no event signals (another process exiting, say); the poll
    interval backs off so a long wait costs little.
    """
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(interval, remaining))
        interval = min(interval * 2, 0.2)


def wait_for_exit(pids: Iterable[int], timeout: float = 10.0) -> list[int]:
    """Wait for processes to end; return those still alive at the deadline."""
    pids = list(pids)
    wait_until(lambda: not any(alive(p) for p in pids), timeout)
    return [p for p in pids if alive(p)]


class WorkerKiller:
    """What :func:`kill_workers` did: the pids it killed, and every worker pid seen."""

    def __init__(self) -> None:
        self.killed: list[int] = []
        self.seen: set[int] = set()


@contextmanager
def kill_workers(
    executor: Executor, interval: float = 0.1, seed: int | None = None
) -> Iterator[WorkerKiller]:
    """Chaos: SIGKILL a random worker process of ``executor`` every ``interval``
    seconds while the block runs, to check that a workload survives it.

    ``killer.seen`` collects every worker pid met, so a test can check after
    shutdown that none is left.
    """
    rng = random.Random(seed)
    killer = WorkerKiller()
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval):
            pids = executor.worker_pids()
            killer.seen.update(pids)
            if not pids:
                continue
            victim = rng.choice(sorted(pids))
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                continue
            killer.killed.append(victim)

    thread = threading.Thread(target=run, name="pel-chaos", daemon=True)
    thread.start()
    try:
        yield killer
    finally:
        stop.set()
        thread.join()
        killer.seen.update(executor.worker_pids())
