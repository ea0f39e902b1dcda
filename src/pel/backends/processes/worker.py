"""The worker process: read calls, run them one at a time, send results back.

One thread runs the calls. Calls arrive in batches and wait in a local deque;
between calls the worker reads whatever else has arrived (so a STEAL or a
DROP is answered as soon as the running call ends). Results are batched:
before starting a call, unsent results go out unless that call's function
has so far always been quick (its moving average under ``QUICK_SECONDS``) and
the oldest unsent result is younger than ``FLUSH_SECONDS``. Tiny tasks share
a write. Results held across a call are sent by a second thread if that call
turns out long, so a finished result is never held hostage by the next task;
it can still die with it if that call kills the worker within
``FLUSH_SECONDS``, which is why the parent charges a crash to a task only
when it was sent ISOLATE (results flushed before and right after it). A
TIMED call flushes likewise, so its deadline is only ever that call's.

A worker can retire itself: after ``max_tasks_per_worker`` calls, or when its
resident memory has passed ``worker_memory_limit`` at the end of a call, it
sends its results, hands back the calls it has not started, and exits.

SIGINT is ignored: Ctrl-C in a terminal reaches the whole process group, and
it is the parent's to act on. On Linux the worker also asks to be killed when
its parent dies (the fork server, which exits when the executor's process
does), so a killed parent leaves no worker behind.
"""

from __future__ import annotations

# The C pickler itself: the pickle module would also import re (~3 ms of a
# worker's start-up). It is what pickle.dumps and pickle.loads are.
import _pickle as pickle

# The C module behind signal, which would import enum: ~2 ms of a worker's
# start-up. No stubs exist for it.
import _signal as signal  # type: ignore[import-not-found]
import os
import select
import sys
import threading
import time
from collections import deque
from collections.abc import Callable

from ..._arguments import put_in_place, set_dep_values
from ...transport import serialize
from ...transport.shm import Store
from ..running import ISOLATE, TIMED, remote_error, run_chunk
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
    read_frame,
    resident_bytes,
    write_frame,
)

TYPE_CHECKING = False  # not typing's: its import would cost every worker's start-up
if TYPE_CHECKING:
    from typing import Any

FLUSH_SECONDS = 0.002
QUICK_SECONDS = 0.0005


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):  # pragma: no cover - no prctl here
        pass


def _release_forkserver() -> None:
    """Drop the forkserver's "alive" pipe that every forkserver child inherits.

    CPython hands each child the write end so the child could start more
    processes through the same server. While any worker holds it the server
    never sees its parent die, so it never exits, and the ``PDEATHSIG`` that
    points at it never fires. Nested pools in a task start their own server.
    """
    try:
        from multiprocessing import forkserver
    except ImportError:  # pragma: no cover - no forkserver on this platform
        return
    server: Any = forkserver._forkserver
    fd = server._forkserver_alive_fd
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
        server._forkserver_alive_fd = None
        server._forkserver_address = None
        server._forkserver_pid = None


def _encode_error(exc: BaseException) -> bytes:
    remote_error(exc)
    try:
        return serialize.dumps_with_tracebacks(exc)
    except Exception as pickling_error:
        from ..._errors import SerializationError

        substitute = SerializationError(
            f"the task raised {type(exc).__name__}: {exc}, which cannot be pickled "
            f"({type(pickling_error).__name__}: {pickling_error})"
        )
        substitute.__cause__ = exc.__cause__
        return serialize.dumps_with_tracebacks(substitute)


def _unloadable(error: Exception) -> Callable[..., Any]:
    """Stands for a function that could not be unpickled here."""

    def fail(*args: Any, **kwargs: Any) -> Any:
        from ..._errors import SerializationError

        raise SerializationError(
            f"the task's function could not be unpickled in the worker process: "
            f"{type(error).__name__}: {error}. Can the worker import its module (is it "
            f"on sys.path when the executor starts its workers)?"
        ) from error

    return fail


def _unpickle_call(payload: Any, deps: list[Any]) -> Any:
    """The call's arguments, with its dependencies' values put in place.

    ``payload``: the pickle of ``(args, kwargs)`` with ``Dep`` placeholders,
    or of ``(args, kwargs, places)`` when the futures were plain positional
    arguments (see ``_arguments.place``; a map chunk, also of three, has no
    dependencies)."""
    try:
        values = [serialize.loads(d) for d in deps] if deps else ()
        set_dep_values(values)
        try:
            call = serialize.loads(payload)
        finally:
            set_dep_values(())
        if deps and len(call) == 3:
            args, kwargs, places = call
            return put_in_place(args, places, values), kwargs
        return call
    except Exception as exc:
        from ..._errors import SerializationError

        raise SerializationError(
            f"the task's arguments could not be unpickled in the worker process: "
            f"{type(exc).__name__}: {exc}. Is every class and function they use importable "
            f"there (not defined in an interactive session)?"
        ) from exc


