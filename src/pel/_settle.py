"""Settling a task's future, and the errors that say why it failed.

The user may cancel a future at any moment, from any thread, so every setter
here expects to lose that race (``InvalidStateError``) and lets the cancel
stand. Only the runtime thread calls these.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import InvalidStateError
from typing import Any

from ._errors import DependencyError, TaskTimeoutError, WorkerCrashedError
from ._futures import CANCELLED, FINISHED, PENDING, RUNNING, Future
from ._record import Record
from .backends.base import ISOLATE, Backend, Exited, describe_exit
from .scheduler import Lost
from .transport import serialize

__all__ = [
    "cancel",
    "claim",
    "dependency_error",
    "dependency_failed",
    "fail",
    "fail_lost",
    "join_halves",
    "lost_error",
    "notify_cancelled",
    "split_chunk",
]


def claim(future: Future[Any]) -> bool:
    """Mark a future running before its task is sent; False if it was cancelled.

    A task given back by a worker (a steal, a retry) is sent again, already
    running. A user's cancel() may move the future to CANCELLED at any time,
    from another thread: whoever sets a result or an error afterwards must
    expect InvalidStateError (see _fail).
    """
    return future._state == RUNNING or future.set_running_or_notify_cancel()


def fail(future: Future[Any], error: BaseException) -> None:
    """Fail a task that has not started; the user may have cancelled it meanwhile
    (``cancel()`` acts at once, in the user's thread), and then it stays cancelled."""
    try:
        future.set_exception(error)
    except InvalidStateError:
        pass


def notify_cancelled(future: Future[Any]) -> None:
    """Wake ``wait()``/``as_completed()`` callers of a cancelled future, once.

    The stdlib notifies them only from ``set_running_or_notify_cancel``, which
    raises if called twice; a dispatch that met the cancelled future first
    already called it.
    """
    if future._state == CANCELLED:
        future.set_running_or_notify_cancel()


def cancel(future: Future[Any]) -> None:
    """Cancel without telling the runtime again, and wake ``wait()`` callers."""
    if future._cancel():
        notify_cancelled(future)


def dependency_error(future: Future[Any], cause: Future[Any]) -> DependencyError:
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


def join_halves(
    parent: Future[Any], left: tuple[Future[Any], int], right: tuple[Future[Any], int]
) -> None:
    """Complete ``parent``, a map chunk, from its two halves' results.

    A half that failed as a whole (its single item took its worker down on
    every attempt, say) fails each of its items, not the chunk: the other
    items' results are delivered.
    """
    halves = (left, right)

    def on_done(_: Future[Any]) -> None:
        if parent.done() or not all(half.done() for half, _ in halves):
            return
        if any(half.cancelled() for half, _ in halves):
            # Cancelled with the parent, or by shutdown(cancel_futures=True),
            # which cannot see the parent: it has no record of its own.
            if parent._cancel(running=True):
                notify_cancelled(parent)
            return
        values: list[Any] = []
        errors: list[tuple[int, BaseException]] = []
        seconds = 0.0
        for half, items in halves:
            error = half.exception()
            if error is None:
                part, part_errors, part_seconds = half.result()
            else:
                part, part_seconds = [None] * items, 0.0
                part_errors = [(i, error) for i in range(items)]
            errors += [(i + len(values), e) for i, e in part_errors or ()]
            values += part
            seconds += part_seconds
        try:
            parent.set_result((values, errors or None, seconds))
        except InvalidStateError:
            pass

    def on_parent(_: Future[Any]) -> None:
        if parent.cancelled():
            for half, _items in halves:
                half.cancel()

    for half, _items in halves:
        half.add_done_callback(on_done)
    parent.add_done_callback(on_parent)


def fail_lost(record: Record | None, lost: Lost, exit_report: Exited | None) -> bool:
    """Fail a task that took its worker down (or timed out) once too often;
    False if it was settled already."""
    if record is None or record.future.done():
        return False
    policy = record.task.policy
    error = lost_error(
        record.future.name, lost, policy.timeout, policy.retries, record.items, exit_report
    )
    fail(record.future, error)
    return True


def lost_error(
    name: str,
    lost: Lost,
    timeout: float | None,
    retries: int,
    items: int,
    exit_report: Exited | None,
) -> BaseException:
    """The error of a task that took its worker down (or timed out) once too often."""
    tries = f"{lost.attempts} attempt" + ("s" if lost.attempts > 1 else "")
    if lost.timed_out:
        per = f"{timeout or 0.0:g} s"
        if items:
            per += " per item" + (f" ({items} items)" if items > 1 else "")
        return TaskTimeoutError(
            f"task {name!r} ran past its timeout of {per} on {tries}; its worker was "
            f"killed and replaced each time. Raise the timeout (task_timeout=, or "
            f"@pel.task(timeout=...)) or allow more retries."
        )
    pid = exit_report.pid if exit_report else None
    exitcode = exit_report.exitcode if exit_report else None
    how = describe_exit(
        exitcode,
        exit_report.peak_rss if exit_report else None,
        exit_report.cause if exit_report else "",
    )
    return WorkerCrashedError(
        f"task {name!r} took its worker process down on {tries} (the last, pid {pid}, "
        f"{how}); retries={retries} are used up. The other tasks on those workers were "
        f"run again. What the worker printed as it died (a fatal Python error, a C "
        f"extension's message) is on this program's stderr, which workers share. If the "
        f"crash comes and goes, allow more attempts (pel.Executor(retries=...) or "
        f"@pel.task(retries=...)); if every attempt crashes, the task itself ends its "
        f"process: call it in a plain Python process to debug it.",
        exitcode,
    )


def dependency_failed(record: Record) -> bool:
    """Settle a task at once if a dependency already failed or was cancelled."""
    for dep in record.deps:
        state = dep._state
        if state in (PENDING, RUNNING) or (state == FINISHED and dep._exception is None):
            continue  # at a glance, without its lock: the usual case
        if dep.cancelled():
            cancel(record.future)
            return True
        if dep.done() and dep.exception() is not None:
            fail(record.future, dependency_error(record.future, dep))
            return True
    return False


def split_chunk(
    record: Record, new_future: Callable[[str], Future[Any]], backend: Backend
) -> list[Record]:
    """The two halves of a map chunk that took its worker down, each isolated
    (a crash of one is known to be its own); their results are joined into
    the chunk's future."""
    parent = record.future
    payload = record.payload
    star, items, retry = serialize.loads(payload) if backend.pickles else payload
    middle = len(items) // 2
    halves = []
    for part in (items[:middle], items[middle:]):
        chunk = (star, part, retry)
        child = new_future(parent.name)
        child._state = RUNNING  # it stands for the parent, which is running
        encoded = serialize.dumps_oob(chunk, backend.store) if backend.pickles else chunk
        half = Record(child, record.task, encoded, (), len(part))
        half.flags |= ISOLATE
        halves.append(half)
    join_halves(parent, (halves[0].future, middle), (halves[1].future, len(items) - middle))
    return halves
