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
costs one. A turn takes a burst in slices (``MAX_INTAKE``), and a thread that
submits faster than turns take waits, outside the executor's lock, for the
next turn to begin (``throttle``). With a synchronous backend (``inline``)
there is no thread: the caller runs the loop until nothing is left to do.
"""

from __future__ import annotations

import threading
import time
from _thread import RLock
from collections import deque
from collections.abc import Iterator
from concurrent.futures import InvalidStateError
from typing import Any

from ._errors import WorkerCrashedError
from ._futures import PENDING, RUNNING, Future
from ._record import Record, call_of, task_spec
from ._settle import (
    cancel,
    claim,
    dependency_error,
    dependency_failed,
    fail,
    fail_lost,
    notify_cancelled,
    split_chunk,
)
from .backends.base import (
    ISOLATE,
    Backend,
    Completed,
    Exited,
    GaveBack,
    Report,
    StartedCall,
    describe_exit,
)
from .scheduler import (
    Cancel,
    Cancelled,
    Dispatch,
    Drop,
    Event,
    Fail,
    Finished,
    Instruction,
    Isolate,
    Kill,
    Lost,
    Release,
    Retry,
    Returned,
    SchedulerState,
    Split,
    Started,
    Steal,
    Submitted,
    Tick,
    WorkerJoined,
    WorkerLost,
)

__all__ = ["Runtime"]


#: Submitted tasks one turn takes from the inbox at most; the rest wait for
#: the next turn, which follows at once. A burst of submits is taken in slices
#: so that the first tasks reach the workers while the caller is still
#: submitting: taken whole, the workers sat idle until all of it had been
#: scheduled (measured on W7's tree: 97k tasks/s whole, 116k in slices of 256;
#: see docs/benchmarks.md). Big enough that a turn's fixed cost stays small.
MAX_INTAKE = 256

#: Entries (submitted tasks, mostly) the inbox may hold before a submitting
#: thread waits, in ``throttle``, until the runtime's next turn begins. Two
#: threads that both want the GIL hand it over only every switch interval
#: (5 ms), and the runtime loses it at each system call it makes: a caller
#: submitting in a loop starved it, and the workers with it. Waiting hands
#: the GIL over at once (W7: ~113k -> ~125k tasks/s, see docs/benchmarks.md).
MAX_BACKLOG = 4 * MAX_INTAKE
#: The longest a submit waits for a turn to begin. A runtime busy in a slow
#: done-callback is not waited for again until it begins its next turn.
BACKLOG_WAIT = 0.05

#: Worker processes in a row that may die before starting up (an import that
#: fails in them, say) before the executor gives up instead of restarting more.
MAX_FAILED_STARTS = 10

#: A result of an immutable type (``KEPT_TYPES``) pickled in at most this many
#: bytes is kept, as it came from the worker, on its future for as long as
#: the future lives (at most ~160 bytes more per future): a task submitted
#: after it finished (a tree submitted while its leaves run) takes it as it
#: is, not pickled again (W7: 7 in 8 of the arguments). Any other result is
#: kept only while a task known to the scheduler still needs it. Immutable
#: only: a result changed in place by the caller is then pickled again, as
#: before, so what a dependent receives does not depend on the result's size.
KEEP_PICKLED = 128
KEPT_TYPES = frozenset({int, float, complex, bool, str, bytes, type(None)})


class Runtime:
    """Drives one backend for one executor; see the module docstring."""

    def __init__(self, backend: Backend, workers: int, keys: Iterator[int]) -> None:
        self._backend = backend
        self._workers = workers
        #: The ``_condition`` of every future of this executor (see _futures).
        self.future_lock = RLock()
        #: The executor's task numbers: the halves of a split chunk need new ones.
        self._keys = keys
        self._state = SchedulerState()
        self._records: dict[int, Record] = {}
        #: Pickled results kept for dependents still to be sent (processes only);
        #: a ``Packed`` one holds its shared-memory segments alive meanwhile.
        self._raw: dict[int, Any] = {}
        #: Submitted records as they are (one per task: no wrapping tuple to
        #: make), everything else as (kind, item).
        self._inbox: deque[Record | tuple[str, Any]] = deque()
        self._wake_pending = False
        #: Turns begun; threads in throttle() wait on the condition for the
        #: next, and count themselves in _throttled while they do.
        self._turns = 0
        self._turn_begun = threading.Condition(threading.Lock())
        self._throttled = 0
        #: The turn a throttle() wait ran out in: not waited on again.
        self._stalled_at = -1
        self._closing = False
        self._close_requested = False
        self._kill = False
        self._started = False
        self._finished = threading.Event()
        #: Why the executor broke, once it has (submit reads it, in user threads).
        self.broken: str | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._pumping = False
        #: How each lost worker ended, for the errors of the tasks it held.
        self._exits: dict[int, Exited] = {}
        #: Workers in a row that died before they started up.
        self._failed_starts = 0
        #: Keys settled during the current turn; their records go at its end.
        self._settled: list[int] = []
        #: Dispatched keys found cancelled before they were sent, per worker:
        #: given back to the scheduler at the start of the next turn.
        self._unsent: dict[int, list[int]] = {}

    # -- called from user threads ------------------------------------------------

    def submit(self, record: Record) -> None:
        if not self._started:
            self._start()
        self._inbox.append(record)
        if self._backend.synchronous:
            self._pump()
        elif not self._wake_pending:
            self._wake_pending = True
            self._backend.wakeup()

    def throttle(self) -> None:
        """After a submit, with no lock held: if more than ``MAX_BACKLOG``
        entries wait in the inbox, let the runtime thread run until its next
        turn begins.

        Called outside the executor's lock, which a done-callback on the
        runtime thread may need. Never waits on the runtime thread itself (a
        done-callback that submits), nor again, after a wait that ran out,
        before a turn has begun since (a runtime busy in a slow callback).
        """
        if len(self._inbox) <= MAX_BACKLOG:
            return
        thread = self._thread
        turn = self._turns
        if thread is None or thread is threading.current_thread() or turn == self._stalled_at:
            return
        with self._turn_begun:
            self._throttled += 1
            try:
                if not self._turn_begun.wait_for(lambda: self._turns != turn, BACKLOG_WAIT):
                    self._stalled_at = turn
            finally:
                self._throttled -= 1

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

    def _wait_timeout(self) -> float | None:
        """How long the backend may block: until the scheduler's next wakeup."""
        if self._inbox:
            return 0
        wakeup = self._state.next_wakeup()
        return None if wakeup is None else max(0.0, wakeup - time.monotonic())

    def _loop(self) -> None:
        try:
            while True:
                # Not kept in a local: the last reports (results holding shared
                # memory) must not live on while the loop waits for the next.
                self._turn(self._backend.wait(self._wait_timeout()))
                # (A split chunk's halves wait in the inbox, not yet recorded.)
                if self._closing and not self._records and not self._inbox:
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
            while True:
                if self._turn(self._backend.wait(0)):
                    continue
                wakeup = self._state.next_wakeup()
                if wakeup is None or self.broken is not None:
                    break
                # A retry waiting out its backoff: nothing else can run here.
                time.sleep(max(0.0, wakeup - time.monotonic()))
            if (
                self._closing
                and not self._records
                and not self._inbox
                and not self._finished.is_set()
            ):
                self._backend.close(kill=self._kill)
                self._finished.set()
        finally:
            self._pumping = False

    def _turn(self, reports: list[Report]) -> bool:
        """One round: take the inbox and the reports, decide, carry out."""
        now = time.monotonic()
        events: list[Event] = []
        self._wake_pending = False
        self._turns += 1
        if self._throttled:  # read after the count moved: see throttle()
            with self._turn_begun:
                self._turn_begun.notify_all()
        for worker, keys in self._unsent.items():
            # Found cancelled as they were dispatched: given back, and cancelled
            # now (their own "cancel" entries may wait in the inbox behind
            # more than one turn's intake; a second Cancelled is ignored).
            events.append(Returned(worker, keys, now, stolen=False))
            events.append(Cancelled(keys, now))
            self._settled.extend(keys)
        self._unsent.clear()
        cancelled: list[Future[Any]] = []
        inbox = self._inbox
        submitted: list[Record] = []
        # A close queued behind a burst is not kept waiting by the slices.
        intake = len(inbox) if self._close_requested else MAX_INTAKE
        while inbox and intake:
            entry = inbox.popleft()
            if isinstance(entry, Record):
                submitted.append(entry)
                intake -= 1
                continue
            if submitted:  # in order: a close must see the tasks submitted before it
                self._accept(submitted, events, now)
                submitted = []
            kind, item = entry
            if kind == "cancel":
                cancelled.append(item)
            elif kind == "joined":
                events.append(WorkerJoined(item, now))
            else:
                cancel_futures, kill = item
                self._begin_close(cancel_futures, kill, events, now)
        if submitted:
            self._accept(submitted, events, now)
        deferred: list[int] = []
        for report in reports:
            self._absorb(report, events, deferred, now)
        # Cancels after the reports: a task whose result came in this turn is
        # not running any more, and its worker must not be killed for it.
        for future in cancelled:
            # Always wake wait() callers, even for a task that never entered
            # the table (settled at submit because a dependency had failed).
            notify_cancelled(future)
            events.append(Cancelled([future.key], now))
            if future.key in self._records:
                self._settled.append(future.key)
        if not events:
            wakeup = self._state.next_wakeup()
            if wakeup is None or wakeup > now:
                return bool(inbox)  # records left for the next turn, all settled at intake
            events.append(Tick(now))
        instructions = self._state.handle(*events)
        if self.broken is not None:
            # Every task was failed when the executor broke; the scheduler's
            # view no longer matters, and nothing will be sent again.
            self._records.clear()
            self._settled.clear()
            return True
        if deferred:
            self._settle_deferred(deferred, instructions)
        self._carry_out(instructions)
        self._exits.clear()
        return True

    def _accept(self, records: list[Record], events: list[Event], now: float) -> None:
        specs = []
        for record in records:
            if self.broken is not None:
                fail(record.future, WorkerCrashedError(self.broken))
                continue
            if record.deps and dependency_failed(record):
                continue
            self._records[record.future._key] = record
            specs.append(task_spec(record))
        if specs:
            events.append(Submitted(specs, now))

    def _absorb(self, report: Report, events: list[Event], deferred: list[int], now: float) -> None:
        if type(report) is Completed:
            results = []
            retriable: list[int] = []
            for outcome in report.outcomes:
                key = outcome.key
                record = self._records.get(key)
                if record is None:
                    continue
                future = record.future
                if future._state != RUNNING:
                    # Cancelled by the user while it ran: its result is not
                    # wanted, and its dependents are cancelled (see Fail).
                    results.append((key, False, outcome.seconds))
                    self._settled.append(key)
                    continue
                try:
                    if outcome.ok:
                        future.set_result(outcome.value)
                        raw = outcome.raw
                        if raw is not None:
                            if (
                                type(raw) is bytes
                                and len(raw) <= KEEP_PICKLED
                                and type(outcome.value) in KEPT_TYPES
                            ):
                                future._pickled = raw
                            else:
                                self._raw[key] = raw
                    elif record.task.policy.retry_on and record.task.policy.is_retriable(
                        outcome.value
                    ):
                        record.error = outcome.value
                        retriable.append(key)
                        deferred.append(key)
                    else:
                        future.set_exception(outcome.value)
                        self._settled.append(key)
                except InvalidStateError:
                    # cancel() won the race with this result, in the user's
                    # thread: as above.
                    results.append((key, False, outcome.seconds))
                    self._settled.append(key)
                    continue
                results.append((key, outcome.ok, outcome.seconds))
            events.append(Finished(report.worker, results, now, tuple(retriable)))
        elif type(report) is StartedCall:
            events.append(Started(report.worker, report.key, now))
        elif type(report) is GaveBack:
            events.append(Returned(report.worker, report.keys, now, report.stolen))
        elif type(report) is Exited:
            self._on_exit(report, events, now)

    def _settle_deferred(self, deferred: list[int], instructions: list[Instruction]) -> None:
        """Fail the held-back failures the scheduler did not retry. Done before
        the instructions are carried out: a Fail of their dependents reads them."""
        retried = {ins.key for ins in instructions if type(ins) is Retry}
        for key in deferred:
            record = self._records.get(key)
            if record is None or key in retried or record.error is None:
                continue
            error, record.error = record.error, None
            fail(record.future, error)
            self._settled.append(key)

    def _on_exit(self, report: Exited, events: list[Event], now: float) -> None:
        events.append(WorkerLost(report.worker, now, report.started))
        self._exits[report.worker] = report
        who = f"a worker (pid {report.pid})" if report.pid else "a worker"
        if report.detail:  # the initializer failed: every replacement would too
            self._break(f"{who} could not start: {report.detail}")
        self._failed_starts = 0 if report.started else self._failed_starts + 1
        if self._failed_starts >= MAX_FAILED_STARTS and self.broken is None:
            self._break(
                f"{MAX_FAILED_STARTS} worker processes in a row died as they started (the "
                f"last, {who}, {describe_exit(report.exitcode)}); see the workers' stderr. "
                f"Can they import __main__ and the task's module?"
            )
        # Replaced even while closing, if tasks are left: they are run again.
        if not self._kill and self.broken is None and (self._records or not self._closing):
            self._add_worker()

    def _break(self, message: str) -> None:
        self.broken = message
        for record in self._records.values():
            if not record.future.done() and claim(record.future):
                fail(record.future, WorkerCrashedError(message))

    def _begin_close(
        self, cancel_futures: bool, kill: bool, events: list[Event], now: float
    ) -> None:
        self._closing = True
        self._kill = self._kill or kill
        if cancel_futures and not kill:
            # Everything not finished, running tasks included (their workers
            # are killed), so shutdown returns promptly.
            cancelled = [k for k, r in self._records.items() if r.future._cancel(running=True)]
            for key in cancelled:
                notify_cancelled(self._records[key].future)
                self._settled.append(key)
            if cancelled:
                events.append(Cancelled(cancelled, now))
        if kill:
            pending = [k for k, r in self._records.items() if not r.future.running()]
            for key in pending:
                cancel(self._records[key].future)
                self._settled.append(key)
            if pending:
                events.append(Cancelled(pending, now))
            for record in self._records.values():
                if not record.future.done():
                    fail(
                        record.future,
                        WorkerCrashedError("the executor was shut down while this task ran"),
                    )
            self._records.clear()

    # -- instructions -------------------------------------------------------------------

    def _carry_out(self, instructions: list[Instruction]) -> None:
        records = self._records
        for ins in instructions:
            # Records may be gone: terminate() drops them all at once.
            if type(ins) is Dispatch:
                claimed = []
                # claim(future) for each, inlined, under one acquisition of
                # the lock all this executor's futures share.
                with self.future_lock:
                    for key in ins.keys:
                        record = records.get(key)
                        if record is None:
                            continue
                        future = record.future
                        state = future._state
                        if state == PENDING:
                            future._state = RUNNING
                        elif state != RUNNING:
                            # Cancelled meanwhile: handed back to the scheduler
                            # next turn, and cancelled there (see _turn).
                            notify_cancelled(future)
                            self._unsent.setdefault(ins.worker, []).append(key)
                            continue
                        claimed.append((key, record))
                calls = [call_of(key, record, self._raw, self._backend) for key, record in claimed]
                if calls:
                    self._backend.send(ins.worker, calls)
            elif type(ins) is Release:
                for key in ins.keys:
                    self._raw.pop(key, None)
                    records.pop(key, None)
            elif type(ins) is Fail:
                cause_record = records.get(ins.cause)
                for key in ins.keys:
                    gone = records.pop(key, None)
                    if gone is None:
                        continue
                    if cause_record is None or cause_record.future.cancelled():
                        cancel(gone.future)  # cancelled by the user while it ran
                    else:
                        fail(gone.future, dependency_error(gone.future, cause_record.future))
            elif type(ins) is Cancel:
                for key in ins.keys:
                    gone = records.pop(key, None)
                    if gone is not None:
                        cancel(gone.future)
            elif type(ins) is Retry:
                record = records.get(ins.key)
                if record is not None:
                    record.error = None
                    if ins.reason != "error":
                        # It may have taken the worker down: see Isolate.
                        record.flags |= ISOLATE
            elif type(ins) is Isolate:
                # Run with every result around it sent at once, so that no
                # finished task's result can die with a worker it kills.
                for key in ins.keys:
                    record = records.get(key)
                    if record is not None:
                        record.flags |= ISOLATE
            elif type(ins) is Lost:
                if fail_lost(records.get(ins.key), ins, self._exits.get(ins.worker)):
                    self._settled.append(ins.key)
            elif type(ins) is Split:
                record = records.pop(ins.key, None)
                if record is not None:
                    self._split(record)
            elif type(ins) is Kill:
                self._backend.kill_worker(ins.worker)
            elif type(ins) is Drop:
                self._backend.drop(ins.worker, list(ins.keys))
            elif type(ins) is Steal:
                self._backend.steal(ins.worker, ins.count)
        # Failed, crashed and cancelled tasks leave the table once the
        # instructions naming them as a cause have been carried out.
        for key in self._settled:
            records.pop(key, None)
        self._settled.clear()

    def _split(self, record: Record) -> None:
        """Replace a map chunk that took its worker down by its two halves."""
        if not record.future.done():
            self._inbox.extend(split_chunk(record, self._new_future, self._backend))

    def _new_future(self, name: str) -> Future[Any]:
        return Future(self, next(self._keys), name)
