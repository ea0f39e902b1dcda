"""The runtime: the one thread that owns the scheduler state and the futures.

::

    user threads ── submit / cancel / shutdown ──▶ inbox (deque) + backend.wakeup()
                                                      │
    runtime thread:  backend.wait() ─▶ reports ─┐     │
                                                ▼     ▼
                                    events ─▶ SchedulerState.handle ─▶ instructions
                                                                        │
                      backend.send / steal ◀── Dispatch / Steal ────────┤
                      futures set          ◀── Fail / Cancel / Crashed ─┘

User threads never touch the state: they append to the inbox and wake the
loop. A wake-up is written only when none is pending, so a burst of submits
costs one. With a synchronous backend (``inline``) there is no thread: the
caller runs the loop until nothing is left to do.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import InvalidStateError
from typing import Any

from ._errors import DependencyError, WorkerCrashedError, describe_exit
from ._futures import CANCELLED, RUNNING, Future
from .backends.base import Backend, Call, Completed, Exited, GaveBack, Report
from .scheduler import (
    Cancel,
    Cancelled,
    Crashed,
    Dispatch,
    Event,
    Fail,
    Finished,
    Instruction,
    Release,
    Returned,
    SchedulerState,
    Steal,
    Submitted,
    TaskSpec,
    WorkerJoined,
    WorkerLost,
)
from .transport import serialize

__all__ = ["Record", "Runtime"]


class Record:
    """What the runtime keeps for a task until it is final."""

    __slots__ = ("chunk", "deps", "fn", "fn_blob", "fn_id", "future", "payload", "priority")

    def __init__(
        self,
        future: Future[Any],
        fn: Callable[..., Any],
        fn_id: int,
        fn_blob: bytes | None,
        payload: Any,
        deps: list[Future[Any]],
        priority: int,
        chunk: bool = False,
    ) -> None:
        self.future = future
        self.fn = fn
        self.fn_id = fn_id
        self.fn_blob = fn_blob
        self.payload = payload
        self.deps = deps
        self.priority = priority
        self.chunk = chunk


class Runtime:
    """Drives one backend for one executor; see the module docstring."""

    def __init__(self, backend: Backend, workers: int) -> None:
        self._backend = backend
        self._workers = workers
        self._state = SchedulerState()
        self._records: dict[int, Record] = {}
        #: Pickled results kept for dependents still to be sent (processes only);
        #: a ``Packed`` one holds its shared-memory segments alive meanwhile.
        self._raw: dict[int, Any] = {}
        self._inbox: deque[tuple[str, Any]] = deque()
        self._wake_pending = False
        self._closing = False
        self._close_requested = False
        self._kill = False
        self._started = False
        self._finished = threading.Event()
        self._broken: str | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._pumping = False
        #: How each lost worker ended, for the errors of the tasks it held.
        self._exits: dict[int, Exited] = {}
        #: Keys settled during the current turn; their records go at its end.
        self._settled: list[int] = []

    # -- called from user threads ------------------------------------------------

    @property
    def broken(self) -> str | None:
        return self._broken

    def submit(self, records: list[Record]) -> None:
        if not self._started:
            self._start()
        self._post("submit", records)

    def notify_cancelled(self, future: Future[Any]) -> None:
        self._post("cancel", future)

    def close(self, *, wait: bool, cancel_futures: bool, kill: bool = False) -> bool:
        """Stop after the queued work (or at once, with ``kill``); idempotent.

        Returns True once everything has stopped (only when ``wait``, and not
        when called from the runtime thread itself, which cannot wait for itself).
        """
        with self._start_lock:
            first = not self._close_requested
            self._close_requested = True
        if not first:
            if kill and not self._kill:
                self._post("close", (cancel_futures, kill))
            return self.join() if wait else False
        if not self._started:
            self._closing = True
            self._backend.close(kill=True)
            self._finished.set()
            return True
        self._post("close", (cancel_futures, kill))
        return self.join() if wait else False

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the loop to end. From the loop's own thread (a done callback
        calling shutdown()), return at once: waiting there would never end."""
        if self._thread is threading.current_thread():
            return False
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return self._finished.wait(timeout)

    def worker_pids(self) -> list[int]:
        return self._backend.worker_pids()

    def _post(self, kind: str, item: Any) -> None:
        self._inbox.append((kind, item))
        if self._backend.synchronous:
            self._pump()
        elif not self._wake_pending:
            self._wake_pending = True
            self._backend.wakeup()

    def _start(self) -> None:
        with self._start_lock:
            if self._started:
                return
            for _ in range(self._workers):
                self._add_worker()
            if not self._backend.synchronous:
                self._thread = threading.Thread(target=self._loop, name="pel-runtime", daemon=True)
                self._thread.start()
            self._started = True

    def _add_worker(self) -> None:
        worker = self._backend.start_worker()
        self._inbox.appendleft(("joined", worker))

    # -- the loop --------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while True:
                # Not kept in a local: the last reports (results holding shared
                # memory) must not live on while the loop waits for the next.
                self._turn(self._backend.wait(None))
                if self._closing and not self._records:
                    break
        except BaseException as exc:  # pragma: no cover - a bug in pel itself
            self._break(f"pel's runtime thread failed: {type(exc).__name__}: {exc}")
            self._kill = True
            raise
        finally:
            self._backend.close(kill=self._kill)
            self._finished.set()

    def _pump(self) -> None:
        """Synchronous mode: run turns in the caller until nothing happens."""
        if self._pumping:
            return  # a task submitted from inside a task: the outer pump picks it up
        self._pumping = True
        try:
            while self._turn(self._backend.wait(0)):
                pass
            if self._closing and not self._records and not self._finished.is_set():
                self._backend.close(kill=self._kill)
                self._finished.set()
        finally:
            self._pumping = False

    def _turn(self, reports: list[Report]) -> bool:
        """One round: take the inbox and the reports, decide, carry out."""
        now = time.monotonic()
        events: list[Event] = []
        self._wake_pending = False
        inbox = self._inbox
        while inbox:
            kind, item = inbox.popleft()
            if kind == "submit":
                self._accept(item, events, now)
            elif kind == "cancel":
                # Always wake wait() callers, even for a task that never entered
                # the table (settled at submit because a dependency had failed).
                _notify_cancelled(item)
                events.append(Cancelled([item.key], now))
                if item.key in self._records:
                    self._settled.append(item.key)
            elif kind == "joined":
                events.append(WorkerJoined(item, now))
            else:
                cancel_futures, kill = item
                self._begin_close(cancel_futures, kill, events, now)
        for report in reports:
            self._absorb(report, events, now)
        if not events:
            return False
        instructions = self._state.handle(*events)
        if self._broken is not None:
            # Every task was failed when the executor broke; the scheduler's
            # view no longer matters, and nothing will be sent again.
            self._records.clear()
            self._settled.clear()
            return True
        self._carry_out(instructions)
        return True

    def _accept(self, records: list[Record], events: list[Event], now: float) -> None:
        specs = []
        for record in records:
            key = record.future.key
            if self._broken is not None:
                _fail(record.future, WorkerCrashedError(self._broken))
                continue
            if record.deps and self._failed_dependency(record) is not None:
                continue
            self._records[key] = record
            deps = tuple([dep.key for dep in record.deps]) if record.deps else ()
            # Chunks of a map take longer than single calls of the same function.
            group = ~record.fn_id if record.chunk else record.fn_id
            specs.append(TaskSpec(key, deps, record.priority, group))
        if specs:
            events.append(Submitted(specs, now))

    def _failed_dependency(self, record: Record) -> Future[Any] | None:
        """Settle a task at once if a dependency already failed or was cancelled."""
        for dep in record.deps:
            if dep.cancelled():
                _cancel(record.future)
                return dep
            if dep.done() and dep.exception() is not None:
                _fail(record.future, _dependency_error(record.future, dep))
                return dep
        return None

    def _absorb(self, report: Report, events: list[Event], now: float) -> None:
        if type(report) is Completed:
            results = []
            for outcome in report.outcomes:
                record = self._records.get(outcome.key)
                if record is None:
                    continue
                if outcome.ok:
                    if outcome.raw is not None:
                        self._raw[outcome.key] = outcome.raw
                    record.future.set_result(outcome.value)
                else:
                    record.future.set_exception(outcome.value)
                    self._settled.append(outcome.key)
                results.append((outcome.key, outcome.ok, outcome.seconds))
            events.append(Finished(report.worker, results, now))
        elif type(report) is GaveBack:
            events.append(Returned(report.worker, report.keys, now))
        elif type(report) is Exited:
            self._on_exit(report, events, now)

    def _on_exit(self, report: Exited, events: list[Event], now: float) -> None:
        events.append(WorkerLost(report.worker, now))
        self._exits[report.worker] = report
        if report.detail:  # the initializer failed: every replacement would too
            who = f"a worker (pid {report.pid})" if report.pid else "a worker"
            self._break(f"{who} could not start: {report.detail}")
        if not self._closing and self._broken is None:
            self._add_worker()

    def _break(self, message: str) -> None:
        self._broken = message
        for record in self._records.values():
            if not record.future.done() and _claim(record.future):
                record.future.set_exception(WorkerCrashedError(message))

    def _begin_close(
        self, cancel_futures: bool, kill: bool, events: list[Event], now: float
    ) -> None:
        self._closing = True
        self._kill = self._kill or kill
        if cancel_futures or kill:
            pending = [k for k, r in self._records.items() if not r.future.running()]
            for key in pending:
                _cancel(self._records[key].future)
                self._settled.append(key)
            if pending:
                events.append(Cancelled(pending, now))
        if kill:
            for record in self._records.values():
                if not record.future.done():
                    record.future.set_exception(
                        WorkerCrashedError("the executor was shut down while this task ran")
                    )
            self._records.clear()

    # -- instructions -------------------------------------------------------------------

    def _carry_out(self, instructions: list[Instruction]) -> None:
        records = self._records
        for ins in instructions:
            if type(ins) is Dispatch:
                calls = []
                for key in ins.keys:
                    record = records[key]
                    if not _claim(record.future):
                        continue  # cancelled meanwhile; its Cancelled event follows
                    calls.append(self._call(key, record))
                if calls:
                    self._backend.send(ins.worker, calls)
            elif type(ins) is Release:
                for key in ins.keys:
                    self._raw.pop(key, None)
                    records.pop(key, None)
            elif type(ins) is Fail:
                cause = records[ins.cause].future
                for key in ins.keys:
                    future = records.pop(key).future
                    _fail(future, _dependency_error(future, cause))
            elif type(ins) is Cancel:
                for key in ins.keys:
                    _cancel(records.pop(key).future)
            elif type(ins) is Crashed:
                self._fail_crashed(ins)
            elif type(ins) is Steal:
                self._backend.steal(ins.worker, ins.count)
        # Failed, crashed and cancelled tasks leave the table once the
        # instructions naming them as a cause have been carried out.
        for key in self._settled:
            records.pop(key, None)
        self._settled.clear()

    def _call(self, key: int, record: Record) -> Call:
        deps: list[Any] = []
        if record.deps:
            if self._backend.pickles:
                for dep in record.deps:
                    raw = self._raw.get(dep.key)
                    if raw is None:
                        raw = serialize.dumps_oob(dep.result(), self._backend.store)
                    deps.append(raw)
            else:
                deps = [dep.result() for dep in record.deps]
        return Call(
            key, record.fn, record.fn_id, record.fn_blob, record.payload, deps, record.chunk
        )

    def _fail_crashed(self, ins: Crashed) -> None:
        exit_report = self._exits.pop(ins.worker, None)
        pid = exit_report.pid if exit_report else None
        exitcode = exit_report.exitcode if exit_report else None
        how = describe_exit(exitcode)
        for key in ins.keys:
            record = self._records.get(key)
            if record is None or record.future.done():
                continue
            self._settled.append(key)
            message = (
                f"the worker process (pid {pid}) holding task {record.future.name!r} {how}; "
                f"the {len(ins.keys)} task(s) it held are lost"
            )
            record.future.set_exception(WorkerCrashedError(message, exitcode))


