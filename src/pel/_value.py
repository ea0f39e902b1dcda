"""``Value``: the base of pel's small record classes (events, instructions,
reports, options).

They are not dataclasses on purpose. Importing ``dataclasses`` (it brings
``inspect``, ``ast`` and ``dis``) and generating some thirty classes with it
cost about 11 ms of every program's start-up: a third of the gap to
``ProcessPoolExecutor`` on the cold-start benchmark (W8). Each subclass names
its fields in ``__slots__``, in ``__init__`` order, and writes its own
``__init__`` (as fast as a generated one); this base gives them what a
dataclass would: equality and hashing by type and fields, and a repr.
"""

from __future__ import annotations

__all__ = ["Value"]


class Value:
    __slots__ = ()

    def _names(self) -> tuple[str, ...]:
        names: tuple[str, ...] = self.__slots__  # the subclass's
        return names

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._names())

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Value)
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash((type(self), self._fields()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._names())
        return f"{type(self).__name__}({fields})"