class _Worker:
    def __init__(
        self,
        read_fd: int,
        write_fd: int,
        max_tasks: int | None = None,
        memory_limit: int | None = None,
        store: Store | None = None,
    ) -> None:
        self.store = store  # large results go to shared memory
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.max_tasks = max_tasks
        self.memory_limit = memory_limit
        self.tasks_run = 0
        self.reader = FrameReader()
        self.poller = select.poll()
        self.poller.register(read_fd, select.POLLIN)
        self.queue: deque[tuple[int, int, Any, list[Any], bool, int]] = deque()
        self.functions: dict[int, Callable[..., Any]] = {}
        #: Moving average of each function's call time, to predict the next one.
        self.expected: dict[int, float] = {}
        self.unsent: list[tuple[int, bool, Any, float]] = []
        self.first_unsent = 0.0
        #: Guards ``unsent`` and writes to the parent: the flusher thread
        #: sends results held across a call that turned out long.
        self.lock = threading.Lock()
        self.holding = threading.Event()
        self.flusher: threading.Thread | None = None
        self.stopping = False
        self.parent_gone = False
        self.recycles = max_tasks is not None or memory_limit is not None
        #: The last call's arguments and result, kept until its result is sent.
        self.held: Any = None
        #: Modules a PRELOAD named, imported once the messages at hand are read.
        self.to_import: tuple[str, ...] = ()

    def read(self, block: bool) -> None:
        """Read what has arrived (waiting for something when ``block``)."""
        while block or self.poller.poll(0):
            frames = self.reader.read(self.read_fd)
            if frames is None:
                self.parent_gone = True
                return
            for message in frames:
                self.handle(pickle.loads(message))
            block = self.reader.pending() > 0  # finish a frame that is half here
        if self.to_import:
            self._import_ahead()

    def _import_ahead(self) -> None:
        """Import the modules a large payload being written will need; only
        if idle once all that arrived is read (a worker with calls to run
        imports what they need as it unpickles them), and after sending the
        results already done, so an import never holds one back."""
        names, self.to_import = self.to_import, ()
        if not self.queue:
            from ...transport.preload import import_quietly

            self.flush()
            import_quietly(names)

    def handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == RUN:
            _, functions, forget, calls = message
            for fn_id, blob in functions:
                try:
                    self.functions[fn_id] = pickle.loads(blob)
                except Exception as exc:
                    # Not this worker's crash: every call of it fails, saying why.
                    self.functions[fn_id] = _unloadable(exc)
            for fn_id in forget:
                self.functions.pop(fn_id, None)
                self.expected.pop(fn_id, None)
            self.queue.extend(calls)
        elif kind == STEAL:
            count = min(message[1], len(self.queue))
            keys = [self.queue.pop()[0] for _ in range(count)]
            self.send((RETURNED, keys))
        elif kind == DROP:
            wanted = set(message[1])
            dropped = [call[0] for call in self.queue if call[0] in wanted]
            if dropped:
                self.queue = deque(call for call in self.queue if call[0] not in wanted)
            self.send((DROPPED, dropped))
        elif kind == PRELOAD:
            self.to_import += message[1]  # done at the end of read(), if idle
        elif kind == STOP:
            self.stopping = True

    def send(self, message: tuple[Any, ...]) -> None:
        """Send a message now, after the results waiting to go (order kept)."""
        with self.lock:
            self._flush_locked()
            write_frame(self.write_fd, pickle.dumps(message, 5))

    def run_one(self) -> None:
        key, fn_id, payload, deps, chunk, flags = self.queue.popleft()
        if flags & ISOLATE:
            self.flush()
        if flags & TIMED:
            self.send((STARTED, key))
        start = time.perf_counter()
        call_args: Any = None
        try:
            fn = self.functions[fn_id]
            call_args = _unpickle_call(payload, deps)
            if chunk:
                value: Any = run_chunk(fn, call_args)
            else:
                args, kwargs = call_args
                value = fn(*args, **kwargs)
            ok = True
        except SystemExit:
            # The task asked this process to exit: it does, and the parent
            # reports the exit code. Results already computed go first.
            self.flush()
            raise
        except BaseException as exc:
            value, ok = exc, False
        seconds = time.perf_counter() - start
        previous = self.expected.get(fn_id)
        self.expected[fn_id] = seconds if previous is None else 0.8 * previous + 0.2 * seconds
        if ok:
            try:
                blob = (
                    serialize.dumps_with_tracebacks(value)
                    if chunk and value[1] is not None
                    else serialize.dumps_oob(value, self.store)
                )
            except Exception as exc:
                # Imported here: pel's errors bring concurrent.futures and
                # logging, which a worker's start-up need not wait for.
                from ..._errors import SerializationError, SharedMemoryError

                if isinstance(exc, SharedMemoryError):
                    blob, ok = _encode_error(exc), False
                else:
                    err = SerializationError(
                        f"the result of the task, a {type(value).__name__}, cannot be pickled "
                        f"to send it back: {type(exc).__name__}: {exc}"
                    )
                    blob, ok = _encode_error(err), False
        else:
            blob = _encode_error(value)
        with self.lock:
            if not self.unsent:
                self.first_unsent = time.perf_counter()
            self.unsent.append((key, ok, blob, seconds))
            # Dropped once the result is sent: unmapping a large argument
            # costs ~90 ms a GiB, which must not delay the result.
            self.held = (call_args, value)
        if flags & (ISOLATE | TIMED):
            self.flush()

    def should_retire(self) -> bool:
        """Past ``max_tasks_per_worker`` calls, or ``worker_memory_limit`` bytes."""
        self.tasks_run += 1
        if self.max_tasks is not None and self.tasks_run >= self.max_tasks:
            return True
        if self.memory_limit is not None:
            rss = resident_bytes()
            return rss is not None and rss >= self.memory_limit
        return False

    def retire(self) -> None:
        keys = [call[0] for call in self.queue]
        self.queue.clear()
        self.send((RETIRING, keys))

    def flush(self) -> None:
        if self.unsent:
            with self.lock:
                self._flush_locked()

    def _flush_locked(self) -> None:
        if self.unsent:
            batch, self.unsent = self.unsent, []
            write_frame(self.write_fd, pickle.dumps((DONE, batch), 5))
        self.held = None

    def _hold(self) -> None:
        """Results wait across the next call: make sure they leave if it is long."""
        if self.flusher is None:
            self.flusher = threading.Thread(target=self._send_held, name="pel-flusher", daemon=True)
            self.flusher.start()
        self.holding.set()

    def _send_held(self) -> None:
        while True:
            self.holding.wait()
            time.sleep(FLUSH_SECONDS)
            with self.lock:
                if self.unsent and time.perf_counter() - self.first_unsent >= FLUSH_SECONDS:
                    self._flush_locked()
                if not self.unsent:
                    self.holding.clear()

    def loop(self) -> None:
        while not self.parent_gone:
            if not self.queue:
                self.flush()
                if self.stopping:
                    return
                self.read(block=True)
                continue
            if self.unsent:
                if self._may_hold():
                    self._hold()
                else:
                    self.flush()
            self.run_one()
            if self.recycles and self.should_retire():
                self.retire()
                return
            self.read(block=False)

    def _may_hold(self) -> bool:
        """May unsent results wait until after the next call? Not behind a map
        chunk: its length follows its size, which changes from chunk to chunk
        (after tiny first chunks, a chunk a hundred times longer looked quick
        and held the results before it back)."""
        _key, fn_id, _payload, _deps, chunk, _flags = self.queue[0]
        expected = self.expected.get(fn_id)
        return (
            not chunk
            and expected is not None
            and expected < QUICK_SECONDS
            and time.perf_counter() - self.first_unsent < FLUSH_SECONDS
        )


