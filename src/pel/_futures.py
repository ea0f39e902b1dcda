"""pel's future: a :class:`concurrent.futures.Future` that knows its executor.

It is a real stdlib future, so ``wait``, ``as_completed`` and
``asyncio.wrap_future`` work on it unchanged. Two things are added: the task
key and owner, so a future passed as an argument can be recognised as a
dependency of the same executor, and a ``cancel()`` that tells the owner, so
the tasks depending on a cancelled one are cancelled too.
"""

from __future__ import annotations

import concurrent.futures
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ._runtime import Runtime

R = TypeVar("R")

__all__ = ["Future"]


class FutureFoundError(Exception):
    """Raised while pickling arguments that contain a pel future (internal)."""


class Future(concurrent.futures.Future[R]):
    """The result of a task submitted to a :class:`pel.Executor`."""

    def __init__(self, owner: Runtime, key: int, name: str) -> None:
        super().__init__()
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
