"""Pickling calls and results: pickle protocol 5, cloudpickle when needed.

The fast path is the C pickler: plain functions, numbers, strings, arrays. It
falls back to cloudpickle for what the C pickler refuses (lambdas, closures,
classes and functions defined in ``__main__`` or in a function). ``__main__``
objects always go by value: a worker started by forkserver or spawn cannot
import ``__main__`` when it is an interactive session or ``python -c``.

Errors name the culprit: which argument of which task could not be pickled,
and why. Finding out which argument failed re-pickles them one by one, which
is only done once something has already failed.

**Out-of-band buffers** (:func:`dumps_oob`, the processes backend's calls and
results): a buffer of at least the store's threshold that the pickler hands
to ``buffer_callback`` (numpy arrays, pandas and pyarrow data, ``PickleBuffer``)
is written to a shared-memory segment (:mod:`.shm`) instead of into the pickle,
and the result is a :class:`Packed`: the small pickle plus where its buffers
are. Smaller buffers stay in the pickle, so small calls cost what they did.
The C pickler writes ``bytes`` and ``bytearray`` in band without asking, and
refuses ``memoryview``: when the pickle comes out at least the threshold long
(or a memoryview was refused), large ``bytes``/``bytearray`` and every
``memoryview`` found where pel looks for futures (arguments, results, and
inside lists, tuples, sets and dict values) are wrapped so that they go out of
band too; elsewhere they stay in band. Readers get them back as ``bytes`` and
``bytearray`` (one copy, made in the reader) and as a read-only ``memoryview``
of the mapping (no copy).
"""

from __future__ import annotations

# The C pickler itself, which the pickle module re-exports: importing pickle
# would also import re, ~3 ms of every worker's start-up.
import _pickle as pickle
import functools
import io
import os
import sys
import threading
from collections.abc import Callable

# Neither typing nor pel's errors at the top (they bring concurrent.futures
# and logging): worker processes import this module as they start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .._errors import SerializationError
    from .shm import Segment, Store

__all__ = [
    "Packed",
    "Wire",
    "describe_failure",
    "dumps",
    "dumps_function",
    "dumps_oob",
    "dumps_with_tracebacks",
    "hold",
    "loads",
]

PROTOCOL = 5


def _cloudpickle() -> Any:
    # Imported on first use: it costs ~25 ms, paid only by programs that
    # pickle lambdas, closures or __main__ objects (and by every start-up
    # of every worker, if imported at the top).
    import cloudpickle

    return cloudpickle


@functools.cache
def _traceback_pickler() -> Any:
    from .._errors import RemoteTraceback

    class TracebackPickler(_cloudpickle().Pickler):  # type: ignore[misc]
        """Keeps the remote traceback, which pickling an exception would drop."""

        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, BaseException) and isinstance(obj.__cause__, RemoteTraceback):
                reduced: Any = obj.__reduce_ex__(PROTOCOL)
                factory, args = reduced[0], reduced[1]
                state = reduced[2] if len(reduced) > 2 else None
                return (_rebuild_exception, (factory, args, state, obj.__cause__.tb))
            return super().reducer_override(obj)

    return TracebackPickler


def _rebuild_exception(
    factory: Any, args: tuple[Any, ...], state: dict[str, Any] | None, tb: str
) -> BaseException:
    from .._errors import RemoteTraceback  # here: see the module's imports

    exc: BaseException = factory(*args)
    if state:
        exc.__dict__.update(state)
    exc.__cause__ = RemoteTraceback(tb)
    return exc


def dumps_with_tracebacks(obj: Any) -> bytes:
    """Pickle a worker's error (or a value holding one) with its traceback."""
    buf = io.BytesIO()
    _traceback_pickler()(buf, protocol=PROTOCOL).dump(obj)
    return buf.getvalue()


def _cloud_dumps(obj: Any) -> bytes:
    buf = io.BytesIO()
    _cloudpickle().Pickler(buf, protocol=PROTOCOL).dump(obj)
    return buf.getvalue()


