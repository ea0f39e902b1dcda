"""pel's future: a :class:`concurrent.futures.Future` that knows its executor.

It is a real stdlib future, so ``wait``, ``as_completed`` and
``asyncio.wrap_future`` work on it unchanged. Two things are added: the task
key and owner, so a future passed as an argument can be recognised as a
dependency of the same executor, and a ``cancel()`` that tells the owner, so
the tasks depending on a cancelled one are cancelled too.

It is also cheaper. The stdlib future's ``_condition`` is a
``threading.Condition``: an ``RLock`` wrapped in Python, so creating it and
every ``with`` on it run Python code, several times per task. Here
``_condition`` is the C ``RLock`` itself (``concurrent.futures.wait`` and
``as_completed`` only acquire and release it, and need it reentrant), and the
five methods that wait or notify are written again around a list of waiter
locks, the way ``threading.Condition`` does it. The futures of one executor
share that ``RLock`` (``Runtime.future_lock``): it is only ever held for a few
attribute reads and writes, never while waiting or calling back, and one lock
per future was one more object per pending task for the cyclic GC to walk.
"""

from __future__ import annotations

import concurrent.futures
import logging
from _thread import allocate_lock
from collections.abc import Callable
from concurrent.futures import CancelledError, InvalidStateError
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ._runtime import Runtime

R = TypeVar("R")

__all__ = ["Future"]

_LOGGER = logging.getLogger("concurrent.futures")

# The states of concurrent.futures._base, by value.
PENDING, RUNNING, FINISHED = "PENDING", "RUNNING", "FINISHED"
CANCELLED, CANCELLED_AND_NOTIFIED = "CANCELLED", "CANCELLED_AND_NOTIFIED"
_SETTLED = (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)


class FutureFoundError(Exception):
    """Raised while pickling arguments that contain a pel future (internal)."""


