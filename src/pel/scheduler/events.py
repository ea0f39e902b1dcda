"""What the scheduler is told. Times are seconds on the runtime's monotonic clock."""

from __future__ import annotations

from typing import NamedTuple

from .._value import Value


class TaskSpec(NamedTuple):
    """A new task: its key (submission order), the keys it waits for, its priority.

    A NamedTuple rather than a frozen dataclass: one is made per task, and a
    frozen dataclass pays an ``object.__setattr__`` per field (0.5 vs 0.2 µs).
    """

    key: int
    deps: tuple[int, ...] = ()
    priority: int = 0
    #: Tasks of one group (one function, say) are expected to take alike:
    #: durations are averaged per group to size the prefetch.
    group: int = 0
    #: How many times the task may be run again after a worker died under it,
    #: it timed out, or it failed with an error the runtime calls retriable.
    retries: int = 0
    #: Seconds one attempt may run (from its ``Started`` event); None: no limit.
    timeout: float | None = None
    #: Wait before the first retry; doubled for each next one.
    retry_delay: float = 0.0
    #: A batch of items (a map chunk) that is split in two, rather than
    #: retried whole, when it takes its worker down: the items in the half
    #: that did not are run again, and the culprit ends up alone.
    splittable: bool = False
    #: Sent with ISOLATE (every finished result flushed before and after it),
    #: so if its worker dies while it is the first task held, it is the culprit.
    isolated: bool = False


class Submitted(Value):
    __slots__ = ("now", "tasks")

    def __init__(self, tasks: list[TaskSpec], now: float = 0.0) -> None:
        self.tasks = tasks
        self.now = now


class Finished(Value):
    """A worker finished tasks: ``(key, succeeded, seconds the call ran)`` each.

    ``retriable``: the failed ones whose error may be retried (the runtime
    knows the errors; the scheduler decides whether budget is left).
    """

    __slots__ = ("now", "results", "retriable", "worker")

    def __init__(
        self,
        worker: int,
        results: list[tuple[int, bool, float]],
        now: float = 0.0,
        retriable: tuple[int, ...] = (),
    ) -> None:
        self.worker = worker
        self.results = results
        self.now = now
        self.retriable = retriable


class Started(Value):
    """A worker began running a task that has a timeout."""

    __slots__ = ("key", "now", "worker")

    def __init__(self, worker: int, key: int, now: float = 0.0) -> None:
        self.worker = worker
        self.key = key
        self.now = now


class Tick(Value):
    """Only time passed: a retry may be due, or a timeout reached."""

    __slots__ = ("now",)

    def __init__(self, now: float = 0.0) -> None:
        self.now = now


class Cancelled(Value):
    """The user cancelled these tasks: waiting, queued or running."""

    __slots__ = ("keys", "now")

    def __init__(self, keys: list[int], now: float = 0.0) -> None:
        self.keys = keys
        self.now = now


class WorkerJoined(Value):
    __slots__ = ("now", "worker")

    def __init__(self, worker: int, now: float = 0.0) -> None:
        self.worker = worker
        self.now = now


class WorkerLost(Value):
    """A worker died. See the state module for who is charged; the tasks not
    charged go back to the queue. ``started``: it had started up (a worker
    that dies starting ran nothing)."""

    __slots__ = ("now", "started", "worker")

    def __init__(self, worker: int, now: float = 0.0, started: bool = True) -> None:
        self.worker = worker
        self.now = now
        self.started = started


class Returned(Value):
    """Tasks came back unstarted: a worker answered a ``Steal`` (``stolen``),
    was retiring, or the runtime did not send them (cancelled meanwhile)."""

    __slots__ = ("keys", "now", "stolen", "worker")

    def __init__(
        self, worker: int, keys: list[int] | None = None, now: float = 0.0, stolen: bool = True
    ) -> None:
        self.worker = worker
        self.keys: list[int] = [] if keys is None else keys
        self.now = now
        self.stolen = stolen


Event = Submitted | Finished | Cancelled | WorkerJoined | WorkerLost | Returned | Started | Tick
