"""``Gate``: hold every worker of an executor busy, then let go.

While a gate is held, ``gate.future`` is a pel future of that executor that is
not done; a task given it as an argument is *pending* (not started, and
cancellable) until :meth:`Gate.release`, after which ``gate.future`` has the
value ``0``. Waiting is on files, never on a fixed sleep.

threads / processes: ``max_workers * INITIAL_PREFETCH`` tasks block on the
release file, so every worker runs one and has its prefetch slots taken; the
gate waits until one has started on each worker and all were sent. ``gate.future`` is the first.

inline: a task runs inside the ``submit`` that sends it, and ``submit`` holds
the executor's lock meanwhile (a submit from another thread waits for it), so
no future of an inline executor is ever seen pending. There ``gate.holds`` is
False, ``gate.future`` is already done, and the tests check the inline
contract instead: every future is done when ``submit`` returns.
"""

from __future__ import annotations

import concurrent.futures
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pel
from pel.scheduler.policy import INITIAL_PREFETCH
from pel.testing import wait_until
from tasks import hold, identity

#: Generous: a processes worker may still be starting when the gate is held.
START_TIMEOUT = 30.0

_ids = itertools.count()

#: The type of conftest's ``make_executor`` fixture.
MakeExecutor = Callable[..., pel.Executor]


class Gate:
    def __init__(self, ex: pel.Executor, directory: Path) -> None:
        self.ex = ex
        self.dir = directory / f"gate-{next(_ids)}"
        self.dir.mkdir()
        self.release_file = self.dir / "release"
        self.future: pel.Future[Any]
        self._blockers: list[pel.Future[Any]] = []
        #: False on inline, where nothing can be held (see the module docstring).
        self.holds = ex.backend != "inline"
        self._released = False

    def __enter__(self) -> Gate:
        self.hold()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def _started(self) -> int:
        return sum(1 for _ in self.dir.glob("started-*"))

    def hold(self) -> None:
        ex = self.ex
        release = str(self.release_file)
        if not self.holds:
            self.future = ex.submit(identity, 0)
            assert self.future.done()
            return
        count = ex.max_workers * INITIAL_PREFETCH
        self._blockers = [
            ex.submit(hold, str(self.dir / f"started-{i}"), release, 0) for i in range(count)
        ]
        self.future = self._blockers[0]
        # One running on each worker, and every blocker sent to a worker (a
        # sent task's future is marked running), so none is left to take a
        # slot from the tasks the test submits next.
        assert wait_until(
            lambda: self._started() >= ex.max_workers and all(b.running() for b in self._blockers),
            timeout=START_TIMEOUT,
        )

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self.release_file.touch()
        concurrent.futures.wait(self._blockers, timeout=60)
        for blocker in self._blockers:
            assert blocker.done()
            if not blocker.cancelled():
                assert blocker.result() == 0
