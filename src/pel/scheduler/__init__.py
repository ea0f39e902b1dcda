"""Pure scheduling: ``SchedulerState.handle(*events) -> list[Instruction]``.

Nothing in this package starts a thread, does I/O or reads the clock: time
arrives inside events. The runtime feeds it what happened and carries out what
it answers; the tests and the simulator do the same with made-up events.
"""

from .events import (
    Cancelled,
    Event,
    Finished,
    Returned,
    Started,
    Submitted,
    TaskSpec,
    Tick,
    WorkerJoined,
    WorkerLost,
)
from .instructions import (
    Cancel,
    Dispatch,
    Drop,
    Fail,
    Instruction,
    Isolate,
    Kill,
    Lost,
    Release,
    Retry,
    Split,
    Steal,
)
from .state import SchedulerState

__all__ = [
    "Cancel",
    "Cancelled",
    "Dispatch",
    "Drop",
    "Event",
    "Fail",
    "Finished",
    "Instruction",
    "Isolate",
    "Kill",
    "Lost",
    "Release",
    "Retry",
    "Returned",
    "SchedulerState",
    "Split",
    "Started",
    "Steal",
    "Submitted",
    "TaskSpec",
    "Tick",
    "WorkerJoined",
    "WorkerLost",
]