class Future(concurrent.futures.Future[R]):
    """The result of a task submitted to a :class:`pel.Executor`."""

    def __init__(self, owner: Runtime, key: int, name: str) -> None:
        # What concurrent.futures.Future.__init__ sets, with a C lock, the
        # executor's (see the module docstring).
        self._condition = owner.future_lock  # type: ignore[assignment]
        self._state = PENDING
        self._result = None
        self._exception = None
        # Lists made only when used: three per future otherwise, each tracked
        # by the cyclic GC, whose full collections then slow down with the
        # number of futures alive (measured: 2x per task at 10^5 pending).
        self._waiter_list: list[Any] | None = None
        self._done_callbacks: list[Any] | None = None
        #: Locks of threads blocked in result()/exception(), released when done.
        self._wakeups: list[Any] | None = None
        self._owner = owner
        self._key = key
        self._name = name
        #: A small result as a worker pickled it, kept for the tasks that take
        #: it as an argument (see ``Runtime._absorb``).
        self._pickled: bytes | None = None

    @property
    def key(self) -> int:
        """The task's number, unique within its executor."""
        return self._key

    @property
    def name(self) -> str:
        """The task's name: its ``name`` option, else the function's name."""
        return self._name

    # -- what concurrent.futures.Future does, around a C lock --------------------

    @property
    def _waiters(self) -> list[Any]:  # type: ignore[override]
        # concurrent.futures.wait/as_completed append to and remove from it.
        if self._waiter_list is None:
            self._waiter_list = []
        return self._waiter_list

    def add_done_callback(self, fn: Callable[[Future[R]], object]) -> None:
        with self._condition:
            if self._state not in _SETTLED:
                if self._done_callbacks is None:
                    self._done_callbacks = []
                self._done_callbacks.append(fn)
                return
        try:
            fn(self)
        except Exception:
            _LOGGER.exception("exception calling callback for %r", self)

    def _invoke_callbacks(self) -> None:
        for callback in self._done_callbacks or ():
            try:
                callback(self)
            except Exception:
                _LOGGER.exception("exception calling callback for %r", self)

    def _wait(self, timeout: float | None) -> None:
        """Wait to be woken, with ``_condition`` held once (released meanwhile)."""
        wakeup = allocate_lock()
        wakeup.acquire()
        if self._wakeups is None:
            self._wakeups = []
        self._wakeups.append(wakeup)
        saved = self._condition._release_save()  # type: ignore[attr-defined]
        try:
            wakeup.acquire(True, -1 if timeout is None else max(timeout, 0.0))
        finally:
            self._condition._acquire_restore(saved)  # type: ignore[attr-defined]
            if self._wakeups and wakeup in self._wakeups:
                self._wakeups.remove(wakeup)

    def _wake_all(self) -> None:
        if self._wakeups:
            wakeups, self._wakeups = self._wakeups, None
            for wakeup in wakeups:
                wakeup.release()

    def _outcome(self) -> R:
        if self._exception is not None:
            try:
                raise self._exception
            finally:
                self = None  # type: ignore[assignment]  # break the cycle via the traceback
        return self._result  # type: ignore[return-value]

    def result(self, timeout: float | None = None) -> R:
        try:
            with self._condition:
                if self._state == FINISHED:
                    if self._exception is None:
                        return self._result  # type: ignore[return-value]
                    return self._outcome()
                if self._state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                    raise CancelledError()
                self._wait(timeout)
                if self._state == FINISHED:
                    return self._outcome()
                if self._state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                    raise CancelledError()
                raise TimeoutError()
        finally:
            self = None  # type: ignore[assignment]

    def exception(self, timeout: float | None = None) -> BaseException | None:
        with self._condition:
            if self._state not in _SETTLED:
                self._wait(timeout)
            if self._state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                raise CancelledError()
            if self._state == FINISHED:
                return self._exception
            raise TimeoutError()

    def set_result(self, result: R) -> None:
        # _finish, written out: once per task, on the runtime thread.
        with self._condition:
            if self._state in _SETTLED:
                raise InvalidStateError(f"{self._state}: {self!r}")
            self._result = result
            self._state = FINISHED
            if self._waiter_list:
                for waiter in self._waiter_list:
                    waiter.add_result(self)
            if self._wakeups:
                self._wake_all()
        if self._done_callbacks:
            self._invoke_callbacks()

    def set_exception(self, exception: BaseException | None) -> None:
        self._finish(None, exception, failed=True)

    def _finish(self, result: R | None, exception: BaseException | None, *, failed: bool) -> None:
        with self._condition:
            if self._state in _SETTLED:
                raise InvalidStateError(f"{self._state}: {self!r}")
            self._result = result
            self._exception = exception
            self._state = FINISHED
            for waiter in self._waiter_list or ():
                if failed:
                    waiter.add_exception(self)
                else:
                    waiter.add_result(self)
            self._wake_all()
        self._invoke_callbacks()

    def set_running_or_notify_cancel(self) -> bool:
        """As ``concurrent.futures`` does it (called once per task sent)."""
        with self._condition:
            if self._state == PENDING:
                self._state = RUNNING
                return True
            if self._state == CANCELLED:
                self._state = CANCELLED_AND_NOTIFIED
                for waiter in self._waiter_list or ():
                    waiter.add_cancelled(self)
                return False
        _LOGGER.critical("Future %s in unexpected state: %s", id(self), self._state)
        raise RuntimeError("Future in unexpected state")

    def cancel(self) -> bool:
        """Cancel the task, even while it runs; the tasks depending on it are
        cancelled too. False only once it has finished.

        Unlike ``concurrent.futures``, a running task is stopped: its worker
        is killed and replaced (a worker thread is abandoned, left to finish
        on its own). The other tasks that worker held run elsewhere.
        """
        if not self._cancel(running=True):
            return False
        self._owner.notify_cancelled(self)
        return True

    def cancel_pending(self) -> bool:
        """Cancel only if not started yet, as ``concurrent.futures`` does."""
        if not self._cancel():
            return False
        self._owner.notify_cancelled(self)
        return True

    def _cancel(self, running: bool = False) -> bool:
        """Cancel without telling the owner (the owner's own cascade uses it)."""
        with self._condition:
            if self._state == FINISHED or (self._state == RUNNING and not running):
                return False
            if self._state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                return True
            self._state = CANCELLED
            self._wake_all()
        self._invoke_callbacks()
        return True

    def __repr__(self) -> str:
        return f"<pel.Future {self._name}#{self._key} {self._state.lower()}>"

    def __reduce__(self) -> Any:
        # Reached only when a future sits where pel does not look for
        # dependencies (or on the fast path, which then switches to the slow one).
        raise FutureFoundError(self)
