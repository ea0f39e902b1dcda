"""The one interface every backend implements, and what crosses it.

The runtime thread is a backend's only caller (``wakeup`` aside, which any
thread may call). It hands over :class:`Call` batches with :meth:`Backend.send`
and collects :class:`Report` lists from :meth:`Backend.wait`, which blocks
until something happened: tasks completed, a worker gave tasks back or died,
or ``wakeup`` was called. A backend makes no scheduling decision: which task
goes where, and when, is the scheduler's.
"""

from __future__ import annotations

import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import starmap
from typing import Any, ClassVar

from .._arguments import substitute
from .._errors import RemoteTraceback

__all__ = [
    "Backend",
    "BackendOptions",
    "Call",
    "Completed",
    "Exited",
    "GaveBack",
    "Outcome",
    "Report",
    "run_call",
]


@dataclass(frozen=True, slots=True)
class BackendOptions:
    max_workers: int
    initializer: Callable[..., object] | None = None
    initargs: tuple[Any, ...] = ()
    mp_context: Any = None
    #: The data plane (processes backend): see ``Executor`` and ``transport.shm``.
    shm_threshold: int | None = None
    shm_limit: int | None = None
    spill_dir: Any = None


@dataclass(slots=True)
class Call:
    """One task (or one ``map`` chunk) as sent to a worker.

    ``payload`` is ``(args, kwargs)`` with :class:`~pel._arguments.Dep`
    placeholders for dependencies; pickled to bytes for backends that pickle.
    ``deps`` holds the dependencies' values in placeholder order (pickled
    likewise). A chunk's payload is a list of argument tuples instead.
    """

    key: int
    fn: Callable[..., Any]
    fn_id: int
    fn_blob: bytes | None  # the function pickled once, for backends that pickle
    payload: Any
    deps: list[Any]
    chunk: bool = False


@dataclass(slots=True)
class Outcome:
    key: int
    ok: bool
    value: Any  # the result, or the exception (with its remote traceback as cause)
    seconds: float
    #: The result pickled, as received from a worker process: bytes, or a
    #: ``serialize.Packed`` whose large buffers are in shared memory.
    raw: Any = None


@dataclass(slots=True)
class Completed:
    worker: int
    outcomes: list[Outcome]


@dataclass(slots=True)
class GaveBack:
    worker: int
    keys: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Exited:
    """A worker died. ``exitcode`` as multiprocessing reports it (negative: signal)."""

    worker: int
    exitcode: int | None
    pid: int | None = None
    detail: str = ""


Report = Completed | GaveBack | Exited


class Backend(ABC):
    """Runs calls on workers; see the module docstring for the contract."""

    name: ClassVar[str]
    #: True when calls and results are pickled: the executor then pickles
    #: arguments at submit, so errors surface there.
    pickles: ClassVar[bool] = False
    #: True when the runtime runs in the caller's thread (no runtime thread).
    synchronous: ClassVar[bool] = False
    #: The shared-memory object store (``transport.shm.Store``) of backends
    #: that pickle; large buffers of calls and results go there.
    store: Any = None

    def __init__(self, options: BackendOptions) -> None:
        self.options = options

    @abstractmethod
    def start_worker(self) -> int:
        """Start one worker; return its id. It may still be starting up."""

    @abstractmethod
    def send(self, worker: int, calls: list[Call]) -> None:
        """Queue calls on a worker, in order. Must not block on the worker."""

    @abstractmethod
    def steal(self, worker: int, count: int) -> None:
        """Ask a worker to give back up to ``count`` calls it has not started."""

    @abstractmethod
    def wait(self, timeout: float | None) -> list[Report]:
        """Block until there is something to report, ``wakeup``, or ``timeout``."""

    @abstractmethod
    def wakeup(self) -> None:
        """Make a blocked or the next ``wait`` return now. Any thread may call it."""

    @abstractmethod
    def close(self, *, kill: bool) -> None:
        """Stop every worker: after its queued calls, or at once when ``kill``."""

    def worker_pids(self) -> list[int]:
        """Operating-system process ids of live workers (none for in-process ones)."""
        return []


def run_initializer(options: BackendOptions) -> str | None:
    """Run the user's initializer; return its formatted traceback if it raised."""
    if options.initializer is None:
        return None
    try:
        options.initializer(*options.initargs)
    except BaseException as exc:
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return None


def remote_error(exc: BaseException) -> BaseException:
    """Attach the formatted traceback as ``__cause__``, as the caller will see it."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    exc.__cause__ = RemoteTraceback(f'\n"""\n{tb}"""')
    return exc


def run_call(call: Call) -> Outcome:
    """Run one call in this process (the in-process backends' worker body)."""
    start = time.perf_counter()
    try:
        if call.chunk:
            value: Any = run_chunk(call.fn, call.payload)
        else:
            args, kwargs = call.payload
            if call.deps:
                args, kwargs = substitute(args, kwargs, call.deps)
            value = call.fn(*args, **kwargs)
        ok = True
    except BaseException as exc:  # a task's SystemExit must not end a thread
        value, ok = exc, False
    seconds = time.perf_counter() - start
    if not ok:
        value = _in_process_error(value)
    return Outcome(call.key, ok, value, seconds)


def _in_process_error(exc: BaseException) -> BaseException:
    # Drop this frame and the ones above it, so the traceback starts in the task.
    tb = exc.__traceback__
    if tb is not None and tb.tb_next is not None:
        exc = exc.with_traceback(tb.tb_next)
    return exc


def run_chunk(
    fn: Callable[..., Any], chunk: tuple[bool, list[Any]]
) -> tuple[list[Any], Any, float]:
    """Apply ``fn`` to each item of a map chunk; stop at the first error.

    ``chunk`` is ``(star, items)``: items are argument tuples when ``star``
    (map over several iterables), else single arguments. Returns ``(results,
    error, seconds)``: the results before the error, the error (with its
    traceback as cause) or ``None``, and the time it took, from which ``map``
    tunes its chunk size. The loop is C's: ``list.extend`` keeps what it
    appended before an exception.
    """
    star, items = chunk
    start = time.perf_counter()
    results: list[Any] = []
    try:
        results.extend(starmap(fn, items) if star else map(fn, items))
    except Exception as exc:
        return results, remote_error(exc), time.perf_counter() - start
    return results, None, time.perf_counter() - start
