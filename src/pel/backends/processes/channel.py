"""Length-prefixed frames over a pipe, the messages both ends exchange, and
the little else both ends share (and the pipes' capacity, which the parent sets).

A frame is an 8-byte little-endian length and that many bytes of pickle.
Parent to worker: first the worker's configuration, untagged: ``(initializer,
initargs, max_tasks, memory_limit, store_config, environment)``; then ``(RUN, functions,
forget, calls)``, ``(STEAL, count)``,
``(DROP, keys)``, ``(PRELOAD, modules)`` (import these: a large payload that
needs them is being written), ``(STOP,)``. Worker to parent: ``(DONE, results)``,
``(RETURNED, keys)`` (answering STEAL), ``(DROPPED, keys)``, ``(STARTED, key)``
(a call flagged TIMED began), ``(RETIRING, keys)`` (it leaves, handing these
back), ``(READY,)`` (started: its initializer ran), ``(INIT_FAILED, text)``.
"""

from __future__ import annotations

import os
import struct
import threading

RUN, STEAL, STOP, DROP, PRELOAD = 1, 2, 3, 4, 5
DONE, RETURNED, INIT_FAILED, DROPPED, STARTED, RETIRING, READY = 11, 12, 13, 14, 15, 16, 17

_HEADER = struct.Struct("<Q")
HEADER_SIZE = _HEADER.size

#: The capacity asked for each pipe between the parent and a worker (Linux;
#: the default is 64 KiB). A map chunk's items or results, a few hundred KiB,
#: then go in one write and one read instead of 64 KiB pieces, each waiting
#: for the other side to make room: W2 went ~10% faster (docs/benchmarks.md).
PIPE_BYTES = 1 << 18

#: The share of the user's soft limit on pipe memory that this process's
#: widened pipes may take. Past that limit the kernel gives every new pipe of
#: the user (in any program) a page or two: widening must never get there.
PIPE_SHARE = 4

_widened = 0
_widen_lock = threading.Lock()
_budget: int | None = None


def widen_pipe(fd: int) -> bool:
    """Ask for a ``PIPE_BYTES`` pipe, within this process's share of pipe
    memory; True if it was widened (call :func:`release_pipes` once it is
    closed). Where that is refused, the default size stands."""
    global _widened
    with _widen_lock:
        if (_widened + 1) * PIPE_BYTES > _pipe_budget():
            return False
        try:
            import fcntl

            if fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ) >= PIPE_BYTES:
                return False
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        except (ImportError, AttributeError, OSError):
            return False  # not Linux, or past the user's share of pipe memory (EPERM)
        _widened += 1
        return True


def release_pipes(count: int) -> None:
    """``count`` pipes that :func:`widen_pipe` widened were closed."""
    global _widened
    with _widen_lock:
        _widened -= count


def _pipe_budget() -> int:
    """Bytes of widened pipes this process may hold: ``1 / PIPE_SHARE`` of
    the user's soft limit (``/proc/sys/fs/pipe-user-pages-soft``; 0: none)."""
    global _budget
    if _budget is None:
        try:
            with open("/proc/sys/fs/pipe-user-pages-soft") as f:
                pages = int(f.read())
        except (OSError, ValueError):
            pages = 16384  # Linux's default
        _budget = (pages or 1 << 30) * os.sysconf("SC_PAGE_SIZE") // PIPE_SHARE
    return _budget


def frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload)) + payload


def read_frame(fd: int) -> bytes:
    """Read one whole frame from a blocking fd, and nothing past it."""

    def exactly(size: int) -> bytes:
        data = b""
        while len(data) < size:
            more = os.read(fd, size - len(data))
            if not more:
                raise EOFError("the other end closed the pipe")
            data += more
        return data

    (size,) = _HEADER.unpack(exactly(HEADER_SIZE))
    return exactly(size)


class FrameReader:
    """Turns a byte stream, fed in any pieces, back into frames."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buffer
        buf += data
        frames = []
        start = 0
        end = len(buf)
        while end - start >= HEADER_SIZE:
            (size,) = _HEADER.unpack_from(buf, start)
            if end - start - HEADER_SIZE < size:
                break
            body = start + HEADER_SIZE
            frames.append(bytes(buf[body : body + size]))
            start = body + size
        if start:
            del buf[:start]
        return frames

    def pending(self) -> int:
        return len(self._buffer)


def resident_bytes(pid: int | str = "self") -> int | None:
    """Resident memory of a process now (Linux), else None."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
