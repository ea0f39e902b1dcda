"""``pel.Executor``: the façade users hold.

It validates input, turns a call into a :class:`~pel._record.Record` (pickled
here, in the caller's thread, for backends that pickle, so an unpicklable
argument fails at ``submit`` and names itself), and hands it to the runtime.
It owns nothing the runtime thread touches.

Lifetime: the backend and the runtime are made at the first ``submit``,
``map`` or ``put`` (an executor never used starts nothing; see ``_start``).
``shutdown()`` or leaving the ``with`` block stops the workers. An
executor that is garbage-collected without shutdown finishes its queued work
and then stops them; one still open at interpreter exit is shut down then
(after an uncaught Ctrl-C, its workers are killed at once).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ._errors import (
    ExecutorShutdownError,
    OptionError,
    SerializationError,
    SharedMemoryError,
    WorkerCrashedError,
)
from ._futures import Future, FutureFoundError
from ._options import check_data_plane, parse_size
from ._task import (
    DEFAULT_RETRIES,
    DEFAULT_RETRY_DELAY,
    TaskFunction,
    TaskOptions,
    TaskPolicy,
    check_delay,
    check_retries,
    check_retry_on,
    check_timeout,
    split_options,
)
from .backends import BACKENDS, load_backend, usable_cores

if TYPE_CHECKING:
    from . import _arguments, _refs
    from ._encode import encode_call
    from ._map import MapRun
    from ._record import Prepared, Record
    from ._refs import ObjectRef
    from ._runtime import Runtime
    from .backends.base import Backend, BackendOptions
    from .backends.processes.zygote import Launcher
    from .transport import serialize

__all__ = ["Executor"]

R = TypeVar("R")

#: Functions remembered (and kept alive) per executor, so each is pickled once.
_FUNCTIONS_KEPT = 1024


class _FunctionTable:
    """Gives each function an id and, for pickling backends, its pickle, once."""

    def __init__(self, pickles: bool) -> None:
        self._pickles = pickles
        self._entries: OrderedDict[int, tuple[Callable[..., Any], int, bytes | None]] = (
            OrderedDict()
        )
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def lookup(self, fn: Callable[..., Any], name: str) -> tuple[int, bytes | None]:
        entry = self._entries.get(id(fn))
        if entry is not None and entry[0] is fn:
            return entry[1], entry[2]
        blob = None
        if self._pickles:
            try:
                blob = serialize.dumps_function(fn)
            except Exception as exc:
                raise SerializationError(
                    f"cannot send the function of task {name!r} to a worker: it cannot be "
                    f"pickled: {type(exc).__name__}: {exc}"
                ) from exc
        with self._lock:
            fn_id = next(self._ids)
            self._entries[id(fn)] = (fn, fn_id, blob)
            if len(self._entries) > _FUNCTIONS_KEPT:
                self._entries.popitem(last=False)
        return fn_id, blob


def _name_of(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def _options_of(fn: Callable[..., Any]) -> TaskOptions | None:
    """A ``@pel.task`` function's options (checked again at each submit: a
    cached entry stands only while they are the same object)."""
    return fn.options if type(fn) is TaskFunction else None


def _check_callable(fn: object, where: str) -> None:
    if not callable(fn):
        raise TypeError(f"{where} needs a callable first, got {type(fn).__name__}: {fn!r}")


def _check_picklable(initializer: Callable[..., object], initargs: tuple[Any, ...]) -> None:
    """The processes backend sends these to each worker: refuse, at
    construction, what cannot be pickled (not at the first submit)."""
    from .transport import serialize

    what = "initializer"
    try:
        serialize.dumps_function(initializer)
        what = "initargs"
        serialize.dumps(initargs)
    except Exception as exc:
        raise OptionError(
            f"{what} cannot be pickled to send to the workers: {type(exc).__name__}: {exc}"
        ) from exc


def _load_machinery() -> None:
    """Import what a running executor is made of (module globals here from
    then on): the runtime, the scheduler, the encoding of calls.

    Not when this module is imported but as the first executor starts, after
    pel's fork server was started: these imports (~13 ms) then run while it
    boots (~16 ms), not before it (W8, cold start: docs/benchmarks.md)."""
    global _machinery_loaded, _arguments, _refs, encode_call, MapRun, Prepared, Record
    global ObjectRef, Runtime, BackendOptions, serialize
    if _machinery_loaded:
        return
    from . import _arguments, _refs
    from ._encode import encode_call
    from ._map import MapRun
    from ._record import Prepared, Record
    from ._refs import ObjectRef
    from ._runtime import Runtime
    from .backends.base import BackendOptions
    from .transport import serialize

    _machinery_loaded = True


_machinery_loaded = False


def _boot_fork_server(
    backend: str, mp_context: Any, max_workers: int, inner_threads: int | None
) -> Launcher | None:
    """Start pel's fork server now, for a processes executor that uses it
    (Linux, no ``mp_context``), with its workers' native thread caps."""
    if backend != "processes" or mp_context is not None:
        return None
    from .backends.processes.zygote import Launcher, supported

    if not supported():
        return None
    from .backends.processes.native_threads import environment_now

    launcher = Launcher()
    launcher.environment = environment_now(inner_threads, max_workers)
    launcher.boot()
    return launcher