def mp_main(read_conn: Any, write_conn: Any) -> None:
    """Entry point under a ``multiprocessing`` context (the Process target)."""
    _release_forkserver()
    main(read_conn.fileno(), write_conn.fileno())


def main(read_fd: int, write_fd: int) -> None:
    """Entry point of a worker process: the first frame is its configuration,
    ``(initializer, initargs, max_tasks, memory_limit, store_config,
    environment)``; ``environment`` caps native thread pools (a worker started
    by pel's fork server has it already)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    try:
        config = pickle.loads(read_frame(read_fd))
    except EOFError:
        os._exit(0)  # the executor closed before this worker got going
    initializer, initargs, max_tasks, memory_limit, store_config, environment = config
    os.environ.update(environment)
    if initializer is not None:
        try:
            init = pickle.loads(initializer)
            init(*pickle.loads(initargs or pickle.dumps(())))
        except BaseException as exc:
            import traceback  # here: its imports would slow every worker's start

            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            write_frame(write_fd, pickle.dumps((INIT_FAILED, text), 5))
            os._exit(3)
    write_frame(write_fd, pickle.dumps((READY,), 5))
    store = Store(store_config, owner=False) if store_config is not None else None
    worker = _Worker(read_fd, write_fd, max_tasks, memory_limit, store)
    try:
        worker.loop()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
