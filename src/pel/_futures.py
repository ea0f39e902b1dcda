"""pel's future: a :class:`concurrent.futures.Future` that knows its executor.

It is a real stdlib future, so ``wait``, ``as_completed`` and
``asyncio.wrap_future`` work on it unchanged. Two things are added: the task
key and owner, so a future passed as an argument can be recognised as a
dependency of the same executor, and a ``cancel()`` that tells the owner, so
the tasks depending on a cancelled one are cancelled too.
"""

from __future__ import annotations

import concurrent.futures
from _thread import RLock, allocate_lock
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ._runtime import Runtime

R = TypeVar("R")

__all__ = ["Future"]


class _Condition:
    """The part of ``threading.Condition`` a future uses, over a C ``RLock``.

    ``threading.Condition()`` wraps its lock in Python and binds half a dozen
    methods at creation: a third of the cost of a future, paid per task. The
    lock must be reentrant: ``concurrent.futures.wait`` holds every future's
    lock while calling their ``cancelled()``. Waiter locks are created only by
    a caller that waits before the result is in.
    """

    __slots__ = ("_lock", "_waiters", "acquire", "release")

    def __init__(self) -> None:
        self._lock = lock = RLock()
        self.acquire = lock.acquire
        self.release = lock.release
        self._waiters: list[Any] = []

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        waiter = allocate_lock()
        waiter.acquire()
        self._waiters.append(waiter)
        saved = self._lock._release_save()  # type: ignore[attr-defined]
        try:
            return waiter.acquire(True, -1 if timeout is None else max(timeout, 0.0))
        finally:
            self._lock._acquire_restore(saved)  # type: ignore[attr-defined]
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def notify_all(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.release()


class FutureFoundError(Exception):
    """Raised while pickling arguments that contain a pel future (internal)."""


class Future(concurrent.futures.Future[R]):
    """The result of a task submitted to a :class:`pel.Executor`."""

    def __init__(self, owner: Runtime, key: int, name: str) -> None:
        # What concurrent.futures.Future.__init__ sets, with a lighter condition.
        self._condition = _Condition()  # type: ignore[assignment]
        self._state = "PENDING"
        self._result = None
        self._exception = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Any] = []
        self._owner = owner
        self._key = key
        self._name = name

    @property
    def key(self) -> int:
        """The task's number, unique within its executor."""
        return self._key

    @property
    def name(self) -> str:
        """The task's name: its ``name`` option, else the function's name."""
        return self._name

    def cancel(self) -> bool:
        if not super().cancel():
            return False
        self._owner.notify_cancelled(self._key)
        return True

    def __repr__(self) -> str:
        return f"<pel.Future {self._name}#{self._key} {self._state.lower()}>"

    def __reduce__(self) -> Any:
        # Reached only when a future sits where pel does not look for
        # dependencies (or on the fast path, which then switches to the slow one).
        raise FutureFoundError(self)
