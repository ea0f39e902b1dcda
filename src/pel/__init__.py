"""pel: a parallel execution layer for Python.

import pel

with pel.Executor() as ex:                 # one worker process per core
    fut = ex.submit(f, 1, 2)               # a concurrent.futures.Future
    out = list(ex.map(g, huge_iterable))   # lazy, chunk size tuned live
    total = ex.submit(combine, [ex.submit(load, p) for p in paths])  # a task graph
"""

from ._errors import (
    CycleError,
    DependencyError,
    ExecutorShutdownError,
    ForeignFutureError,
    OptionError,
    PelError,
    RemoteTraceback,
    SerializationError,
    WorkerCrashedError,
)
from ._executor import Executor
from ._futures import Future
from ._task import TaskFunction, TaskOptions, task

__version__ = "0.1.0"

__all__ = [
    "CycleError",
    "DependencyError",
    "Executor",
    "ExecutorShutdownError",
    "ForeignFutureError",
    "Future",
    "OptionError",
    "PelError",
    "RemoteTraceback",
    "SerializationError",
    "TaskFunction",
    "TaskOptions",
    "WorkerCrashedError",
    "__version__",
    "task",
]