_main_checked: tuple[object, bool] = (None, False)


def main_module() -> tuple[str, str] | None:
    """How a worker can import this program's ``__main__``, if it can:
    ``("name", module)`` for ``python -m module``, ``("path", file)`` for a
    script. None for a REPL, ``python -c``, a script read from stdin, or a
    package's ``__main__`` (which spawn does not import either): objects
    defined there then travel by value. The fork server imports what this
    says, so pickles and workers always agree.
    """
    main = sys.modules.get("__main__")
    if hasattr(sys, "ps1"):
        return None
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if name is not None:
        if name == "__main__" or name.endswith(".__main__"):
            return None
        return ("name", name)
    path = getattr(main, "__file__", None)
    if path is not None and os.path.isfile(path):
        return ("path", os.path.abspath(path))
    return None


def _main_is_importable() -> bool:
    """Can a worker import ``__main__`` (a script), or is it a REPL/``-c``?

    Asked per pickle, so the answer is kept for as long as ``__main__`` is the
    same module object.
    """
    global _main_checked
    main = sys.modules.get("__main__")
    if _main_checked[0] is not main:
        importable = main_module() is not None
        _main_checked = (main, importable)
    return _main_checked[1]


def _by_value_needed(data: bytes) -> bool:
    """Does this C pickle name ``__main__`` where no worker can import it?

    A REPL, ``python -c`` or a script from stdin: objects defined there must
    travel by value (cloudpickle). The C pickler writes every reference to a
    module-level object as its module's name, so a pickle that does not
    contain the bytes ``__main__`` refers to nothing there (a string that
    happens to hold them only costs the slower path). A large pickle is
    not scanned where ``__main__`` is importable (a script's is; the answer
    is kept): W2's chunks are a few hundred KiB each.
    """
    if len(data) > 4096 and _main_is_importable():
        return False
    return b"__main__" in data and not _main_is_importable()


