"""The one interface every backend implements, and what crosses it.

The runtime thread is a backend's only caller (``wakeup`` aside, which any
thread may call). It hands over :class:`Call` batches with :meth:`Backend.send`
and collects :class:`Report` lists from :meth:`Backend.wait`, which blocks
until something happened: tasks completed, a worker gave tasks back or died,
or ``wakeup`` was called. A backend makes no scheduling decision: which task
goes where, and when, is the scheduler's.
"""

from __future__ import annotations

import functools
import os
import signal
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

from .._arguments import substitute
from .._value import Value
from . import usable_cores
from .running import ISOLATE, TIMED, run_chunk

__all__ = [
    "ISOLATE",
    "TIMED",
    "Backend",
    "BackendOptions",
    "Call",
    "Completed",
    "Exited",
    "GaveBack",
    "Outcome",
    "Report",
    "StartedCall",
    "describe_exit",
    "run_call",
    "usable_cores",
]


class BackendOptions(Value):
    __slots__ = (
        "initargs",
        "initializer",
        "inner_threads",
        "launcher",
        "max_tasks_per_worker",
        "max_workers",
        "mp_context",
        "shm_limit",
        "shm_threshold",
        "spill_dir",
        "worker_memory_limit",
    )

    def __init__(
        self,
        max_workers: int,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        mp_context: Any = None,
        max_tasks_per_worker: int | None = None,
        worker_memory_limit: int | None = None,
        shm_threshold: int | None = None,
        shm_limit: int | None = None,
        spill_dir: Any = None,
        inner_threads: int | None = None,
        launcher: Any = None,
    ) -> None:
        self.max_workers = max_workers
        self.initializer = initializer
        self.initargs = initargs
        self.mp_context = mp_context
        #: Worker recycling (processes only): retire a worker after this many
        #: tasks, or once its resident memory passes this many bytes.
        self.max_tasks_per_worker = max_tasks_per_worker
        self.worker_memory_limit = worker_memory_limit
        #: The data plane (processes backend): see ``Executor`` and ``transport.shm``.
        self.shm_threshold = shm_threshold
        self.shm_limit = shm_limit
        self.spill_dir = spill_dir
        #: Threads each worker's native libraries may start (processes backend;
        #: None: cores / workers): see ``backends.processes.native_threads``.
        self.inner_threads = inner_threads
        #: pel's fork server, already booting (processes backend): the
        #: executor starts it before it imports the rest of pel.
        self.launcher = launcher


class Call(NamedTuple):
    """One task (or one ``map`` chunk) as sent to a worker.

    ``payload`` is ``(args, kwargs)`` with :class:`~pel._arguments.Dep`
    placeholders for dependencies; pickled to bytes for backends that pickle.
    ``deps`` holds the dependencies' values in placeholder order (pickled
    likewise). A chunk's payload is ``(star, items, retry)`` instead (see
    :func:`run_chunk`).

    A NamedTuple, made with ``tuple.__new__`` (one per task sent), whose first
    ``WIRE_FIELDS`` fields are what a worker process is sent of it, in order:
    ``call[:WIRE_FIELDS]`` is the message's tuple.
    """

    key: int
    fn_id: int
    payload: Any
    deps: list[Any]
    chunk: bool
    flags: int
    fn: Callable[..., Any]
    #: The function pickled once, for backends that pickle.
    fn_blob: bytes | None


#: Fields of a :class:`Call` a worker process is sent (the rest stay here).
WIRE_FIELDS = 6
#: ``Call(*fields)`` without the Python-level ``__new__`` every NamedTuple has.
new_call = functools.partial(tuple.__new__, Call)


class Outcome(NamedTuple):
    """A call's result, or the exception it raised (remote traceback as cause).

    A NamedTuple, made with ``tuple.__new__`` where one is made per task."""

    key: int
    ok: bool
    value: Any
    seconds: float
    #: The result pickled, as received from a worker process: bytes, or a
    #: ``serialize.Packed`` whose large buffers are in shared memory.
    raw: Any = None


#: ``Outcome(*fields)``, likewise.
new_outcome = functools.partial(tuple.__new__, Outcome)


