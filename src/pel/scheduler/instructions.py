"""What the scheduler asks the runtime to do."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class Dispatch:
    """Send these tasks, in this order, to the worker."""

    worker: int
    keys: tuple[int, ...]


@dataclass(slots=True, frozen=True)
class Fail:
    """These tasks cannot run because the task ``cause`` failed."""

    keys: tuple[int, ...]
    cause: int


@dataclass(slots=True, frozen=True)
class Cancel:
    """These tasks are cancelled because the task ``cause`` was cancelled."""

    keys: tuple[int, ...]
    cause: int


@dataclass(slots=True, frozen=True)
class Lost:
    """Task ``key`` took ``worker`` down (or ran past its timeout, and the
    worker was killed) on ``attempts`` attempts, its last: fail it."""

    worker: int
    key: int
    timed_out: bool
    attempts: int


@dataclass(slots=True, frozen=True)
class Retry:
    """Task ``key`` failed (``reason``: "crash", "timeout" or "error") and
    runs again in ``delay`` seconds: attempt ``attempt + 1``."""

    key: int
    attempt: int
    delay: float
    reason: str


@dataclass(slots=True, frozen=True)
class Split:
    """Splittable task ``key`` took its worker down: replace it by two halves."""

    key: int


@dataclass(slots=True, frozen=True)
class Isolate:
    """Send these tasks with ISOLATE from now on: a worker died holding them,
    and which one killed it is not known for sure."""

    keys: tuple[int, ...]


@dataclass(slots=True, frozen=True)
class Kill:
    """Stop ``worker`` now (a timeout, or a cancelled running task)."""

    worker: int


@dataclass(slots=True, frozen=True)
class Drop:
    """``worker`` holds these cancelled tasks unstarted: drop them."""

    worker: int
    keys: tuple[int, ...]


@dataclass(slots=True, frozen=True)
class Steal:
    """Ask ``worker`` to give back up to ``count`` tasks it has not started."""

    worker: int
    count: int


@dataclass(slots=True, frozen=True)
class Release:
    """No task still needs these results shipped to it; their copies can go."""

    keys: tuple[int, ...]


Instruction = (
    Dispatch | Fail | Cancel | Lost | Retry | Split | Isolate | Kill | Drop | Steal | Release
)
