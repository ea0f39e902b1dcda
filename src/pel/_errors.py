"""The one error tree of pel.

Every error pel raises on its own account is a :class:`PelError`. Where a
standard-library ``except`` clause should still catch it, the class also
derives from the stdlib type it stands in for::

    PelError
    ├── OptionError(ValueError)            a bad option: max_workers=0, chunksize=0, ...
    ├── ExecutorShutdownError(RuntimeError) submit or map after shutdown()
    ├── CycleError(ValueError)             a task graph whose dependencies loop
    ├── ForeignFutureError(ValueError)     a future from another executor in the arguments
    ├── SerializationError(PicklingError)  a call or result that cannot be pickled/unpickled
    ├── SharedMemoryError(MemoryError)     a large buffer does not fit under the shm limit
    ├── DependencyError                    a task's dependency failed; __cause__ is its error
    ├── WorkerCrashedError(BrokenExecutor) the worker running the task died, more often
    │                                      than the task's ``retries`` allow
    └── TaskTimeoutError(TimeoutError)     the task ran past its ``timeout``, more often
                                           than its ``retries`` allow

A task's own exception is *not* wrapped: it reaches the caller with its own
type, and the worker's formatted traceback is attached as ``__cause__`` (a
:class:`RemoteTraceback`), the way ``concurrent.futures`` does it.
"""

from __future__ import annotations

import pickle
from concurrent.futures import BrokenExecutor

__all__ = [
    "CycleError",
    "DependencyError",
    "ExecutorShutdownError",
    "ForeignFutureError",
    "OptionError",
    "PelError",
    "RemoteTraceback",
    "SerializationError",
    "SharedMemoryError",
    "TaskTimeoutError",
    "WorkerCrashedError",
]


class PelError(Exception):
    """Base class of every error pel raises on its own account."""


class OptionError(PelError, ValueError):
    """An option has a value pel cannot use; the message names the option."""


class ExecutorShutdownError(PelError, RuntimeError):
    """Work was submitted to an executor after ``shutdown()`` was called."""


class CycleError(PelError, ValueError):
    """The dependencies of a task graph form a cycle; the message lists it."""


class ForeignFutureError(PelError, ValueError):
    """A future created by another executor was passed as an argument.

    Dependencies are tracked per executor; wait for the foreign future and pass
    its result instead.
    """


class SerializationError(PelError, pickle.PicklingError):
    """A call, an argument or a result could not be pickled or unpickled.

    The message names the task and, for arguments, which one. Make the object
    picklable (define ``__reduce__``), create it inside the task, or use the
    ``threads`` backend, which does not pickle.
    """


class SharedMemoryError(PelError, MemoryError):
    """A large buffer could not be stored in shared memory, and spilling is off.

    The message names the buffer's size, the limit and what is in use. Raise
    ``shm_limit``, drop references to large results and ``ObjectRef`` objects
    you no longer need, or give ``spill_dir`` so pel writes to disk instead.
    """


class DependencyError(PelError):
    """A task could not run because a task it depends on failed.

    ``__cause__`` is the dependency's own error; :attr:`dependency` names it.
    """

    def __init__(self, message: str, dependency: str = "") -> None:
        super().__init__(message)
        self.dependency = dependency

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.args[0], self.dependency))


class WorkerCrashedError(PelError, BrokenExecutor):
    """The worker process running a task died before the task finished.

    Subclasses :class:`concurrent.futures.BrokenExecutor`, so code written for
    the stdlib pools still catches it. :attr:`exitcode` is the process exit code
    (negative: killed by that signal), or ``None`` when it is unknown.
    """

    def __init__(self, message: str, exitcode: int | None = None) -> None:
        super().__init__(message)
        self.exitcode = exitcode

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.args[0], self.exitcode))


class TaskTimeoutError(PelError, TimeoutError):
    """A task ran longer than its ``timeout`` (per attempt), on every attempt.

    Its worker was killed and replaced each time. Raise the ``timeout`` or
    make the task faster; ``retries`` says how many attempts it gets.
    A ``TimeoutError``, so ``except TimeoutError`` catches it.
    """


class RemoteTraceback(Exception):
    """Carries the formatted traceback of an exception raised in a worker."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb
