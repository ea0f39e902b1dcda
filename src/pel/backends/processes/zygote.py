"""pel's fork server (the *zygote*): workers forked from a lean fresh interpreter.

::

    parent (the executor's process)                zygote (python -c, one per executor)
    Launcher.launch(read_fd, write_fd)             boots: the parent's sys.path, the worker
      │  os.pipe() = (sentinel, status_w)          module, and a script's __main__ (as spawn
      └─ fds over a unix socket ─────────────────▶ and forkserver do), then per request:
                                                   fork ─▶ worker.main(read_fd, write_fd)
      WorkerProcess.pid ◀── pid, on the socket ─── (replies in request order)
      sentinel readable ◀── exit code, on status_w  SIGCHLD: waitpid, write the code, close

Why not multiprocessing's forkserver: its ``Process.start()`` blocks until the
server has booted (a fresh interpreter importing multiprocessing, then the
preloaded modules) and it also starts multiprocessing's resource tracker, a
third interpreter that pel has no use for. Here launching never waits: the
worker's pipes are made in the parent, and the calls written to them wait in
the pipe while the zygote boots, so the workers' start overlaps the parent's
own work (the first ``submit`` returns at once).

Lifetimes: the zygote exits when its socket reaches EOF (the executor closed
it, or the parent died). Each worker asks to be SIGKILLed when the zygote
dies (``PR_SET_PDEATHSIG``), so a killed parent leaves no process behind. An
exit code is what ``multiprocessing`` reports: negative for a signal.

This module is imported by the zygote before anything else of pel's, so its
zygote side uses the standard library's C modules (``_signal``, ``_socket``):
``signal`` and ``socket`` would add ``enum`` and ``selectors``, ~4 ms before
the first worker can start. The parent's side uses ``_socket`` too: its
program waits for its imports as well.
"""

from __future__ import annotations

# The C module behind signal (see the module docstring); no stubs exist for it.
import _signal as signal  # type: ignore[import-not-found]
import _socket
import array
import os
import select
import struct
import sys
import threading
from collections import deque

__all__ = ["Launcher", "WorkerProcess", "serve"]

_INT = struct.Struct("<q")
#: The zygote's end of the control socket, in the zygote.
_SOCKET_FD = 3
_importing_main = False


class NestedStartError(RuntimeError):
    """Raised in a zygote that imports the user's script and meets an executor."""


def supported() -> bool:
    """pel's fork server runs on Linux; elsewhere workers start with spawn."""
    return sys.platform.startswith("linux")


def _check_not_importing_main() -> None:
    if _importing_main:
        raise NestedStartError(
            "a pel executor was started while a worker process imported your main "
            "module; start executors under `if __name__ == '__main__':`, so that "
            "worker processes can import the script without running it"
        )


class WorkerProcess:
    """The parent's handle on a worker forked by the zygote; the subset of
    ``multiprocessing.Process`` that the pool uses."""

    __slots__ = ("_launcher", "_pid", "ended", "exitcode", "sentinel")

    def __init__(self, launcher: Launcher, sentinel: int) -> None:
        self._launcher = launcher
        self._pid: int | None = None
        #: Readable once the worker has ended (its exit code, or EOF if the
        #: zygote died first).
        self.sentinel = sentinel
        self.exitcode: int | None = None
        self.ended = False

    @property
    def pid(self) -> int | None:
        """The worker's pid; waits for the zygote to have forked it (None if
        the zygote died before it could)."""
        if self._pid is None:
            self._launcher.wait_pid(self)
        return self._pid

    @property
    def known_pid(self) -> int | None:
        """The pid if the zygote has said it, without waiting."""
        if self._pid is None:
            self._launcher.read_pids(block=False)
        return self._pid

    def join(self, timeout: float | None = None) -> None:
        if self.ended:
            return
        readable, _, _ = select.select([self.sentinel], [], [], timeout)
        if not readable:
            return
        data = os.read(self.sentinel, _INT.size)
        self.ended = True
        if len(data) == _INT.size:
            (self.exitcode,) = _INT.unpack(data)

    @property
    def failure(self) -> str:
        """Why no worker process could be started here at all, if that is so
        (every replacement would fail the same way)."""
        return self._launcher.failure if self._pid is None else ""

    def kill(self) -> None:
        pid = self.pid
        if pid is None or self.ended:
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # already gone; the zygote reports it

    def close(self) -> None:
        try:
            os.close(self.sentinel)
        except OSError:
            pass


class Launcher:
    """Starts workers through one zygote, which it boots on first use.

    Thread-safe: the first workers are launched from the caller's thread,
    replacements from the runtime thread.
    """

    def __init__(self) -> None:
        #: Added to the zygote's environment as it boots, so to every worker's.
        self.environment: dict[str, str] = {}
        self._lock = threading.Lock()
        self._socket: _socket.socket | None = None
        self._zygote_pid: int | None = None
        #: Launched workers whose pid the zygote has not sent yet, in order.
        self._unanswered: deque[WorkerProcess] = deque()
        self._forked = False
        #: Set when a zygote died before forking anything (it could not import
        #: the worker or the script): a new one would fail the same way.
        self.failure = ""

    def boot(self) -> None:
        """Start the zygote now if it is not running (an executor does so as
        it starts, so that the zygote boots while the parent imports the rest
        of pel); ``environment`` must be set before."""
        _check_not_importing_main()
        with self._lock:
            if self._socket is None and not self.failure:
                self._boot()

    def launch(self, read_fd: int, write_fd: int) -> WorkerProcess:
        """Fork a worker running ``worker.main(read_fd, write_fd)``; at once."""
        _check_not_importing_main()
        sentinel, status_w = os.pipe()
        process = WorkerProcess(self, sentinel)
        try:
            with self._lock:
                if self._socket is None and not self.failure:
                    self._boot()
                try:
                    if self._socket is None:
                        raise BrokenPipeError
                    _send_fds(self._socket, read_fd, write_fd, status_w)
                except OSError:
                    # This worker never starts: its sentinel reads EOF at once.
                    if self._socket is not None:
                        self._zygote_died()
                    process.ended = True
                else:
                    self._unanswered.append(process)
        finally:
            os.close(status_w)  # the zygote has its own copy
        return process

    def _boot(self) -> None:
        ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        code = (
            "import sys; sys.path[:] = " + repr(sys.path) + "; "
            "from pel.backends.processes.zygote import serve; serve()"
        )
        # SIGINT blocked until the zygote ignores it: Ctrl-C in a terminal
        # reaches the whole process group, and it is the parent's to act on.
        self._zygote_pid = os.posix_spawn(
            sys.executable,
            [sys.executable, "-c", code],
            {**os.environ, **self.environment},
            file_actions=[(os.POSIX_SPAWN_DUP2, theirs.fileno(), _SOCKET_FD)],
            setsigmask={signal.SIGINT},
        )
        theirs.close()
        try:
            ours.sendall(_main_module_spec())
        except BaseException:
            ours.close()
            self._stop_zygote()
            raise
        self._socket = ours

    def read_pids(self, block: bool) -> None:
        """Take the pids the zygote has sent (waiting for one, when ``block``)."""
        with self._lock:
            sock = self._socket
            while sock is not None and self._unanswered:
                if not block and not select.select([sock], [], [], 0)[0]:
                    return
                try:
                    data = sock.recv(_INT.size)
                except OSError:
                    data = b""
                if len(data) != _INT.size:
                    self._zygote_died()
                    return
                self._unanswered.popleft()._pid = _INT.unpack(data)[0]
                self._forked = True
                block = False

    def wait_pid(self, process: WorkerProcess) -> None:
        while process._pid is None and process in self._unanswered:
            self.read_pids(block=True)

    def _zygote_died(self) -> None:
        """No pid will come from this zygote (called with the lock held). One
        that had forked workers is replaced at the next launch; one that had
        not failed to boot, and so would the next."""
        self._unanswered.clear()
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        code = self._stop_zygote()
        if not self._forked:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            self.failure = (
                f"pel's worker-starting process {how} before it could start a worker; "
                f"its error is on stderr (could it import pel and your main module?)"
            )

    def _stop_zygote(self) -> int:
        """Kill and reap the zygote; its exit code (0 if there was none)."""
        pid, self._zygote_pid = self._zygote_pid, None
        if pid is None:
            return 0
        try:
            os.kill(pid, signal.SIGKILL)  # a no-op for one that already exited
        except ProcessLookupError:  # pragma: no cover - reaped elsewhere
            pass
        try:
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        except ChildProcessError:  # pragma: no cover - reaped elsewhere
            return 0

    def close(self) -> None:
        """Stop the zygote (its workers must have been stopped first)."""
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None
            self._stop_zygote()


