"""What the executor hands the runtime for each task (see ``docs/architecture.md``).

``Prepared`` is worked out once per function; a ``Record`` is made per task
and kept by the runtime until the task is final.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from ._futures import Future
from ._task import TaskOptions, TaskPolicy
from .backends.base import Backend, Call, new_call
from .backends.running import ISOLATE, TIMED
from .scheduler import TaskSpec
from .transport import serialize

__all__ = ["Prepared", "Record", "call_of", "task_spec"]


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


#: ``TaskSpec(*fields)`` without the Python-level ``__new__`` every NamedTuple
#: has: one is made per task.
_new_spec = functools.partial(tuple.__new__, TaskSpec)


def task_spec(record: Record) -> TaskSpec:
    """What the scheduler is told of a task as it is submitted."""
    task = record.task
    policy = task.policy
    timeout = policy.timeout
    if record.items:
        # Chunks of a map take longer than single calls of the same
        # function; a timeout is per item.
        group = ~task.fn_id
        if timeout is not None:
            timeout *= record.items
    else:
        group = task.fn_id
    return _new_spec(
        (
            record.future._key,
            tuple([dep._key for dep in record.deps]) if record.deps else (),
            task.priority,
            group,
            policy.retries,
            timeout,
            policy.retry_delay,
            record.items > 1,
            bool(record.flags & ISOLATE),
        )
    )


def call_of(key: int, record: Record, raw: Mapping[int, Any], backend: Backend) -> Call:
    """The call a task is sent as: its dependencies' results in argument
    order, pickled for a backend that pickles (a small one's future, or
    ``raw``, holds the pickle received from a worker, forwarded as it came)."""
    deps: list[Any] = []
    if record.deps:
        if backend.pickles:
            for dep in record.deps:
                pickled: Any = dep._pickled
                if pickled is None:
                    pickled = raw.get(dep._key)
                    if pickled is None:
                        pickled = serialize.dumps_oob(dep.result(), backend.store)
                deps.append(pickled)
        else:
            deps = [dep.result() for dep in record.deps]
    task = record.task
    return new_call(
        (key, task.fn_id, record.payload, deps, record.items > 0, record.flags, task.fn, task.blob)
    )
