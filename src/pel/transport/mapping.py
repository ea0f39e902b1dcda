"""The reading side of the object store: segments mapped read-only, zero-copy.

One mapping per segment per process, shared by every view of it; in the
owner a mapping holds its :class:`~pel.transport.shm.Segment`, so the file
stays linked while any array built on it lives (see :mod:`pel.transport.shm`).
"""

from __future__ import annotations

import mmap
import os
import threading
import weakref

TYPE_CHECKING = False  # typing's own costs a worker's start-up
if TYPE_CHECKING:
    from typing import Any

    from .shm import Segment

__all__ = ["map_view", "segment_of"]


class _Mapping(mmap.mmap):
    """A read-only mapping of a segment; in the owner it keeps the Segment alive."""

    segment: Segment | None
    path: str


#: Mappings alive in this process, by path: a segment mapped again while an
#: earlier mapping lives reuses it (one mapping per segment per process).
_mappings: weakref.WeakValueDictionary[str, _Mapping] = weakref.WeakValueDictionary()
_mappings_lock = threading.Lock()


def map_view(path: str, offset: int, nbytes: int, segment: Segment | None = None) -> memoryview:
    """A read-only, zero-copy view of ``nbytes`` at ``offset`` of segment ``path``."""
    with _mappings_lock:
        mapping = _mappings.get(path)
        if mapping is None:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                from .._errors import SerializationError

                raise SerializationError(
                    f"pel's shared-memory segment {path} is gone: it was freed (its executor "
                    f"shut down, or every reference to it was dropped) before this read"
                ) from None
            try:
                mapping = _Mapping(fd, 0, access=mmap.ACCESS_READ)
            finally:
                os.close(fd)
            mapping.segment = segment
            mapping.path = path
            _mappings[path] = mapping
        elif segment is not None and mapping.segment is None:
            mapping.segment = segment
    return memoryview(mapping)[offset : offset + nbytes]


def segment_of(obj: Any) -> tuple[str, int, Segment | None] | None:
    """If ``obj``'s buffer lies in a segment mapping: (path, offset, segment).

    Follows ``.base`` (numpy) and ``.obj`` (memoryview) to the mapping, then
    compares addresses (numpy only), so a result passed on to another task goes
    by name instead of being written again.
    """
    seen = obj
    for _ in range(8):
        nxt = getattr(seen, "base", None)
        if nxt is None:
            nxt = getattr(seen, "obj", None) if type(seen) is memoryview else None
        if nxt is None:
            return None
        if isinstance(nxt, _Mapping):
            try:
                start = obj.__array_interface__["data"][0]
                import numpy as np

                base = np.frombuffer(nxt, dtype=np.uint8).__array_interface__["data"][0]
            except (AttributeError, ImportError, TypeError, KeyError, ValueError):
                return None
            return nxt.path, start - base, nxt.segment
        seen = nxt
    return None
