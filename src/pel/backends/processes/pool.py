"""The parent side of the processes backend (data flow in the package docstring).

While workers hold calls, their resident memory is read every
``SAMPLE_SECONDS`` (Linux): the peak seen goes into the report of a worker
that dies (a SIGKILL with a high peak was probably the out-of-memory killer),
and a worker past ``MEMORY_KILL_FACTOR`` times ``worker_memory_limit`` in the
middle of a call is killed (past the limit itself, it retires after the call).
"""

from __future__ import annotations

import functools
import os
import pickle
import selectors
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from ..._errors import OptionError
from ...transport import serialize
from ...transport.shm import Store
from ..base import (
    WIRE_FIELDS,
    Backend,
    BackendOptions,
    Call,
    Completed,
    Exited,
    GaveBack,
    Outcome,
    Report,
    StartedCall,
    new_outcome,
)
from .channel import (
    DONE,
    DROP,
    DROPPED,
    INIT_FAILED,
    PRELOAD,
    READY,
    RETIRING,
    RETURNED,
    RUN,
    STARTED,
    STEAL,
    STOP,
    FrameReader,
    consume,
    header,
    release_pipes,
    resident_bytes,
    widen_pipe,
)
from .native_threads import environment_now
from .zygote import Launcher, WorkerProcess
from .zygote import supported as zygote_supported

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext

__all__ = ["ProcessesBackend", "default_context"]

#: Functions a worker keeps; past this the parent tells it to forget the oldest.
FUNCTIONS_PER_WORKER = 256
#: Pieces of queued frames written with one ``writev`` (under IOV_MAX).
_WRITE_PIECES = 256
#: How long the runtime polls for a result before it blocks, when no more
#: calls are in flight than there are workers (see ``_spin``).
SPIN_SECONDS = 50e-6
#: How often busy workers' memory is read.
SAMPLE_SECONDS = 0.1
#: A worker past ``worker_memory_limit`` retires after its task; one past
#: this many times the limit while a task runs is killed (a crash for it).
MEMORY_KILL_FACTOR = 1.5


def default_context() -> BaseContext | None:
    """None on Linux: pel's own fork server (:mod:`.zygote`); spawn elsewhere."""
    if zygote_supported():
        return None
    import multiprocessing

    return multiprocessing.get_context("spawn")


def resolve_context(mp_context: Any) -> BaseContext | None:
    if mp_context is None:
        return default_context()
    # Imported only here: pel's own fork server does not need it (~3 ms).
    import multiprocessing
    import multiprocessing.context

    if isinstance(mp_context, str):
        try:
            return multiprocessing.get_context(mp_context)
        except ValueError as exc:
            raise OptionError(f"mp_context: {exc}") from None
    if isinstance(mp_context, multiprocessing.context.BaseContext):
        return mp_context
    raise OptionError(
        f"mp_context must be a multiprocessing context or a start method name, got {mp_context!r}"
    )


class _MpProcess:
    """A ``multiprocessing.Process`` seen through :class:`.zygote.WorkerProcess`'s
    interface, so the pool handles both alike."""

    __slots__ = ("_process",)

    def __init__(self, process: Any) -> None:
        self._process = process

    @property
    def pid(self) -> int | None:
        pid: int | None = self._process.pid
        return pid

    known_pid = pid
    failure = ""

    @property
    def sentinel(self) -> int:
        sentinel: int = self._process.sentinel
        return sentinel

    @property
    def exitcode(self) -> int | None:
        code: int | None = self._process.exitcode
        return code

    def join(self, timeout: float | None = None) -> None:
        self._process.join(timeout)

    def kill(self) -> None:
        self._process.kill()

    def close(self) -> None:
        self._process.close()