class Completed(Value):
    __slots__ = ("outcomes", "worker")

    def __init__(self, worker: int, outcomes: list[Outcome]) -> None:
        self.worker = worker
        self.outcomes = outcomes


class GaveBack(Value):
    """Calls handed back unstarted: after a steal (``stolen``), a drop, or
    by a worker that is retiring."""

    __slots__ = ("keys", "stolen", "worker")

    def __init__(self, worker: int, keys: list[int] | None = None, stolen: bool = True) -> None:
        self.worker = worker
        self.keys: list[int] = [] if keys is None else keys
        self.stolen = stolen


class StartedCall(Value):
    """A worker began a call flagged ``TIMED``."""

    __slots__ = ("key", "worker")

    def __init__(self, worker: int, key: int) -> None:
        self.worker = worker
        self.key = key


class Exited(Value):
    """A worker ended. ``exitcode`` as multiprocessing reports it (negative:
    signal). ``detail``: its initializer failed (so would a replacement's).
    ``peak_rss``: the most resident memory it was seen using, in bytes.
    ``cause``: why pel stopped it, when pel did (memory limit). ``started``:
    it had started up (an in-process worker always has)."""

    __slots__ = ("cause", "detail", "exitcode", "peak_rss", "pid", "started", "worker")

    def __init__(
        self,
        worker: int,
        exitcode: int | None,
        pid: int | None = None,
        detail: str = "",
        peak_rss: int | None = None,
        cause: str = "",
        started: bool = True,
    ) -> None:
        self.worker = worker
        self.exitcode = exitcode
        self.pid = pid
        self.detail = detail
        self.peak_rss = peak_rss
        self.cause = cause
        self.started = started


Report = Completed | GaveBack | StartedCall | Exited


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
    def kill_worker(self, worker: int) -> None:
        """Stop a worker now, whatever it runs; its ``Exited`` report follows."""

    @abstractmethod
    def drop(self, worker: int, keys: list[int]) -> None:
        """Have a worker drop these calls if it has not started them; those it
        dropped come back in a ``GaveBack(stolen=False)``."""

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


_SIGNAL_HINTS = {
    signal.SIGSEGV: " (a segmentation fault, usually in a C extension)",
    signal.SIGKILL: " (killed: often the out-of-memory killer, or kill -9)",
    signal.SIGABRT: " (aborted, usually by a failed assertion in C code)",
    signal.SIGBUS: " (a bus error: mapped memory vanished)",
}


def describe_exit(exitcode: int | None, peak_rss: int | None = None, cause: str = "") -> str:
    """Say in words how a worker process ended, with the likely cause.

    ``peak_rss``: the most memory it was seen using. A SIGKILL after using a
    large share of the machine's memory was most likely the out-of-memory
    killer. ``cause``: pel's own reason, when pel killed it.
    """
    if exitcode is None:
        how = "ended for an unknown reason"
    elif exitcode >= 0:
        how = f"exited with code {exitcode}"
        if exitcode == 0:
            how += " (sys.exit(0) in the task?)"
    else:
        try:
            sig = signal.Signals(-exitcode)
        except ValueError:
            how = f"was killed by signal {-exitcode}"
        else:
            hint = "" if cause else _SIGNAL_HINTS.get(sig, "")
            if sig == signal.SIGKILL and peak_rss and _is_large(peak_rss) and not cause:
                hint = (
                    f" (probably the out-of-memory killer: it was seen using "
                    f"{_gib(peak_rss)} of this machine's {_gib(_total_memory() or 0)}; use "
                    f"less memory per task, run fewer workers (max_workers=), or set "
                    f"worker_memory_limit= so pel retires a worker before the kernel kills it)"
                )
            how = f"was killed by {sig.name}{hint}"
    if cause:
        how += f"; {cause}"
    elif peak_rss:
        how += f"; peak memory seen {_gib(peak_rss)}"
    return how


def _total_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _is_large(rss: int) -> bool:
    """A quarter of the machine's memory or more."""
    total = _total_memory()
    return total is not None and rss * 4 >= total


def _gib(size: int) -> str:
    return f"{size / 2**30:.2f} GiB"
