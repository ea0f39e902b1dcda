"""The object store: large buffers in shared-memory files, mapped zero-copy.

::

    parent (the executor's process)                     worker process
    submit(f, big) ── pickle 5 ──┬─ small buffers: inside the pickle, through the pipe
                                 └─ buffer >= threshold: Store.write (once per object in use)
                                      └▶ /dev/shm/pel-<owner>-<store>-<creator>-<n>
                                         (or the spill directory)
                                 only its name goes through the pipe ─▶ mapped read-only
    fut.result() ◀─ mapped read-only ◀─ name ◀─ result buffer >= threshold: Store.write
    dependent task ◀──────────── the same name (the bytes never pass the parent)

A **segment** is a plain file holding one buffer, written once with ``write()``
and never changed: readers map it ``ACCESS_READ`` (:mod:`pel.transport.mapping`),
so an array built on it is read-only. Writing with ``write()`` (not into a
mapping) means a full tmpfs is an ``ENOSPC`` error in the writer, never a
``SIGBUS``: a reader only maps a file that is complete. Files, not
``multiprocessing.shared_memory``: its resource tracker warns about and
unlinks segments behind pel's back.

Names: ``pel-<owner pid>-<store token>-<creator pid>-<counter>``. The owner is
the process of the executor; it alone unlinks. A worker's segments carry the
worker's pid, so after a worker dies its parent unlinks those it never heard of
(:meth:`Store.sweep_creator`); a later pel program unlinks those of an owner that
is dead (:mod:`pel.transport.sweep`), which is what a killed parent leaves.

**Lifetimes** follow Python references in the owner. A :class:`Segment` unlinks
its file when it is garbage-collected. It is referenced by every pending task's
pickled payload that uses it, by the kept result of a finished task while its
dependents still need it, by :class:`~pel.ObjectRef` objects, and by every
mapping of it in the owner (so by any array the owner unpickled from it: a
result stays named while the caller holds it, and passing it on costs a name,
not a copy). Unlinking never invalidates a mapping; the memory is returned when
the last mapping goes.

**The bound**: the bytes of linked segments in ``/dev/shm`` of one executor and
its workers are counted in a ledger (8 bytes in a file, updated under
``flock``), so workers writing results see the same total as the parent. A
write that would pass the limit, or that meets a full ``/dev/shm``, goes to the
spill directory (a temp directory by default) or, without one, fails with
:class:`~pel.SharedMemoryError` naming the sizes.
"""

from __future__ import annotations

import atexit
import errno
import functools
import itertools
import os
import sys
import threading
import weakref

from .ledger import Ledger

# Neither typing nor pel's errors at the top (they bring concurrent.futures
# and logging): workers import this module as they start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "DEFAULT_LIMIT_FRACTION",
    "DEFAULT_THRESHOLD",
    "Segment",
    "Store",
    "StoreConfig",
    "default_spill_dir",
]

#: Buffers at least this big go to shared memory (joblib's memmapping threshold).
DEFAULT_THRESHOLD = 1 << 20
#: Default bound: this fraction of the size of /dev/shm.
DEFAULT_LIMIT_FRACTION = 0.5
SHM_DIR = "/dev/shm"
PREFIX = "pel-"
#: write() errors that mean /dev/shm is full: spill instead.
_FULL = (errno.ENOSPC, errno.ENOMEM, errno.EFBIG)
#: One write() moves at most this much (Linux caps a write at ~2 GiB).
_WRITE_CHUNK = 1 << 30


def default_spill_dir() -> str:
    uid = os.getuid() if hasattr(os, "getuid") else 0
    import tempfile  # here: workers import this module, and rarely spill

    return os.path.join(tempfile.gettempdir(), f"pel-spill-{uid}")


def shm_dir() -> str | None:
    """``/dev/shm`` where it exists (Linux); elsewhere every segment is a spill file."""
    return SHM_DIR if os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK) else None


def default_limit() -> int:
    directory = shm_dir()
    if directory is None:
        return 0
    st = os.statvfs(directory)
    return int(st.f_blocks * st.f_frsize * DEFAULT_LIMIT_FRACTION)


def describe_size(nbytes: int) -> str:
    size = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


