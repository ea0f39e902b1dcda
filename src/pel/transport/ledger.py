"""The ledger: bytes of ``/dev/shm`` held by one executor and its workers.

Every process of an executor writes segments, and all of them must see one
total to respect ``shm_limit``; the total lives in a small file under
``/dev/shm`` that they update under ``flock`` (see :class:`Ledger`).
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading

__all__ = ["Ledger"]

#: A record: (pid of the process that wrote segments, bytes of them in /dev/shm).
_RECORD = struct.Struct("<qq")


class Ledger:
    """Bytes of /dev/shm in use by one executor and its workers, shared through a file.

    The file is a table of ``(creator pid, bytes)`` records, one per process
    holding segments it wrote; the total is their sum. Every change rewrites
    one record in one ``pwrite`` under ``flock``, so a process killed at any
    instant leaves each record as it was before or after its change, never a
    total that no record explains. What a dead worker reserved and never
    turned into a segment the owner reported (reserved but not created, half
    written, written but not sent) is set right by :meth:`reset`: its record
    becomes the size of the segments the owner adopted from it.
    """

    def __init__(self, path: str) -> None:
        # Made by whichever process writes a segment first; empty reads as 0.
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        # flock excludes other processes only: threads of one process share the lock.
        # Reentrant: a Segment collected during an update frees itself from
        # inside it (a cycle collected by an allocation here); such nested
        # releases wait in _deferred until the update is written.
        self._lock = threading.RLock()
        self._depth = 0
        self._deferred: list[tuple[int, int, bool]] = []

    def _records(self) -> list[list[int]]:
        raw = os.pread(self.fd, os.fstat(self.fd).st_size, 0)
        whole = len(raw) - len(raw) % _RECORD.size
        return [list(r) for r in _RECORD.iter_unpack(raw[:whole])]

    def _set(self, records: list[list[int]], pid: int, nbytes: int) -> None:
        """Write ``pid``'s record: in place, in a free record (0 bytes), or appended."""
        nbytes = max(0, nbytes)
        index = next((i for i, r in enumerate(records) if r[0] == pid), None)
        if index is not None:
            records[index][1] = nbytes
            os.pwrite(self.fd, _RECORD.pack(pid, nbytes)[8:], index * _RECORD.size + 8)
            return
        if nbytes == 0:
            return
        index = next((i for i, r in enumerate(records) if r[1] == 0), len(records))
        if index == len(records):
            records.append([pid, nbytes])
        else:
            records[index] = [pid, nbytes]
        os.pwrite(self.fd, _RECORD.pack(pid, nbytes), index * _RECORD.size)

    def _apply(self, records: list[list[int]], pid: int, delta: int, reset: bool) -> None:
        held = next((r[1] for r in records if r[0] == pid), 0)
        self._set(records, pid, delta if reset else held + delta)

    def _change(
        self, pid: int, delta: int, limit: int | None, reset: bool = False
    ) -> tuple[bool, int]:
        with self._lock:
            if self._depth:  # a finalizer run inside an update, in this thread
                self._deferred.append((pid, delta, reset))
                return True, 0
            self._depth = 1
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            try:
                records = self._records()
                used = sum(r[1] for r in records)
                ok = limit is None or used + delta <= limit
                if ok:
                    self._apply(records, pid, delta, reset)
                while self._deferred:
                    self._apply(records, *self._deferred.pop(0))
                return ok, sum(r[1] for r in records) if ok else used
            finally:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
                self._depth = 0

    def reserve(self, pid: int, nbytes: int, limit: int) -> tuple[bool, int]:
        """Count ``nbytes`` more for ``pid`` if the total stays within ``limit``."""
        return self._change(pid, nbytes, limit)

    def release(self, pid: int, nbytes: int) -> None:
        self._change(pid, -nbytes, None)

    def reset(self, pid: int, nbytes: int) -> None:
        """Set what ``pid`` holds (the owner does, for a worker that is dead)."""
        self._change(pid, nbytes, None, reset=True)

    def used(self) -> int:
        with self._lock:
            if self._depth:  # inside an update in this thread: the lock is held
                return sum(r[1] for r in self._records())
            fcntl.flock(self.fd, fcntl.LOCK_SH)
            try:
                return sum(r[1] for r in self._records())
            finally:
                fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self.fd)
