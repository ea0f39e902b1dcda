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


def header(size: int) -> bytes:
    """A frame's header: the size of the payload after it. The two are
    written with one ``writev``, not joined: joining copies the payload."""
    return _HEADER.pack(size)


def frame(payload: bytes) -> bytes:
    """Header and payload joined (for tests, and what writes them by hand)."""
    return _HEADER.pack(len(payload)) + payload


def write_frame(fd: int, payload: bytes) -> None:
    """Write one frame to a blocking fd, all of it."""
    views = [memoryview(header(len(payload))), memoryview(payload)]
    while views:
        consume(views, os.writev(fd, views))


def consume(views: list[memoryview], written: int) -> None:
    """Drop the first ``written`` bytes from a list of pieces to write (and
    any empty piece), in place."""
    while views and written >= len(views[0]):
        written -= len(views.pop(0))
    if written:
        views[0] = views[0][written:]


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


#: The bytes a :class:`FrameReader` reads into at a time. A frame that does
#: not fit in what is left of it moves to its front; one larger than all of
#: it gets a buffer of its own.
READ_BUFFER = 1 << 16


class FrameReader:
    """Turns a byte stream back into frames, reading into buffers of its own.

    Small frames are read into one reused buffer (no allocation per read)
    and copied out once; a large one is read into a buffer its own size,
    which becomes the frame without a copy. (Reading into a new ``bytes``
    each time and joining the pieces made four copies of every result: of a
    few hundred KiB each, in fresh memory, their page faults cost W2 more
    than the copying itself.)
    """

    __slots__ = ("_buffer", "_end", "_filled", "_large", "_start")

    def __init__(self) -> None:
        self._buffer = bytearray(READ_BUFFER)
        self._start = 0  # where the unread data in the buffer begins
        self._end = 0  # and ends
        self._large: bytearray | None = None  # a large frame's body being read
        self._filled = 0  # bytes of it read so far

    def read(self, fd: int) -> list[bytearray] | None:
        """Read from ``fd`` once (raising as ``os.read`` does on a
        non-blocking fd with nothing to read); the frames now whole, or None
        at the end of the stream."""
        large = self._large
        if large is not None:
            with memoryview(large) as view:
                count = os.readv(fd, [view[self._filled :]])
            if not count:
                return None
            self._filled += count
            if self._filled < len(large):
                return []
            self._large = None
            return [large]
        buffer = self._buffer
        if self._start and len(buffer) - self._start < self._wanted():
            self._compact()  # the frame begun will not fit where it is
        with memoryview(buffer) as view:
            count = os.readv(fd, [view[self._end :]])
        if not count:
            return None
        self._end += count
        return self._frames()

    def _frames(self) -> list[bytearray]:
        buffer = self._buffer
        start, end = self._start, self._end
        frames = []
        while end - start >= HEADER_SIZE:
            (size,) = _HEADER.unpack_from(buffer, start)
            body = start + HEADER_SIZE
            if end - body >= size:
                frames.append(buffer[body : body + size])
                start = body + size
                continue
            if HEADER_SIZE + size > len(buffer):
                # Larger than the buffer: it gets one of its own, and what
                # of it is here moves there.
                large = self._large = bytearray(size)
                large[: end - body] = buffer[body:end]
                self._filled = end - body
                start = end
            break
        if start == end:
            start = end = 0
        self._start, self._end = start, end
        return frames

    def _wanted(self) -> int:
        """The bytes of the frame begun in the buffer (its header, if not all here)."""
        if self._end - self._start < HEADER_SIZE:
            return HEADER_SIZE
        size: int = _HEADER.unpack_from(self._buffer, self._start)[0]
        return HEADER_SIZE + size

    def _compact(self) -> None:
        """Move the frame begun to the front of the buffer, to make room for the rest."""
        rest = self._end - self._start
        self._buffer[:rest] = self._buffer[self._start : self._end]
        self._start, self._end = 0, rest

    def pending(self) -> int:
        """Bytes of a frame begun and not yet whole (its header included)."""
        if self._large is not None:
            return HEADER_SIZE + self._filled
        return self._end - self._start


def resident_bytes(pid: int | str = "self") -> int | None:
    """Resident memory of a process now (Linux), else None."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
