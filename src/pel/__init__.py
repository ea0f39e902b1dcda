"""pel: a parallel execution layer for Python.

import pel

with pel.Executor() as ex:                 # one worker process per core
    fut = ex.submit(f, 1, 2)               # a concurrent.futures.Future
    out = list(ex.map(g, huge_iterable))   # lazy, chunk size tuned live
    total = ex.submit(combine, [ex.submit(load, p) for p in paths])  # a task graph
"""

TYPE_CHECKING = False  # not typing's: importing typing costs workers' start-up time
if TYPE_CHECKING:
    from ._errors import (
        CycleError,
        DependencyError,
        ExecutorShutdownError,
        ForeignFutureError,
        OptionError,
        PelError,
        RemoteTraceback,
        SerializationError,
        SharedMemoryError,
        TaskTimeoutError,
        WorkerCrashedError,
    )
    from ._executor import Executor
    from ._futures import Future
    from ._refs import ObjectRef
    from ._task import TaskFunction, TaskOptions, task

#: Every public name is loaded on first use: a worker process imports ``pel``
#: to reach its own modules, and its start-up time is what a user waits for.
_ERRORS = (
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
)
_LAZY = {
    **dict.fromkeys(_ERRORS, "._errors"),
    "Executor": "._executor",
    "Future": "._futures",
    "ObjectRef": "._refs",
    "TaskFunction": "._task",
    "TaskOptions": "._task",
    "task": "._task",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pel' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "CycleError",
    "DependencyError",
    "Executor",
    "ExecutorShutdownError",
    "ForeignFutureError",
    "Future",
    "ObjectRef",
    "OptionError",
    "PelError",
    "RemoteTraceback",
    "SerializationError",
    "SharedMemoryError",
    "TaskFunction",
    "TaskOptions",
    "TaskTimeoutError",
    "WorkerCrashedError",
    "__version__",
    "task",
]
