"""``ObjectRef``: an object stored once by ``Executor.put``, passed to many tasks.

On the processes backend ``put`` pickles the object once, its large buffers
into shared memory (and the pickle too, when that is large), and the ref
pickles as that small descriptor: each task that gets it maps the same
segments read-only instead of receiving a copy. On the in-process backends the
ref just holds the object. Either way a task receives the object itself, in
the places where pel finds futures (arguments, and inside lists, tuples, sets
and dict values).

The stored data lives while the ref does, and while any task it was passed to
is pending (the task's pickled call holds its segments), so ``ex.submit(f,
ex.put(x))`` is safe. ``put`` takes a snapshot: changing the object afterwards
does not change what tasks see.
"""

from __future__ import annotations

import weakref
from typing import Any, Generic, TypeVar

from .transport import serialize

__all__ = ["ObjectRef", "resolve"]

T = TypeVar("T")

#: Becomes True at the first ref: until then no argument can hold one, and
#: in-process backends skip looking for them.
made = False

#: A worker's refs resolved recently, by descriptor: tasks of one worker given
#: the same ref share one object while it is in use (weakly held).
_resolved: weakref.WeakValueDictionary[tuple[Any, ...], Any] = weakref.WeakValueDictionary()


class ObjectRef(Generic[T]):
    """A handle on an object stored once with :meth:`pel.Executor.put`.

    Pass it to tasks in place of the object; each task receives the object
    (on the processes backend, with its large buffers mapped read-only and
    zero-copy). ``nbytes`` is the size of the data held in shared memory.
    """

    __slots__ = ("__weakref__", "_packed", "_value")

    def __init__(self, value: Any = None, packed: serialize.Packed | None = None) -> None:
        global made
        made = True
        self._value = value
        self._packed = packed
        if packed is not None and packed.segments:
            serialize.refs_exist = True

    @property
    def nbytes(self) -> int:
        """Bytes of the object kept in shared memory (0 on in-process backends)."""
        packed = self._packed
        return 0 if packed is None else sum(seg.nbytes for seg in packed.segments)

    def _get(self) -> Any:
        """The object (in-process backends substitute it into arguments)."""
        packed = self._packed
        return self._value if packed is None else packed.load()

    def __reduce__(self) -> tuple[Any, ...]:
        packed = self._packed
        if packed is None:
            return (_identity, (self._value,))
        serialize.hold(packed.segments)  # the pickle being made, a pending task, holds them
        return (resolve, (serialize.Wire(packed.data, packed.buffers),))

    def __repr__(self) -> str:
        where = "in-process" if self._packed is None else f"{self.nbytes} bytes in shared memory"
        return f"<pel.ObjectRef {where}>"


def _identity(value: Any) -> Any:
    return value


def resolve(wire: serialize.Wire) -> Any:
    """Unpickle a ref in a task: the stored object, mapped zero-copy."""
    key = (wire.data, wire.buffers)
    try:
        return _resolved[key]
    except KeyError:
        pass
    value = wire.load()
    try:
        _resolved[key] = value
    except TypeError:
        pass  # ints, lists, ...: not weakly referenceable, loaded again next time
    return value


def put(store: Any, obj: T) -> ObjectRef[T]:
    """Store ``obj`` once: in shared memory when there is a store, else in the ref."""
    if store is None:
        return ObjectRef(obj)
    packed = serialize.dumps_oob(obj, store, dedup=False)
    if isinstance(packed, bytes):
        if len(packed) < store.config.threshold:
            return ObjectRef(None, serialize.Packed(packed, (), ()))
        seg = store.segment(memoryview(packed))
        return ObjectRef(None, serialize.Packed(None, ((seg.path, 0, seg.nbytes),), (seg,)))
    assert isinstance(packed, serialize.Packed)
    return ObjectRef(None, packed)
