"""What the executor hands the runtime for each task (see ``docs/architecture.md``).

``Prepared`` is worked out once per function; a ``Record`` is made per task
and kept by the runtime until the task is final.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from ._futures import Future
from ._task import TaskOptions, TaskPolicy
from .backends.running import TIMED

__all__ = ["Prepared", "Record"]


class Prepared(NamedTuple):
    """What every task of one function shares, worked out once per function
    (at its first submit, or once per ``map``)."""

    fn: Callable[..., Any]
    #: The ``@pel.task`` options it came with, if any.
    options: TaskOptions | None
    fn_id: int
    #: The function pickled once, for backends that pickle.
    blob: bytes | None
    name: str
    priority: int
    policy: TaskPolicy


class Record:
    """What the runtime keeps for a task until it is final."""

    __slots__ = ("deps", "error", "flags", "future", "items", "payload", "task")

    def __init__(
        self,
        future: Future[Any],
        task: Prepared,
        payload: Any,
        deps: Sequence[Future[Any]],
        items: int = 0,
    ) -> None:
        self.future = future
        self.task = task
        self.payload = payload
        #: The futures it waits for; an empty tuple (shared, not a new list) if none.
        self.deps = deps
        #: Items in a map chunk; 0 for a single call.
        self.items = items
        #: How the worker should run it (backends.base.TIMED, ISOLATE).
        self.flags = TIMED if task.policy.timeout is not None else 0
        #: A failure held back while the scheduler decides whether to retry.
        self.error: BaseException | None = None

    @property
    def chunk(self) -> bool:
        return self.items > 0