class Executor(concurrent.futures.Executor):
    """Runs calls on a pool of workers; a ``concurrent.futures.Executor``.

    ``max_workers``: how many workers (default: one per core for processes,
    ``min(32, cores + 4)`` for threads, 1 for inline). ``backend``:
    ``"processes"`` (default), ``"threads"`` or ``"inline"``. ``mp_context``:
    a multiprocessing context or start-method name for the processes backend
    (default: pel's own fork server on Linux, spawn elsewhere). ``initializer(*initargs)``
    runs once in each worker as it starts.

    Failure handling, the defaults of every task (a task's own options, set
    with :func:`pel.task`, win): ``retries`` (3): how many times a task runs
    again after its worker died under it, it timed out, or it raised one of
    ``retry_on`` (default none: a task's own exception is final).
    ``task_timeout``: seconds one attempt may run before its worker is killed
    and replaced. ``retry_delay``: the wait before the first retry, doubled
    for each next one, with jitter. Worker recycling (processes backend):
    ``max_tasks_per_worker`` calls (a map chunk is one), or
    ``worker_memory_limit`` (bytes, or a string such as ``"2GiB"``) of
    resident memory: past it after a task, the worker retires (its queued
    tasks go to the others); past 1.5 times it during a task (checked every
    0.1 s), the worker is killed, a crash for that task. ``inner_threads``
    (processes backend): the threads each worker's native libraries (BLAS,
    OpenMP, numexpr) may start, set through ``OMP_NUM_THREADS`` and its
    kin; default cores / workers, at least 1, leaving alone any of those
    variables already set in the environment.

    The data plane (processes backend): buffers of at least ``shm_threshold``
    bytes (default 1 MiB) in arguments and results travel through shared
    memory, mapped read-only by readers. ``shm_limit`` bounds the bytes of
    ``/dev/shm`` this executor holds (default half its size); past it, data
    spills to files in ``spill_dir`` (default a temp directory), or, with
    ``spill_dir=False``, fails with :class:`pel.SharedMemoryError`.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        backend: str = "processes",
        mp_context: Any = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        retries: int = DEFAULT_RETRIES,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = (),
        task_timeout: float | None = None,
        retry_delay: float = DEFAULT_RETRY_DELAY,
        max_tasks_per_worker: int | None = None,
        worker_memory_limit: int | str | None = None,
        shm_threshold: int | None = None,
        shm_limit: int | None = None,
        spill_dir: str | os.PathLike[str] | Literal[False] | None = None,
        inner_threads: int | None = None,
    ) -> None:
        if not isinstance(backend, str) or backend not in BACKENDS:
            load_backend(backend)  # raises, naming the choices
        check_data_plane(shm_threshold, shm_limit, spill_dir)
        if max_workers is None:
            cores = usable_cores()
            max_workers = {"threads": min(32, cores + 4), "inline": 1}.get(backend, cores)
        elif not isinstance(max_workers, int) or isinstance(max_workers, bool):
            raise OptionError(f"max_workers must be an int, got {max_workers!r}")
        elif max_workers < 1:
            raise OptionError(f"max_workers must be at least 1, got {max_workers}")
        if backend == "inline":
            max_workers = 1  # accepted and ignored, so switching backend is one word
        if initializer is not None and not callable(initializer):
            raise OptionError(f"initializer must be callable, got {initializer!r}")
        if not isinstance(initargs, tuple):
            raise OptionError(f"initargs must be a tuple, got {type(initargs).__name__}")
        for option, value in [
            ("mp_context", mp_context),
            ("max_tasks_per_worker", max_tasks_per_worker),
            ("worker_memory_limit", worker_memory_limit),
            ("inner_threads", inner_threads),
        ]:
            if value is not None and backend != "processes":
                raise OptionError(
                    f"{option} only applies to the processes backend, not {backend!r}"
                )
        if max_tasks_per_worker is not None:
            check_retries(max_tasks_per_worker, "max_tasks_per_worker")
            if max_tasks_per_worker < 1:
                raise OptionError(
                    f"max_tasks_per_worker must be at least 1, got {max_tasks_per_worker}"
                )
        if inner_threads is not None and (
            not isinstance(inner_threads, int)
            or isinstance(inner_threads, bool)
            or inner_threads < 1
        ):
            raise OptionError(f"inner_threads must be an int >= 1, got {inner_threads!r}")
        if initializer is not None and backend == "processes":
            _check_picklable(initializer, initargs)
        if mp_context is not None and backend == "processes":
            from .backends.processes.pool import resolve_context

            resolve_context(mp_context)  # a bad one fails here, not at the first submit
        memory_limit = None if worker_memory_limit is None else parse_size(worker_memory_limit)
        timeout = None if task_timeout is None else check_timeout(task_timeout, "task_timeout")
        self._policy = TaskPolicy(
            check_retries(retries, "retries"),
            check_retry_on(retry_on, "retry_on"),
            None if timeout == float("inf") else timeout,
            check_delay(retry_delay, "retry_delay"),
        )
        self._policies: dict[int, tuple[TaskOptions, TaskPolicy]] = {}
        #: What submit needs of each function, by id(function): a repeat
        #: submit of the same function is one dict lookup (it holds the
        #: function, so the id is not reused while the entry lives).
        self._prepared: dict[int, tuple[Callable[..., Any], Prepared]] = {}
        self._backend_name = backend
        self._max_workers = max_workers
        #: The backend's options but the worker count, for _start.
        self._backend_options: dict[str, Any] = {
            "initializer": initializer,
            "initargs": initargs,
            "mp_context": mp_context,
            "max_tasks_per_worker": max_tasks_per_worker,
            "worker_memory_limit": memory_limit,
            "shm_threshold": shm_threshold,
            "shm_limit": shm_limit,
            "spill_dir": spill_dir,
            "inner_threads": inner_threads,
        }
        self._keys = itertools.count()
        self._maps: weakref.WeakSet[MapRun] = weakref.WeakSet()
        self._shutdown = False
        self._started = False
        # Reentrant: on the inline backend a task runs inside submit and may
        # submit more (those run after it; waiting on them there deadlocks).
        self._lock = threading.RLock()

    def _start(self, boot: bool = True) -> None:
        """Make the backend and the runtime: at the first submit, map or put.

        An executor never used starts nothing (a module may make one as it is
        imported, and pel's fork server imports the user's script again).
        With ``boot`` (a submit or a map, not a put), pel's fork server is
        started first, and the rest of pel imported while it boots.
        """
        with self._lock:
            if self._started:
                return
            if self._shutdown:
                raise ExecutorShutdownError("cannot submit new tasks: this executor was shut down")
            name, workers, options = self._backend_name, self._max_workers, self._backend_options
            launcher = (
                _boot_fork_server(name, options["mp_context"], workers, options["inner_threads"])
                if boot
                else None
            )
            backend: Backend | None = None
            try:
                _load_machinery()
                backend_cls = load_backend(name)
                made = backend_cls(BackendOptions(workers, **options, launcher=launcher))
                backend = made
                runtime = Runtime(made, workers, self._keys)
                self._functions = _FunctionTable(backend_cls.pickles)
            except BaseException:
                if backend is not None:
                    backend.close(kill=True)  # its fork server with it
                elif launcher is not None:
                    launcher.close()
                raise
            self._backend: Backend = made
            self._runtime: Runtime = runtime
            _open_runtimes.add(runtime)
            # Garbage-collected without shutdown: finish queued work, then stop.
            weakref.finalize(self, _close_quietly, runtime)
            self._started = True

    # -- introspection ----------------------------------------------------------

    @property
    def max_workers(self) -> int:
        return self._max_workers

    @property
    def backend(self) -> str:
        return self._backend_name

    def worker_pids(self) -> list[int]:
        """Process ids of the live worker processes (empty for in-process backends)."""
        return self._runtime.worker_pids() if self._started else []

    # -- submitting ---------------------------------------------------------------

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        """Run ``fn(*args, **kwargs)`` on a worker; pel futures in the arguments
        are dependencies (see the user guide for where pel looks for them).

        The arguments are typed ``Any`` on purpose: a ``Future[T]`` may stand
        wherever ``fn`` takes a ``T``, which a ``ParamSpec`` cannot express.
        """
        # Keyed by the function as given: a @pel.task wrapper's Prepared holds
        # the function it wraps, so it is compared to the wrapper kept here.
        entry = self._prepared.get(id(fn))
        if entry is None or entry[0] is not fn:
            return self._submit_first(fn, args, kwargs)
        prepared = entry[1]
        if prepared.options is not None and prepared.options is not _options_of(fn):
            return self._submit_first(fn, args, kwargs)
        name = prepared.name
        payload, deps = encode_call(self._backend, self._runtime, name, args, kwargs)
        with self._lock:
            if self._shutdown or self._runtime.broken is not None:
                self._check_open()
            future: Future[R] = Future(self._runtime, next(self._keys), name)
            self._runtime.submit(Record(future, prepared, payload, deps))
        self._runtime.throttle()
        return future

    def _submit_first(
        self, fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Future[R]:
        """``submit`` of a function not seen yet (or no longer remembered):
        starts the executor if this is its first use, then checks the call,
        pickles it, and remembers what the next submit of the function needs.
        The checks run in the order they always have, so the same mistake
        gives the same error (but on a shut-down executor never started, the
        shutdown is found first)."""
        _check_callable(fn, "submit()")
        self._start()
        task_fn, options = split_options(fn)
        name = options.name if options is not None and options.name else _name_of(task_fn)
        payload, deps = encode_call(self._backend, self._runtime, name, args, kwargs)
        fn_id, blob = self._functions.lookup(task_fn, name)
        priority = options.priority if options is not None else 0
        prepared = Prepared(
            task_fn, options, fn_id, blob, name, priority, self._policy_for(options)
        )
        if len(self._prepared) >= _FUNCTIONS_KEPT:
            self._prepared.clear()
        self._prepared[id(fn)] = (fn, prepared)
        with self._lock:
            self._check_open()
            future: Future[R] = Future(self._runtime, next(self._keys), name)
            self._runtime.submit(Record(future, prepared, payload, deps))
        self._runtime.throttle()
        return future

    def _policy_for(self, options: TaskOptions | None) -> TaskPolicy:
        """The executor's failure policy with a function's own options over it."""
        if options is None:
            return self._policy
        cached = self._policies.get(id(options))
        if cached is not None and cached[0] is options:
            return cached[1]
        policy = self._policy.merged(options)
        if len(self._policies) > 1024:
            self._policies.clear()
        self._policies[id(options)] = (options, policy)
        return policy

    def _check_open(self) -> None:
        if self._shutdown:
            raise ExecutorShutdownError("cannot submit new tasks: this executor was shut down")
        if self._started and self._runtime.broken is not None:
            raise WorkerCrashedError(self._runtime.broken)

    def put(self, obj: R) -> ObjectRef[R]:
        """Store ``obj`` once and return a ref to pass to tasks in its place.

        On the processes backend its large buffers are written to shared memory
        now (a snapshot), and every task given the ref maps them read-only
        instead of receiving a copy. The data is freed when the ref is
        garbage-collected and no pending task uses it.
        """
        self._start(boot=False)  # a store, not yet workers
        with self._lock:
            self._check_open()
        return _refs.put(self._backend.store, obj)

    def map(
        self,
        fn: Callable[..., R],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | Literal["auto"] = "auto",
        ordered: bool = True,
    ) -> Iterator[R]:
        """Lazily apply ``fn`` to the items of ``iterables``, in parallel.

        The input is read ahead only as far as the workers need (memory stays
        bounded for endless iterators). ``chunksize="auto"`` tunes chunk size
        from measured durations and shrinks it toward the end of the input.
        ``ordered=False`` yields results as they arrive. An error raised by
        ``fn`` or by the input is raised where it happened, after the results
        before it.
        """
        _check_callable(fn, "map()")
        if chunksize != "auto" and (
            not isinstance(chunksize, int) or isinstance(chunksize, bool) or chunksize < 1
        ):
            raise OptionError(f"chunksize must be a positive int or 'auto', got {chunksize!r}")
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0):
            raise OptionError(f"timeout must be a non-negative number or None, got {timeout!r}")
        if not iterables:
            raise TypeError("map() needs at least one iterable")
        self._start()
        with self._lock:
            self._check_open()
        fn, options = split_options(fn)
        name = options.name if options is not None and options.name else _name_of(fn)
        fn_id, blob = self._functions.lookup(fn, name)
        priority = options.priority if options is not None else 0
        policy = self._policy_for(options)
        prepared = Prepared(fn, options, fn_id, blob, name, priority, policy)
        # Items that raise one of retry_on are retried inside the chunk.
        retry = (
            (policy.retries, policy.retry_on, policy.retry_delay)
            if policy.retry_on and policy.retries
            else None
        )

        def submit_chunk(chunk: tuple[bool, Sequence[Any]], first: int) -> Future[Any]:
            payload: Any = (chunk[0], chunk[1], retry)
            if self._backend.pickles:
                payload = self._encode_chunk(name, payload, first)
            elif _refs.made:  # in-process: an ObjectRef item stands for its object
                items, _ = _arguments.replace(tuple(chunk[1]), {}, ObjectRef, ObjectRef._get)
                payload = (chunk[0], list(items), retry)
            with self._lock:
                self._check_open()
                future: Future[Any] = Future(self._runtime, next(self._keys), f"{name}[map]")
                self._runtime.submit(Record(future, prepared, payload, (), len(chunk[1])))
            self._runtime.throttle()
            return future

        run = MapRun(submit_chunk, iterables, self._max_workers, timeout, chunksize, ordered)
        results = run.results()
        self._maps.add(run)  # drained at shutdown while its results are still referenced
        return results

    def _encode_chunk(self, name: str, chunk: tuple[bool, Sequence[Any], Any], first: int) -> Any:
        try:
            return serialize.dumps_oob(chunk, self._backend.store)
        except SharedMemoryError:
            raise
        except Exception:
            for i, item in enumerate(chunk[1]):
                try:
                    serialize.dumps(item)
                except FutureFoundError:
                    raise SerializationError(
                        f"map() of {name!r}: input item {first + i} holds a pel future; map takes "
                        f"plain values (use submit() to pass futures)"
                    ) from None
                except Exception as exc:
                    raise SerializationError(
                        f"map() of {name!r}: input item {first + i} cannot be pickled: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
            raise

    # -- stopping ------------------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting work; stop the workers when the queued work is done.

        The rest of every ``map`` still open is submitted first, so its results
        can be read afterwards, as with ``concurrent.futures`` (close a map over
        an endless input before shutting down). ``cancel_futures=True`` cancels
        every task not finished instead, running ones included (their workers
        are killed, as by ``Future.cancel()``), so it returns promptly.
        ``wait=False`` returns at once; the workers stop in the background.
        """
        if not cancel_futures and not self._shutdown:
            for run in list(self._maps):
                run.drain()
        with self._lock:
            self._shutdown = True
            if not self._started:
                return  # nothing was started
        if self._runtime.close(wait=wait, cancel_futures=cancel_futures):
            _open_runtimes.discard(self._runtime)  # else interpreter exit waits for it

    def terminate(self) -> None:
        """Stop now: cancel what is queued, kill the workers, fail what was running.

        What ``Ctrl-C`` inside a ``with`` block does.
        """
        with self._lock:
            self._shutdown = True
            if not self._started:
                return
        if self._runtime.close(wait=True, cancel_futures=True, kill=True):
            _open_runtimes.discard(self._runtime)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Literal[False]:
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self.terminate()
        else:
            self.shutdown(wait=True)
        return False

    def __repr__(self) -> str:
        state = "shut down" if self._shutdown else "open"
        return f"<pel.Executor {self._backend_name} x{self._max_workers} {state}>"


_open_runtimes: weakref.WeakSet[Runtime] = weakref.WeakSet()


def _close_quietly(runtime: Runtime) -> None:
    runtime.close(wait=False, cancel_futures=False)


def _close_all_at_exit() -> None:
    """Interpreter exit: finish and stop every open executor (kill after Ctrl-C)."""
    interrupted = isinstance(getattr(sys, "last_value", None), KeyboardInterrupt)
    for runtime in list(_open_runtimes):
        runtime.close(wait=True, cancel_futures=interrupted, kill=interrupted)


threading._register_atexit(_close_all_at_exit)  # type: ignore[attr-defined]
