"""The inline backend: every task runs in the caller's thread, at submit.

For debugging: breakpoints, ``pdb`` and profilers see the task as ordinary
code, and tracebacks are local. There is no runtime thread; the runtime runs
its loop in the submitting thread until nothing is left to do, so a task's
future is done when ``submit`` returns (its dependencies always are).
A task cannot be stopped while it runs here, so timeouts are not enforced.
"""

from __future__ import annotations

from typing import ClassVar

from .base import Backend, Call, Completed, Exited, Report, run_call, run_initializer

__all__ = ["InlineBackend"]


class InlineBackend(Backend):
    name: ClassVar[str] = "inline"
    synchronous: ClassVar[bool] = True

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._reports: list[Report] = []

    def start_worker(self) -> int:
        failure = run_initializer(self.options)
        if failure is not None:
            self._reports.append(Exited(0, None, None, f"its initializer failed:\n{failure}"))
        return 0

    def send(self, worker: int, calls: list[Call]) -> None:
        self._reports.append(Completed(worker, [run_call(call) for call in calls]))

    def steal(self, worker: int, count: int) -> None:
        pass  # nothing is ever queued: each call runs as it is sent

    def kill_worker(self, worker: int) -> None:
        pass  # never asked: no call is running when the runtime decides

    def drop(self, worker: int, keys: list[int]) -> None:
        pass  # nothing is ever queued

    def wait(self, timeout: float | None) -> list[Report]:
        reports, self._reports = self._reports, []
        return reports

    def wakeup(self) -> None:
        pass

    def close(self, *, kill: bool) -> None:
        self._reports.clear()
