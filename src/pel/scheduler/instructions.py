"""What the scheduler asks the runtime to do."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class Dispatch:
    """Send these tasks, in this order, to the worker."""

    worker: int
    keys: tuple[int, ...]


@dataclass(slots=True, frozen=True)
class Fail:
    """These tasks cannot run because the task ``cause`` failed."""

    keys: tuple[int, ...]
    cause: int


@dataclass(slots=True, frozen=True)
class Cancel:
    """These tasks are cancelled because the task ``cause`` was cancelled."""

    keys: tuple[int, ...]
    cause: int


@dataclass(slots=True, frozen=True)
class Crashed:
    """These tasks were lost with ``worker``, which died while holding them."""

    worker: int
    keys: tuple[int, ...]


@dataclass(slots=True, frozen=True)
class Steal:
    """Ask ``worker`` to give back up to ``count`` tasks it has not started."""

    worker: int
    count: int


@dataclass(slots=True, frozen=True)
class Release:
    """No task still needs these results shipped to it; their copies can go."""

    keys: tuple[int, ...]


Instruction = Dispatch | Fail | Cancel | Crashed | Steal | Release