def dumps(obj: Any) -> bytes:
    """Pickle ``obj``; C pickler first, cloudpickle when it refuses, or when
    the pickle refers to a ``__main__`` that workers cannot import.

    Exceptions from pickling propagate unchanged (callers add context);
    ``FutureFoundError`` in particular must reach the caller.
    """
    try:
        data = pickle.dumps(obj, PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        # "cannot pickle 'X' object" is final: cloudpickle would refuse too.
        if isinstance(exc, TypeError) and "cannot pickle" in str(exc):
            raise
        return _cloud_dumps(obj)
    return _cloud_dumps(obj) if _by_value_needed(data) else data


def dumps_function(fn: Callable[..., Any]) -> bytes:
    """Pickle a function to ship once to each worker.

    ``__main__`` functions go by value even from an importable script: that
    also covers functions defined after the workers started.
    """
    if getattr(fn, "__module__", None) == "__main__":
        return _cloud_dumps(fn)
    try:
        return pickle.dumps(fn, PROTOCOL)
    except Exception:
        return _cloud_dumps(fn)


def _discard(buffer: pickle.PickleBuffer) -> bool:
    return False  # out of band, and dropped: only asking whether it pickles


def describe_failure(
    task_name: str, args: tuple[Any, ...], kwargs: dict[str, Any], exc: BaseException
) -> SerializationError:
    """Build the error for a call that failed to pickle, naming the argument."""
    from .._errors import SerializationError

    culprit = "its arguments"
    for label, value in [(f"argument {i}", a) for i, a in enumerate(args)] + [
        (f"keyword argument {k!r}", v) for k, v in kwargs.items()
    ]:
        try:
            _probe(value)
        except Exception as inner:
            culprit = f"{label} ({type(value).__name__})"
            exc = inner
            break
    err = SerializationError(
        f"cannot send task {task_name!r} to a worker: {culprit} cannot be pickled: "
        f"{type(exc).__name__}: {exc}. Make it picklable, create it inside the task, "
        f"or use backend='threads', which does not pickle."
    )
    err.__cause__ = exc
    return err


def _probe(obj: Any) -> None:
    """Pickle ``obj`` to see if it can be; its large buffers are not copied."""
    try:
        pickle.dumps(obj, PROTOCOL, buffer_callback=_discard)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        if isinstance(exc, TypeError) and "cannot pickle" in str(exc):
            raise
        _cloudpickle().Pickler(io.BytesIO(), protocol=PROTOCOL, buffer_callback=_discard).dump(obj)


# -- out-of-band buffers ------------------------------------------------------------------


class Wire:
    """A pickle whose large buffers live in segments: what crosses a pipe.

    ``buffers`` lists ``(path, offset, nbytes)`` of each out-of-band buffer, in
    pickle order. ``data`` is the pickle, or ``None`` when it is itself the
    first of ``buffers`` (an ``ObjectRef`` of a large pickle).
    """

    __slots__ = ("buffers", "data")

    def __init__(self, data: bytes | None, buffers: tuple[tuple[str, int, int], ...]) -> None:
        self.data = data
        self.buffers = buffers

    def __reduce__(self) -> tuple[Any, ...]:
        return (Wire, (self.data, self.buffers))

    def _segment(self, path: str) -> Segment | None:
        return None

    def load(self) -> Any:
        from .mapping import map_view

        views = [map_view(p, o, n, self._segment(p)) for p, o, n in self.buffers]
        if self.data is None:
            return pickle.loads(views[0], buffers=views[1:])
        return pickle.loads(self.data, buffers=views)

    @property
    def nbytes(self) -> int:
        return sum(n for _, _, n in self.buffers)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {len(self.data or b'')} B + {len(self.buffers)} buffers>"


class Packed(Wire):
    """A :class:`Wire` in the owner: it keeps its segments alive while it lives.

    Pickles as a plain :class:`Wire`, so the segments never leave the owner.
    ``segments`` may hold more than ``buffers`` names: those of the
    ``ObjectRef`` objects the pickle refers to.
    """

    __slots__ = ("segments",)

    def __init__(
        self,
        data: bytes | None,
        buffers: tuple[tuple[str, int, int], ...],
        segments: tuple[Segment, ...],
    ) -> None:
        super().__init__(data, buffers)
        self.segments = segments

    def _segment(self, path: str) -> Segment | None:
        for seg in self.segments:
            if seg.path == path:
                return seg
        return None


def loads(payload: Any) -> Any:
    """Unpickle what a pipe brought: pickle bytes, or a :class:`Wire`."""
    if type(payload) is bytes:
        return pickle.loads(payload)
    return payload.load()


class _OutOfBand:
    """Stands in for a ``bytes``, ``bytearray`` or ``memoryview`` so that its
    buffer reaches ``buffer_callback`` (the C pickler never offers theirs)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        obj = self.obj
        if type(obj) is memoryview:
            flat = obj if obj.c_contiguous else memoryview(obj.tobytes())
            return (_rebuild_memoryview, (pickle.PickleBuffer(flat), obj.format, obj.shape))
        return (_rebuild_bytes, (pickle.PickleBuffer(obj), type(obj) is bytearray))


def _rebuild_bytes(buffer: Any, mutable: bool) -> Any:
    return bytearray(buffer) if mutable else bytes(buffer)


def _rebuild_memoryview(buffer: Any, fmt: str, shape: tuple[int, ...]) -> memoryview:
    view: Any = memoryview(buffer)
    if view.format != fmt or view.shape != shape:
        view = view.cast("B").cast(fmt, shape)
    return view  # type: ignore[no-any-return]


_CONTAINERS = (list, tuple, set, frozenset, dict)
_BYTES_TYPES = frozenset({bytes, bytearray, memoryview, *_CONTAINERS})


def _wrap_bytes(obj: Any, threshold: int) -> Any:
    """Wrap large bytes-likes (and every memoryview) where pel looks for futures."""
    t = type(obj)
    if t is memoryview or ((t is bytes or t is bytearray) and len(obj) >= threshold):
        return _OutOfBand(obj)
    if t is dict:
        if _BYTES_TYPES.isdisjoint(map(type, obj.values())):
            return obj
        return {k: _wrap_bytes(v, threshold) for k, v in obj.items()}
    if t in _CONTAINERS:
        if _BYTES_TYPES.isdisjoint(map(type, obj)):
            return obj
        items = [_wrap_bytes(x, threshold) for x in obj]
        return items if t is list else t(items)
    return obj


#: The segments of ObjectRefs met while pickling, per thread (see :func:`hold`).
_held = threading.local()
#: Set once an ObjectRef with segments exists: before that no pickle can meet one.
refs_exist = False


def hold(segments: tuple[Segment, ...]) -> None:
    """Called by ``ObjectRef.__reduce__``: the pickle being made keeps these alive."""
    found: list[Segment] | None = getattr(_held, "segments", None)
    if found is not None:
        found.extend(segments)


def _reduce_memoryview(view: memoryview) -> tuple[Any, ...]:
    return _OutOfBand(view).__reduce_ex__(PROTOCOL)


@functools.cache
def _oob_pickler() -> Any:
    """A C pickler that sends a memoryview anywhere as a PickleBuffer."""
    import collections
    import copyreg

    class OutOfBandPickler(pickle.Pickler):
        dispatch_table: Any = collections.ChainMap(
            {memoryview: _reduce_memoryview},
            copyreg.dispatch_table,
        )

    return OutOfBandPickler


@functools.cache
def _oob_cloud_pickler() -> Any:
    """The same for cloudpickle (which would send a memoryview in band)."""
    import collections

    cloud = _cloudpickle().Pickler

    class OutOfBandCloudPickler(cloud):  # type: ignore[misc,valid-type]
        dispatch_table = collections.ChainMap(
            {memoryview: _reduce_memoryview}, cloud.dispatch_table
        )

    return OutOfBandCloudPickler


def _pickle_oob(
    obj: Any,
    callback: Callable[[pickle.PickleBuffer], bool],
    restart: Callable[[], None],
    anywhere: bool = False,
) -> bytes:
    """Pickle with ``callback`` for buffers; ``anywhere``: memoryviews in any
    object too. The C pickler first, then cloudpickle as :func:`dumps` says;
    a second attempt starts afresh: ``restart`` must forget every buffer and
    segment the first one reported (else their order no longer matches)."""
    try:
        if not anywhere:
            data = pickle.dumps(obj, PROTOCOL, buffer_callback=callback)
        else:
            buf = io.BytesIO()
            _oob_pickler()(buf, PROTOCOL, buffer_callback=callback).dump(obj)
            data = buf.getvalue()
        if not _by_value_needed(data):
            return data
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        if isinstance(exc, TypeError) and "cannot pickle" in str(exc):
            raise
    restart()
    buf = io.BytesIO()
    _oob_cloud_pickler()(buf, protocol=PROTOCOL, buffer_callback=callback).dump(obj)
    return buf.getvalue()


def dumps_oob(obj: Any, store: Store | None, dedup: bool = True) -> bytes | Wire:
    """Pickle ``obj`` with its large buffers in shared memory (plain bytes if none).

    In the owner (the executor's process) each large buffer becomes a held
    segment, written once per exporting object while it is in use (``dedup``);
    in a worker the segments are handed over to the owner with the result. A
    buffer already in a segment mapping (a result passed on) is named, not
    written again.
    """
    if store is None:
        return dumps(obj)
    threshold = store.config.threshold
    data = None
    if not refs_exist:
        data = _dumps_in_band(obj, threshold)
        if data is not None and _by_value_needed(data):
            data = None
        elif data is not None and len(data) < threshold:
            return data  # the usual call or result: one C pickle, nothing more
    return _dumps_oob(obj, store, dedup, threshold, data)


class _LargeBuffer(Exception):
    """Stops :func:`_dumps_in_band` at a buffer that goes out of band."""


def _dumps_in_band(obj: Any, threshold: int) -> bytes | None:
    """``obj`` pickled by the C pickler, or None if it holds a buffer of at
    least ``threshold`` bytes (met: the pickling stops there) or the C pickler
    refuses it (cloudpickle, or a memoryview: see :func:`_dumps_oob`)."""
    in_band = _in_band_callbacks.get(threshold)
    if in_band is None:
        in_band = _in_band_callbacks[threshold] = _in_band_callback(threshold)
    try:
        return pickle.dumps(obj, PROTOCOL, buffer_callback=in_band)
    except (_LargeBuffer, pickle.PicklingError, AttributeError, TypeError):
        return None


def _in_band_callback(threshold: int) -> Callable[[pickle.PickleBuffer], bool]:
    def in_band(buffer: pickle.PickleBuffer) -> bool:
        try:
            nbytes = buffer.raw().nbytes
        except BufferError:  # not contiguous: in band
            return True
        if nbytes >= threshold:
            raise _LargeBuffer
        return True

    return in_band


#: One callback per threshold (an executor has one), not a closure per pickle.
_in_band_callbacks: dict[int, Callable[[pickle.PickleBuffer], bool]] = {}


def _dumps_oob(
    obj: Any, store: Store, dedup: bool, threshold: int, in_band: bytes | None
) -> bytes | Wire:
    """:func:`dumps_oob` past its fast path. ``in_band``: ``obj`` already
    pickled by it, whole, with no large buffer (just too long: large
    ``bytes`` in it may go out of band yet)."""
    found: list[pickle.PickleBuffer] = []

    def keep_small(buffer: pickle.PickleBuffer) -> bool:
        try:
            if buffer.raw().nbytes < threshold:
                return True
        except BufferError:  # not contiguous: in band
            return True
        found.append(buffer)
        return False

    refs = refs_exist
    held: list[Segment] = []

    def restart() -> None:
        found.clear()
        held.clear()

    if refs:
        _held.segments = held
    try:
        if in_band is not None:
            data, wrap = in_band, True
        else:
            try:
                data = _pickle_oob(obj, keep_small, restart)
                wrap = len(data) >= threshold
            except TypeError as exc:
                if "memoryview" not in str(exc):
                    raise
                wrap = True
        if wrap:
            wrapped = _wrap_bytes(obj, threshold)
            if wrapped is not obj:
                found.clear()
                if refs:
                    held.clear()
                data = _pickle_oob(wrapped, keep_small, restart, anywhere=True)
    finally:
        if refs:
            _held.segments = None
    if not found and not refs:
        return data
    return _place(store, data, found, held, dedup)


def _place(
    store: Store,
    data: bytes,
    found: list[pickle.PickleBuffer],
    held: list[Segment],
    dedup: bool,
) -> bytes | Wire:
    from .mapping import segment_of

    if not found and not held:
        return data
    owner = store.owner
    if owner and store.announce is not None:
        from .preload import announce_before_write

        announce_before_write(store, data, found)
    segments: list[Segment] = list(held)
    buffers: list[tuple[str, int, int]] = []
    token = f"-{store.config.token}-"
    for pb in found:
        raw = pb.raw()
        exporter = raw.obj
        nbytes = raw.nbytes
        where = segment_of(exporter)
        if where is not None:
            path, offset, seg = where
            if seg is not None and owner:
                segments.append(seg)
                buffers.append((path, offset, nbytes))
                continue
            if seg is None and not owner and token in path:
                buffers.append((path, offset, nbytes))  # the owner holds it already
                continue
        if not owner:
            try:
                path, _, _ = store.write(raw)
            except BaseException:
                store.discard([p for p, _, _ in buffers if token in p])
                raise
            buffers.append((path, 0, nbytes))
            continue
        seg = store.deduplicated(exporter, raw) if dedup else store.segment(raw)
        segments.append(seg)
        buffers.append((seg.path, 0, nbytes))
    if owner:
        return Packed(data, tuple(buffers), tuple(segments))
    return Wire(data, tuple(buffers))