def _main_module_spec() -> bytes:
    """How the zygote should import the parent's ``__main__`` (as spawn does):
    ``b"name:<module>"``, ``b"path:<file>"``, or ``b"none:"`` (see
    :func:`pel.transport.serialize.main_module`, which pickles by the same rule)."""
    # Imported after the spawn (at an executor's first start it is not yet):
    # the zygote boots meanwhile.
    from ...transport.serialize import main_module

    found = main_module()
    if found is None:
        return b"none:"
    kind, value = found
    return kind.encode() + b":" + os.fsencode(value)


# -- the zygote's side ---------------------------------------------------------------


def serve() -> None:
    """The zygote's main loop (see the module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    # Workers read no terminal input (as multiprocessing's children): the
    # zygote's stdin, which each fork inherits, is /dev/null.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sock = _socket.socket(fileno=_SOCKET_FD)
    _import_main(sock.recv(1 << 16))
    import ctypes  # noqa: F401  (each worker's prctl needs it)

    from . import worker  # noqa: F401  (preloaded: every fork inherits it)

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    children: dict[int, int] = {}  # pid -> status_w
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd == wake_r:
                os.read(wake_r, 4096)
                _reap(children)
                continue
            try:
                fds = _receive_fds(sock)
            except OSError:
                fds = []
            if len(fds) != 3:
                os._exit(0)  # EOF: the executor is closing, or its process died
            pid = os.fork()
            if pid == 0:
                _run_worker(fds, [sock.fileno(), wake_r, wake_w, *children.values()])
            os.close(fds[0])
            os.close(fds[1])
            children[pid] = fds[2]
            sock.send(_INT.pack(pid))


def _send_fds(sock: _socket.socket, *fds: int) -> None:
    """One launch request: these fds (``socket.send_fds`` without ``socket``)."""
    rights = array.array("i", fds).tobytes()
    sock.sendmsg([b"L"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])


def _receive_fds(sock: _socket.socket) -> list[int]:
    """The fds of one launch request (``socket.recv_fds`` without ``socket``)."""
    _, ancillary, _, _ = sock.recvmsg(16, _socket.CMSG_LEN(3 * array.array("i").itemsize))
    fds = array.array("i")
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    return list(fds)


def _import_main(spec: bytes) -> None:
    """Import the parent's main module as ``__mp_main__``, as spawn does, so
    that functions and classes defined in a script can be unpickled."""
    global _importing_main
    kind, _, value = spec.partition(b":")
    if kind not in (b"name", b"path"):
        return
    import runpy
    import types

    _importing_main = True
    try:
        if kind == b"name":
            content = runpy.run_module(value.decode(), run_name="__mp_main__", alter_sys=True)
        else:
            content = runpy.run_path(os.fsdecode(value), run_name="__mp_main__")
    finally:
        _importing_main = False
    module = types.ModuleType("__mp_main__")
    module.__dict__.update(content)
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module


def _reap(children: dict[int, int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        status_w = children.pop(pid, None)
        if status_w is not None:
            try:
                os.write(status_w, _INT.pack(os.waitstatus_to_exitcode(status)))
            finally:
                os.close(status_w)


def _run_worker(fds: list[int], inherited: list[int]) -> None:
    """In the forked child: drop the zygote's fds, run the worker, exit."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in [*inherited, fds[2]]:
            os.close(fd)
        from . import worker

        worker.main(fds[0], fds[1])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
