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
    Submitted,
    TaskSpec,
    WorkerJoined,
    WorkerLost,
)
from .instructions import Cancel, Crashed, Dispatch, Fail, Instruction, Release, Steal
from .state import SchedulerState

__all__ = [
    "Cancel",
    "Cancelled",
    "Crashed",
    "Dispatch",
    "Event",
    "Fail",
    "Finished",
    "Instruction",
    "Release",
    "Returned",
    "SchedulerState",
    "Steal",
    "Submitted",
    "TaskSpec",
    "WorkerJoined",
    "WorkerLost",
]