class StoreConfig:
    """What a worker needs to write segments its parent owns (sent at its start).

    A plain slotted class, not a dataclass: every worker imports this module
    as it starts, and ``dataclasses`` would add its imports to that wait.
    """

    __slots__ = ("limit", "owner", "shm_dir", "spill_dir", "threshold", "token")

    def __init__(
        self,
        owner: int,  # pid of the executor's process
        token: str,  # tells this executor's segments from another's in the same process
        threshold: int,  # buffers of at least this many bytes go out of band
        limit: int,  # bytes of /dev/shm this executor and its workers may hold
        shm_dir: str | None,
        spill_dir: str | None,  # None: past the limit is an error
    ) -> None:
        self.owner = owner
        self.token = token
        self.threshold = threshold
        self.limit = limit
        self.shm_dir = shm_dir
        self.spill_dir = spill_dir

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"StoreConfig({fields})"

    @property
    def ledger_path(self) -> str | None:
        if self.shm_dir is None:
            return None
        return os.path.join(self.shm_dir, f"{PREFIX}{self.owner}-{self.token}-ledger")


class Segment:
    """The owner's handle on one segment file: unlinks it when garbage-collected."""

    __slots__ = ("__weakref__", "in_shm", "nbytes", "path")

    def __init__(self, store: Store, path: str, nbytes: int, in_shm: bool) -> None:
        self.path = path
        self.nbytes = nbytes
        self.in_shm = in_shm
        weakref.finalize(self, store._free, path)

    def __repr__(self) -> str:
        return f"<Segment {self.path} {describe_size(self.nbytes)}>"


def _write_file(path: str, view: memoryview) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        done = 0
        total = view.nbytes
        while done < total:
            done += os.write(fd, view[done : done + _WRITE_CHUNK])
    except BaseException:
        os.close(fd)
        _unlink(path)
        raise
    os.close(fd)


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