class _WorkerHandle:
    """The parent's view of one worker process."""

    __slots__ = (
        "cause",
        "closers",
        "detail",
        "fd_in",
        "fd_out",
        "functions",
        "id",
        "in_flight",
        "killed",
        "outbox",
        "peak_rss",
        "process",
        "reader",
        "ready",
        "retiring",
    )

    def __init__(
        self,
        worker_id: int,
        process: WorkerProcess | _MpProcess,
        fd_out: int,
        fd_in: int,
        closers: tuple[Callable[[], None], ...],
    ) -> None:
        self.id = worker_id
        self.process = process
        self.fd_out = fd_out  # parent writes calls here
        self.fd_in = fd_in  # parent reads results here
        self.closers = closers  # close the two fds
        self.outbox: list[memoryview] = []
        self.reader = FrameReader()
        self.functions: OrderedDict[int, None] = OrderedDict()
        #: key -> fn_id of each call sent and not yet answered: a function
        #: one of them uses must not be forgotten.
        self.in_flight: dict[int, int] = {}
        self.detail = ""  # why it is about to exit, when it said so
        self.retiring = False
        self.ready = False  # it said it started
        self.killed = False  # pel killed it
        self.peak_rss: int | None = None
        #: Why pel killed it, when pel did.
        self.cause = ""