def _claim(future: Future[Any]) -> bool:
    """Mark a future running before its task is sent; False if it was cancelled.

    A task given back by a worker after a steal is sent again, already running.
    """
    # Reading _state needs no lock: only this thread moves a future out of
    # PENDING or RUNNING (a user's cancel() only moves PENDING to CANCELLED).
    return future._state == RUNNING or future.set_running_or_notify_cancel()


def _fail(future: Future[Any], error: BaseException) -> None:
    """Fail a task that has not started; the user may have cancelled it meanwhile
    (``cancel()`` acts at once, in the user's thread), and then it stays cancelled."""
    try:
        future.set_exception(error)
    except InvalidStateError:
        pass


def _notify_cancelled(future: Future[Any]) -> None:
    """Wake ``wait()``/``as_completed()`` callers of a cancelled future, once.

    The stdlib notifies them only from ``set_running_or_notify_cancel``, which
    raises if called twice; a dispatch that met the cancelled future first
    already called it.
    """
    if future._state == CANCELLED:
        future.set_running_or_notify_cancel()


def _cancel(future: Future[Any]) -> None:
    """Cancel without telling the runtime again, and wake ``wait()`` callers."""
    if future._cancel():
        _notify_cancelled(future)


def _dependency_error(future: Future[Any], cause: Future[Any]) -> DependencyError:
    """Name the task that failed first, and chain its own error.

    A dependency that itself failed with a DependencyError is looked through,
    so the error is the same whether the graph was submitted before or after
    the failure.
    """
    exc = cause.exception()
    root = cause.name
    if isinstance(exc, DependencyError) and exc.__cause__ is not None:
        root, exc = exc.dependency, exc.__cause__
    err = DependencyError(
        f"task {future.name!r} did not run: its dependency {root!r} failed with "
        f"{type(exc).__name__}: {exc}",
        dependency=root,
    )
    err.__cause__ = exc
    return err