class Store:
    """Writes segments; in the owner also frees them, sweeps, and counts them.

    One per executor in its process (``owner=True``), one per worker process.
    """

    def __init__(self, config: StoreConfig, owner: bool) -> None:
        self.config = config
        self.owner = owner
        self._pid = os.getpid()
        self._counter = itertools.count()
        self._lock = threading.RLock()  # RLock: a finalizer may run inside a locked section
        self._ledger_path = config.ledger_path
        self._ledger_made: Ledger | None = None  # opened at the first write
        #: Owner only: linked segments, path -> (bytes, in /dev/shm).
        self._owned: dict[str, tuple[int, bool]] = {}
        self._segments: weakref.WeakValueDictionary[str, Segment] = weakref.WeakValueDictionary()
        #: Owner only: buffer identity -> (its exporter or a weakref to it, the segment).
        self._dedup: dict[tuple[int, int], tuple[Any, weakref.ref[Segment]]] = {}
        #: Owner only: segments kept while their exporter lives, least recently used first.
        self._kept: dict[tuple[int, int], Segment] = {}
        #: Owner only: segments unlinked whose bytes are being given back to the ledger.
        self._releasing: dict[str, int] = {}
        self._dedup_of: dict[str, tuple[int, int]] = {}
        #: Owner only: told the modules a payload's pickle imports before its
        #: large buffers are written, so that workers import them meanwhile
        #: (:mod:`pel.transport.preload`); set by the backend.
        self.announce: Callable[[tuple[str, ...]], None] | None = None
        self.closed = False
        if owner:
            _open_stores.add(self)

    @classmethod
    def create(cls, threshold: int | None, limit: int | None, spill_dir: Any) -> Store:
        """The owner's store, from the executor's options (already validated)."""
        from .sweep import sweep_dead_owners

        sweep_dead_owners()
        spill: str | None
        if spill_dir is False:
            spill = None
        elif spill_dir is None or spill_dir is True:
            spill = default_spill_dir()
        else:
            spill = os.fspath(spill_dir)
        config = StoreConfig(
            owner=os.getpid(),
            token=os.urandom(3).hex(),
            threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
            limit=default_limit() if limit is None else limit,
            shm_dir=shm_dir(),
            spill_dir=spill,
        )
        return cls(config, owner=True)

    @property
    def _ledger(self) -> Ledger | None:
        if self._ledger_made is None and self._ledger_path is not None and not self.closed:
            with self._lock:
                if self._ledger_made is None:
                    self._ledger_made = Ledger(self._ledger_path)
        return self._ledger_made

    # -- writing ---------------------------------------------------------------------

    def _new_path(self, directory: str) -> str:
        c = self.config
        return os.path.join(
            directory, f"{PREFIX}{c.owner}-{c.token}-{self._pid}-{next(self._counter)}"
        )

    def write(self, view: memoryview) -> tuple[str, int, bool]:
        """Write one buffer to a new segment; return (path, bytes, in /dev/shm)."""
        nbytes = view.nbytes
        c = self.config
        ledger = self._ledger if c.shm_dir is not None else None
        why = "there is no /dev/shm here"
        while ledger is not None and c.shm_dir is not None:
            ok, used = ledger.reserve(self._pid, nbytes, c.limit)
            if ok:
                path = self._new_path(c.shm_dir)
                try:
                    _write_file(path, view)
                except BaseException as exc:
                    ledger.release(self._pid, nbytes)
                    if not isinstance(exc, OSError) or exc.errno not in _FULL:
                        raise
                    why = f"{c.shm_dir} is full ({exc.strerror})"
                else:
                    return path, nbytes, True
            else:
                why = (
                    f"pel's shared-memory limit is {describe_size(c.limit)} (shm_limit) and "
                    f"{describe_size(used)} are in use"
                )
            # Before spilling, give up what is kept only for objects still alive.
            if not self._let_go_of_one_kept():
                break
        if c.spill_dir is None:
            from .._errors import SharedMemoryError

            raise SharedMemoryError(
                f"cannot store a buffer of {describe_size(nbytes)} ({nbytes} bytes) in shared "
                f"memory: {why}. Raise shm_limit, drop references to earlier results and "
                f"ObjectRefs, or let pel spill to disk (spill_dir)"
            )
        os.makedirs(c.spill_dir, mode=0o700, exist_ok=True)
        path = self._new_path(c.spill_dir)
        _write_file(path, view)
        return path, nbytes, False

    def discard(self, paths: list[str]) -> None:
        """A worker: unlink segments it wrote for a result it could not send."""
        c = self.config
        for path in paths:
            if os.path.basename(path).startswith(f"{PREFIX}{c.owner}-{c.token}-{self._pid}-"):
                size = _size(path)
                ledger = self._ledger
                if _unlink(path) and path.startswith(f"{c.shm_dir}/") and ledger is not None:
                    ledger.release(self._pid, size)

    def segment(self, view: memoryview) -> Segment:
        """Owner: write a buffer and hold it in a new :class:`Segment`."""
        path, nbytes, in_shm = self.write(view)
        return self.adopt(path, nbytes, in_shm)

    def adopt(self, path: str, nbytes: int, in_shm: bool) -> Segment:
        """Owner: take charge of a segment (its own, or one a worker wrote)."""
        with self._lock:
            seg = self._segments.get(path)
            if seg is not None:
                return seg
            if path not in self._owned and not os.path.exists(path):
                from .._errors import SerializationError

                raise SerializationError(f"pel's shared-memory segment {path} is gone")
            seg = Segment(self, path, nbytes, in_shm)
            self._owned[path] = (nbytes, in_shm)
            self._segments[path] = seg
            if self.closed:  # a result arriving during shutdown: nothing will read it
                self._free(path)
            return seg

    def adopt_wire(self, wire: Any) -> Any:
        """Owner: a :class:`~.serialize.Packed` holding the segments a worker's result names."""
        from .serialize import Packed

        segments = []
        for path, _, _ in wire.buffers:
            with self._lock:
                seg = self._segments.get(path)
            if seg is None:
                in_shm = self.config.shm_dir is not None and path.startswith(
                    f"{self.config.shm_dir}/"
                )
                seg = self.adopt(path, _size(path), in_shm)
            segments.append(seg)
        return Packed(wire.data, wire.buffers, tuple(segments))

    def deduplicated(self, exporter: Any, view: memoryview) -> Segment:
        """Owner: the segment for ``exporter``'s buffer, written once.

        Keyed by identity, so no byte is hashed. A read-only buffer whose
        exporter allows weak references (a numpy array with ``writeable``
        off, or one pel returned) cannot change, so it keeps its segment for
        as long as it lives: the segment is held in ``_kept`` until a weak
        reference's callback says the exporter died (and given up earlier,
        least recently used first, when a write meets the limit). A writable
        one may be changed between two submits (a buffer reused in a loop):
        it shares its segment only while the segment lives for other reasons
        (a pending task, a ref, a mapping), as ``bytes`` do; an exporter
        without weak references is held itself meanwhile, so that its id
        cannot be reused.
        """
        key = (id(exporter), view.nbytes)
        with self._lock:
            seg = self._cached(key, exporter)
            if seg is not None:
                kept = self._kept.pop(key, None)
                if kept is not None:
                    self._kept[key] = kept  # now the most recently used
                return seg
            seg = self.segment(view)
            try:
                held = weakref.ref(exporter, functools.partial(_forget, weakref.ref(self), key))
            except TypeError:
                held = exporter
            else:
                if view.readonly:
                    self._kept[key] = seg
            self._dedup[key] = (held, weakref.ref(seg))
            self._dedup_of[seg.path] = key
            return seg

    def holds(self, exporter: Any, nbytes: int) -> bool:
        """Owner: would :meth:`deduplicated` find this buffer already written?"""
        with self._lock:
            return self._cached((id(exporter), nbytes), exporter) is not None

    def _cached(self, key: tuple[int, int], exporter: Any) -> Segment | None:
        entry = self._dedup.get(key)
        if entry is None:
            return None
        held, seg_ref = entry
        if (held() if type(held) is weakref.ref else held) is not exporter:
            return None
        return seg_ref()

    def _let_go_of_one_kept(self) -> bool:
        """Stop keeping the least recently used segment kept for a live object.

        It is freed now unless a task, ref or mapping still needs it (then it is
        still shared while they do). False when nothing was kept.
        """
        with self._lock:
            if not self._kept:
                return False
            key = next(iter(self._kept))
            seg = self._kept.pop(key)
        del seg  # freed here (its finalizer) if nothing else holds it
        return True

    # -- freeing (owner) ------------------------------------------------------------

    def _free(self, path: str) -> None:
        with self._lock:
            entry = self._owned.pop(path, None)
            key = self._dedup_of.pop(path, None)
            if key is not None:
                found = self._dedup.get(key)
                if found is not None and found[1]() is None:  # not a newer segment's
                    del self._dedup[key]
            if entry is None:
                return
            nbytes, in_shm = entry
            ledger = self._ledger if in_shm else None
            if ledger is not None:
                self._releasing[path] = nbytes
        # Outside the store's lock: a finalizer run by the garbage collector
        # inside a ledger update (which holds the ledger's lock) takes the
        # store's lock, so taking them in the other order could deadlock.
        _unlink(path)
        if ledger is not None:
            ledger.release(_creator(path), nbytes)
            with self._lock:
                del self._releasing[path]

    def sweep_creator(self, pid: int | None) -> int:
        """Owner: unlink the segments a dead worker wrote and never reported
        (every worker's, with ``pid=None``), and make the ledger exact again.

        Whatever instant the worker died at (after reserving, half way
        through a write, before its result was sent), what it holds in the
        ledger becomes the size of its segments the owner adopted.
        """
        c = self.config
        prefix = f"{PREFIX}{c.owner}-{c.token}-" + ("" if pid is None else f"{pid}-")
        removed = 0
        with self._lock:
            for directory in (c.shm_dir, c.spill_dir):
                if directory is None:
                    continue
                for name in dir_entries(directory):
                    path = os.path.join(directory, name)
                    if (
                        not name.startswith(prefix)
                        or name.endswith("-ledger")
                        or path in self._owned
                    ):
                        continue
                    if _unlink(path):
                        removed += 1
            ledger = self._ledger
            if pid is not None and ledger is not None:
                # Segments being freed right now count: their release follows.
                adopted = sum(
                    nbytes
                    for path, (nbytes, in_shm) in self._owned.items()
                    if in_shm and _creator(path) == pid
                ) + sum(n for path, n in self._releasing.items() if _creator(path) == pid)
                ledger.reset(pid, adopted)
        return removed

    def used(self) -> int:
        """Bytes of /dev/shm this executor's segments hold now."""
        ledger = self._ledger
        return ledger.used() if ledger is not None else 0

    def owned_paths(self) -> list[str]:
        with self._lock:
            return list(self._owned)

    def close(self) -> None:
        """Unlink everything this store owns (mappings stay valid) and its ledger."""
        if self.owner:
            with self._lock:
                if self.closed:
                    return
                owned = list(self._owned)
            with self._lock:
                self._kept.clear()
            for path in owned:
                self._free(path)
            self.sweep_creator(None)
            if self._ledger_path is not None:
                _unlink(self._ledger_path)
            _open_stores.discard(self)
        with self._lock:
            self.closed = True
            if self._ledger_made is not None:
                self._ledger_made.close()
                self._ledger_made = None


def _forget(store_ref: weakref.ref[Store], key: tuple[int, int], held: Any) -> None:
    """An exporter died: stop keeping its segment (a weak reference's callback)."""
    store = store_ref()
    if store is None:
        return
    with store._lock:
        entry = store._dedup.get(key)
        if entry is None or entry[0] is not held:
            return
        del store._dedup[key]
        seg = store._kept.pop(key, None)
    del seg  # freed here if nothing else holds it


def _creator(path: str) -> int:
    """The pid of the process that wrote a segment, from its name."""
    return int(os.path.basename(path).split("-")[3])


def dir_entries(directory: str) -> list[str]:
    """The names in ``directory``; none if it is missing or unreadable."""
    try:
        return os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


#: Stores of this process still open, closed at interpreter exit. Weak: a store
#: belongs to its executor's backend, not to this set.
_open_stores: weakref.WeakSet[Store] = weakref.WeakSet()


def _close_all() -> None:
    for store in list(_open_stores):
        store.close()


atexit.register(_close_all)

if sys.platform == "win32":  # pragma: no cover - pel's processes backend is POSIX
    raise ImportError("pel.transport.shm needs a POSIX system")
