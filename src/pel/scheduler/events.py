"""What the scheduler is told. Times are seconds on the runtime's monotonic clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


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


@dataclass(slots=True)
class Submitted:
    tasks: list[TaskSpec]
    now: float = 0.0


@dataclass(slots=True)
class Finished:
    """A worker finished tasks: ``(key, succeeded, seconds the call ran)`` each."""

    worker: int
    results: list[tuple[int, bool, float]]
    now: float = 0.0


@dataclass(slots=True)
class Cancelled:
    """The user cancelled these tasks before they were sent to a worker."""

    keys: list[int]
    now: float = 0.0


@dataclass(slots=True)
class WorkerJoined:
    worker: int
    now: float = 0.0


@dataclass(slots=True)
class WorkerLost:
    """A worker died; whatever it held is lost."""

    worker: int
    now: float = 0.0


@dataclass(slots=True)
class Returned:
    """Answering a ``Steal``: the tasks a worker gave back unstarted."""

    worker: int
    keys: list[int] = field(default_factory=list)
    now: float = 0.0


Event = Submitted | Finished | Cancelled | WorkerJoined | WorkerLost | Returned
