"""What the scheduler asks the runtime to do."""

from __future__ import annotations

from .._value import Value


class Dispatch(Value):
    """Send these tasks, in this order, to the worker."""

    __slots__ = ("keys", "worker")

    def __init__(self, worker: int, keys: tuple[int, ...]) -> None:
        self.worker = worker
        self.keys = keys


class Fail(Value):
    """These tasks cannot run because the task ``cause`` failed."""

    __slots__ = ("cause", "keys")

    def __init__(self, keys: tuple[int, ...], cause: int) -> None:
        self.keys = keys
        self.cause = cause


class Cancel(Value):
    """These tasks are cancelled because the task ``cause`` was cancelled."""

    __slots__ = ("cause", "keys")

    def __init__(self, keys: tuple[int, ...], cause: int) -> None:
        self.keys = keys
        self.cause = cause


class Lost(Value):
    """Task ``key`` took ``worker`` down (or ran past its timeout, and the
    worker was killed) on ``attempts`` attempts, its last: fail it."""

    __slots__ = ("attempts", "key", "timed_out", "worker")

    def __init__(self, worker: int, key: int, timed_out: bool, attempts: int) -> None:
        self.worker = worker
        self.key = key
        self.timed_out = timed_out
        self.attempts = attempts


class Retry(Value):
    """Task ``key`` failed (``reason``: "crash", "timeout" or "error") and
    runs again in ``delay`` seconds: attempt ``attempt + 1``."""

    __slots__ = ("attempt", "delay", "key", "reason")

    def __init__(self, key: int, attempt: int, delay: float, reason: str) -> None:
        self.key = key
        self.attempt = attempt
        self.delay = delay
        self.reason = reason


class Split(Value):
    """Splittable task ``key`` took its worker down: replace it by two halves."""

    __slots__ = ("key",)

    def __init__(self, key: int) -> None:
        self.key = key


class Isolate(Value):
    """Send these tasks with ISOLATE from now on: a worker died holding them,
    and which one killed it is not known for sure."""

    __slots__ = ("keys",)

    def __init__(self, keys: tuple[int, ...]) -> None:
        self.keys = keys


class Kill(Value):
    """Stop ``worker`` now (a timeout, or a cancelled running task)."""

    __slots__ = ("worker",)

    def __init__(self, worker: int) -> None:
        self.worker = worker


class Drop(Value):
    """``worker`` holds these cancelled tasks unstarted: drop them."""

    __slots__ = ("keys", "worker")

    def __init__(self, worker: int, keys: tuple[int, ...]) -> None:
        self.worker = worker
        self.keys = keys


class Steal(Value):
    """Ask ``worker`` to give back up to ``count`` tasks it has not started."""

    __slots__ = ("count", "worker")

    def __init__(self, worker: int, count: int) -> None:
        self.worker = worker
        self.count = count


class Release(Value):
    """No task still needs these results shipped to it; their copies can go."""

    __slots__ = ("keys",)

    def __init__(self, keys: tuple[int, ...]) -> None:
        self.keys = keys


Instruction = (
    Dispatch | Fail | Cancel | Lost | Retry | Split | Isolate | Kill | Drop | Steal | Release
)