class ProcessesBackend(Backend):
    name: ClassVar[str] = "processes"
    pickles: ClassVar[bool] = True

    def __init__(self, options: BackendOptions) -> None:
        super().__init__(options)
        self._ctx = resolve_context(options.mp_context)
        #: Caps on the native thread pools of workers (see native_threads),
        #: read from the environment as the first worker starts, or as the
        #: executor booted the fork server it hands over (at the same submit).
        self._environment: dict[str, str] | None = None
        self._launcher: Launcher = options.launcher or Launcher()
        if options.launcher is not None:
            self._environment = options.launcher.environment
        self._init_blob = (
            serialize.dumps_function(options.initializer) if options.initializer else None
        )
        self._initargs_blob = serialize.dumps(options.initargs) if options.initializer else None
        self.store = Store.create(options.shm_threshold, options.shm_limit, options.spill_dir)
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._workers: dict[int, _WorkerHandle] = {}
        self._next_id = 0
        self._closed = False
        self._sampled = 0.0
        #: Modules workers are asked to import ahead of a large payload
        #: (``transport.preload``): any thread announces, the coordinator sends
        #: to the workers alive then (each module once per executor; a worker
        #: started later imports what its calls need as it unpickles them).
        self._preload_lock = threading.Lock()
        self._preloading: dict[str, None] = {}
        self._preload_unsent: list[str] = []
        self.store.announce = self._announce

    # -- workers ------------------------------------------------------------------

    def start_worker(self) -> int:
        if self._environment is None:
            # Now, not at construction: a variable set in between is the user's.
            self._environment = environment_now(
                self.options.inner_threads, self.options.max_workers
            )
            self._launcher.environment = self._environment
        config = (
            self._init_blob,
            self._initargs_blob,
            self.options.max_tasks_per_worker,
            self.options.worker_memory_limit,
            self.store.config,
            self._environment,
        )
        process: WorkerProcess | _MpProcess
        if self._ctx is None:
            child_in, fd_out = os.pipe()
            fd_in, child_out = os.pipe()
            try:
                process = self._launcher.launch(child_in, child_out)
            finally:
                os.close(child_in)
                os.close(child_out)
            closers: tuple[Callable[[], None], ...] = (
                functools.partial(os.close, fd_out),
                functools.partial(os.close, fd_in),
            )
        else:
            child_conn_in, parent_out = self._ctx.Pipe(duplex=False)
            parent_in, child_conn_out = self._ctx.Pipe(duplex=False)
            from .worker import mp_main

            mp_process = self._ctx.Process(  # type: ignore[attr-defined]
                target=mp_main,
                args=(child_conn_in, child_conn_out),
                name=f"pel-worker-{self._next_id}",
            )
            mp_process.start()
            child_conn_in.close()
            child_conn_out.close()
            process = _MpProcess(mp_process)
            fd_out, fd_in = parent_out.fileno(), parent_in.fileno()
            closers = (parent_out.close, parent_in.close)
        widened = widen_pipe(fd_out) + widen_pipe(fd_in)
        if widened:
            closers += (functools.partial(release_pipes, widened),)
        handle = _WorkerHandle(self._next_id, process, fd_out, fd_in, closers)
        self._next_id += 1
        os.set_blocking(handle.fd_out, False)
        os.set_blocking(handle.fd_in, False)
        self._workers[handle.id] = handle
        self._selector.register(handle.fd_in, selectors.EVENT_READ, (handle, "results"))
        self._selector.register(process.sentinel, selectors.EVENT_READ, (handle, "sentinel"))
        self._post(handle, config)  # the first frame a worker reads
        return handle.id

    def worker_pids(self) -> list[int]:
        pids = [h.process.pid for h in list(self._workers.values())]
        return [pid for pid in pids if pid is not None]

    # -- sending ------------------------------------------------------------------

    def send(self, worker: int, calls: list[Call]) -> None:
        if self._preload_unsent:
            self._send_preload()  # announced before these calls' payloads were written
        handle = self._workers.get(worker)
        if handle is None:
            return  # died meanwhile; its Exited report is on its way
        functions = []
        known = handle.functions
        in_flight = handle.in_flight
        last = None
        for call in calls:
            fn_id = call.fn_id
            in_flight[call.key] = fn_id
            if fn_id == last:
                continue  # the same function as the call before: seen to
            last = fn_id
            if fn_id in known:
                known.move_to_end(fn_id)
                continue
            functions.append((fn_id, call.fn_blob))
            known[fn_id] = None
        forget = self._evict(handle) if len(known) > FUNCTIONS_PER_WORKER else []
        wire = [call[:WIRE_FIELDS] for call in calls]
        self._post(handle, (RUN, functions, forget, wire))

    @staticmethod
    def _evict(handle: _WorkerHandle) -> list[int]:
        """The oldest functions the worker may drop: none that a call sent to it
        and not yet answered uses (this batch's included), so the cache can run
        over its size for a while rather than fail a call."""
        excess = len(handle.functions) - FUNCTIONS_PER_WORKER
        in_use = set(handle.in_flight.values())
        forget = [fn for fn in handle.functions if fn not in in_use][:excess]
        for fn_id in forget:
            del handle.functions[fn_id]
        return forget

    def _answered(self, handle: _WorkerHandle, keys: list[int]) -> None:
        for key in keys:
            handle.in_flight.pop(key, None)

    def _outcomes(
        self, handle: _WorkerHandle, results: list[tuple[int, bool, Any, float]]
    ) -> list[Outcome]:
        """A DONE batch's results, unpickled; their calls are answered.

        Once per task: a small result (plain pickle bytes) is unpickled right
        here; ``_outcome`` takes the rest (large buffers to adopt, a result
        that fails to unpickle)."""
        outcomes = []
        in_flight = handle.in_flight
        for key, ok, blob, seconds in results:
            outcome = None
            if ok and type(blob) is bytes:
                try:
                    outcome = new_outcome((key, True, pickle.loads(blob), seconds, blob))
                except Exception:
                    pass  # _outcome says why
            if outcome is None:
                outcome = _outcome(self.store, key, ok, blob, seconds)
            outcomes.append(outcome)
            in_flight.pop(key, None)
        return outcomes

    def steal(self, worker: int, count: int) -> None:
        handle = self._workers.get(worker)
        if handle is not None:
            self._post(handle, (STEAL, count))

    def drop(self, worker: int, keys: list[int]) -> None:
        handle = self._workers.get(worker)
        if handle is not None:
            self._post(handle, (DROP, keys))

    def kill_worker(self, worker: int) -> None:
        handle = self._workers.get(worker)
        if handle is not None:
            handle.killed = True
            handle.process.kill()  # its sentinel reports the exit

    def _post(self, handle: _WorkerHandle, message: tuple[Any, ...]) -> None:
        payload = pickle.dumps(message, 5)
        parts = [memoryview(header(len(payload))), memoryview(payload)]
        if not handle.outbox:
            try:
                written = os.writev(handle.fd_out, parts)
            except BlockingIOError:
                written = 0
            except BrokenPipeError:
                return  # the worker is gone; its sentinel will say so
            consume(parts, written)
            if not parts:
                return
            handle.outbox.extend(parts)
            self._watch_writable(handle, True)
        else:
            handle.outbox.extend(parts)

    def _watch_writable(self, handle: _WorkerHandle, on: bool) -> None:
        key = self._selector.get_map().get(handle.fd_out)
        if on and key is None:
            self._selector.register(handle.fd_out, selectors.EVENT_WRITE, (handle, "writable"))
        elif not on and key is not None:
            self._selector.unregister(handle.fd_out)

    def _drain_outbox(self, handle: _WorkerHandle) -> None:
        outbox = handle.outbox
        while outbox:
            batch = outbox[:_WRITE_PIECES]
            try:
                written = os.writev(handle.fd_out, batch)
            except BlockingIOError:
                return
            except BrokenPipeError:
                outbox.clear()
                break
            full = written < sum(map(len, batch))
            consume(outbox, written)
            if full:
                return  # the pipe is full: wait until it is writable again
        self._watch_writable(handle, False)

    def _announce(self, names: tuple[str, ...]) -> None:
        """Any thread: a payload about to be written needs these modules."""
        with self._preload_lock:
            new = [name for name in names if name not in self._preloading]
            if not new:
                return
            self._preloading.update(dict.fromkeys(new))
            self._preload_unsent += new
        self.wakeup()

    def _send_preload(self) -> None:
        with self._preload_lock:
            names, self._preload_unsent = tuple(self._preload_unsent), []
        for handle in self._workers.values():
            self._post(handle, (PRELOAD, names))

    # -- receiving ----------------------------------------------------------------

    def wait(self, timeout: float | None) -> list[Report]:
        if self._preload_unsent:
            self._send_preload()
        reports: list[Report] = []
        in_flight = sum(len(h.in_flight) for h in self._workers.values())
        if in_flight:
            until_sample = max(0.0, self._sampled + SAMPLE_SECONDS - time.monotonic())
            timeout = until_sample if timeout is None else min(timeout, until_sample)
        events = []
        if timeout != 0 and 0 < in_flight <= len(self._workers):
            events = self._spin()
        if not events:
            events = self._selector.select(timeout)
        for key, _ in events:
            if key.data is None:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                continue
            handle, what = key.data
            if handle.id not in self._workers:
                continue  # forgotten earlier in this same batch of events
            if what == "results":
                self._read_results(handle, reports)
            elif what == "writable":
                self._drain_outbox(handle)
            else:
                self._on_exit(handle, reports)
        if in_flight and time.monotonic() - self._sampled >= SAMPLE_SECONDS:
            self._sample_memory()
        return reports

    def _spin(self) -> list[tuple[selectors.SelectorKey, int]]:
        """Poll for up to ``SPIN_SECONDS`` before blocking.

        Only while no more calls are in flight than there are workers: a
        caller waiting on each result before its next submit (W3). A thread blocked in a system
        call is woken by the writer's call, across cores, which on the VMs
        measured costs more than the task itself; a thread that is polling
        is already running. Each poll releases the GIL.
        """
        deadline = time.perf_counter() + SPIN_SECONDS
        events: list[tuple[selectors.SelectorKey, int]] = []
        while not events and time.perf_counter() < deadline:
            events = self._selector.select(0)
        return events

    def _sample_memory(self) -> None:
        self._sampled = time.monotonic()
        limit = self.options.worker_memory_limit
        for handle in self._workers.values():
            pid = handle.process.known_pid
            if not handle.in_flight or pid is None:
                continue
            rss = resident_bytes(pid)
            if rss is None:
                continue
            if handle.peak_rss is None or rss > handle.peak_rss:
                handle.peak_rss = rss
            if limit is not None and rss >= limit * MEMORY_KILL_FACTOR and not handle.cause:
                handle.cause = (
                    f"pel killed it: its memory use ({_mib(rss)}) passed "
                    f"{MEMORY_KILL_FACTOR:g} x worker_memory_limit ({_mib(limit)}) while a task ran"
                )
                handle.process.kill()

    def _read_results(self, handle: _WorkerHandle, reports: list[Report]) -> None:
        while True:
            try:
                frames = handle.reader.read(handle.fd_in)
            except BlockingIOError:
                return
            if frames is None:
                return  # EOF: the sentinel reports the exit
            for message in frames:
                self._decode(handle, pickle.loads(message), reports)

    def _decode(
        self, handle: _WorkerHandle, message: tuple[Any, ...], reports: list[Report]
    ) -> None:
        kind = message[0]
        if kind == DONE:
            reports.append(Completed(handle.id, self._outcomes(handle, message[1])))
        elif kind == RETURNED:
            self._answered(handle, message[1])
            reports.append(GaveBack(handle.id, message[1]))
        elif kind == STARTED:
            reports.append(StartedCall(handle.id, message[1]))
        elif kind in (DROPPED, RETIRING):
            self._answered(handle, message[1])
            reports.append(GaveBack(handle.id, message[1], stolen=False))
            if kind == RETIRING:
                handle.retiring = True
        elif kind == READY:
            handle.ready = True
        elif kind == INIT_FAILED:
            # It exits next; its sentinel will report the exit, with this reason.
            handle.detail = f"its initializer failed:\n{message[1]}"

    def _on_exit(self, handle: _WorkerHandle, reports: list[Report]) -> None:
        # Results written just before the exit are still in the pipe.
        handle.process.join(timeout=5)
        self._read_results(handle, reports)
        if handle.retiring and handle.in_flight:
            # Sent after it decided to retire: it never read them.
            reports.append(GaveBack(handle.id, list(handle.in_flight), stolen=False))
        if handle.process.pid is not None:  # its segments it never reported are lost
            self.store.sweep_creator(handle.process.pid)
        reports.append(
            Exited(
                handle.id,
                handle.process.exitcode,
                handle.process.pid,
                handle.detail or handle.process.failure,
                handle.peak_rss,
                handle.cause,
                # One pel killed did not fail to start.
                handle.ready or handle.killed,
            )
        )
        self._forget_worker(handle)

    def _forget_worker(self, handle: _WorkerHandle) -> None:
        self._workers.pop(handle.id, None)
        for fd in (handle.fd_in, handle.fd_out, handle.process.sentinel):
            try:
                self._selector.unregister(fd)
            except (KeyError, ValueError):
                pass
        for close in handle.closers:
            close()

    def wakeup(self) -> None:
        if self._closed:
            return
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # already signalled, or closed at shutdown

    # -- stopping -----------------------------------------------------------------

    def close(self, *, kill: bool) -> None:
        if self._closed:
            return
        self._closed = True
        handles = list(self._workers.values())
        for handle in handles:
            if kill:
                handle.process.kill()
            else:
                self._post(handle, (STOP,))
        if not kill:
            self._flush_all(handles)
        for handle in handles:
            handle.process.join(timeout=None if not kill else 10)
            if handle.process.exitcode is None:  # pragma: no cover - should not happen
                handle.process.kill()
                handle.process.join()
            self._forget_worker(handle)
            handle.process.close()
        self._launcher.close()
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self.store.close()

    def _flush_all(self, handles: list[_WorkerHandle]) -> None:
        """Finish writing queued messages (STOP included) before waiting for exits."""
        for handle in handles:
            if handle.outbox:
                os.set_blocking(handle.fd_out, True)
                try:
                    while handle.outbox:
                        consume(
                            handle.outbox, os.writev(handle.fd_out, handle.outbox[:_WRITE_PIECES])
                        )
                except BrokenPipeError:
                    pass
                handle.outbox.clear()


def _mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"


def _outcome(store: Store, key: int, ok: bool, blob: Any, seconds: float) -> Outcome:
    try:
        if type(blob) is not bytes:  # large buffers in segments: this process owns them now
            blob = store.adopt_wire(blob)
        value = serialize.loads(blob)
    except Exception as exc:
        from ..._errors import SerializationError

        err = SerializationError(
            f"the task's {'result' if ok else 'exception'} could not be unpickled here: "
            f"{type(exc).__name__}: {exc}"
        )
        err.__cause__ = exc
        return Outcome(key, False, err, seconds)
    return Outcome(key, ok, value, seconds, blob if ok else None)
