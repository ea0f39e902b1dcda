"""Finding futures in a task's arguments, and putting results in their place.

The rule, the same on every backend: a pel future is a dependency when it is an
argument, or sits at any depth inside lists, tuples, sets, frozensets and dict
values (the builtin types exactly; not subclasses such as namedtuples). Nothing
else is looked into: arrays, dataclasses, your own classes and dict keys are
opaque.

The cost is kept off the hot path:

* A container is first checked in one C-speed pass over the *types* of its
  items (``frozenset.isdisjoint(map(type, items))``), so a flat list of a
  million numbers costs a few milliseconds and no Python code runs per item.
  Only containers that hold futures or other containers are walked in Python.
* The processes backend does not even do that: it pickles the call anyway, and
  a future met by the pickler raises :class:`FutureFoundError`, which is the
  only case where the walk runs (see ``transport.serialize``).

Found futures are replaced by :class:`Dep` placeholders numbered in the order
they were met (a future passed twice is one dependency). In a worker process a
placeholder unpickles straight into the dependency's value; in-process backends
call :func:`substitute`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

TYPE_CHECKING = False  # not typing's: worker processes import this module as they start
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Dep", "extract", "place", "put_in_place", "replace", "resolve_dep", "substitute"]

_CONTAINERS: frozenset[type] = frozenset({list, tuple, set, frozenset, dict})


class Dep:
    """Placeholder for the value of the ``index``-th dependency of a call."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> tuple[Any, tuple[int]]:
        return (resolve_dep, (self.index,))

    def __repr__(self) -> str:
        return f"Dep({self.index})"


# Set by a worker around unpickling one call; a worker runs one call at a time.
_dep_values: Sequence[Any] = ()


def set_dep_values(values: Sequence[Any]) -> None:
    global _dep_values
    _dep_values = values


def resolve_dep(index: int) -> Any:
    return _dep_values[index]


def _replace(obj: Any, leaf: type, stop: frozenset[type], fn: Callable[[Any], Any]) -> Any:
    t = type(obj)
    if t is leaf:
        return fn(obj)
    if t is dict:
        if stop.isdisjoint(map(type, obj.values())):
            return obj
        values = [_replace(v, leaf, stop, fn) for v in obj.values()]
        if _same(values, obj.values()):
            return obj
        return dict(zip(obj, values))  # noqa: B905 - same dict, same length
    if t in _CONTAINERS:
        if stop.isdisjoint(map(type, obj)):
            return obj
        items = [_replace(x, leaf, stop, fn) for x in obj]
        if _same(items, obj):
            return obj  # nested containers without futures: keep the caller's objects
        return items if t is list else t(items)
    return obj


def _same(new: list[Any], old: Any) -> bool:
    return all(map(operator.is_, new, old))


def _replace_call(
    args: tuple[Any, ...], kwargs: dict[str, Any], leaf: type, fn: Callable[[Any], Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    stop = _CONTAINERS | {leaf}
    if stop.isdisjoint(map(type, args)) and stop.isdisjoint(map(type, kwargs.values())):
        return args, kwargs
    return _replace(args, leaf, stop, fn), _replace(kwargs, leaf, stop, fn)


def replace(
    args: tuple[Any, ...], kwargs: dict[str, Any], leaf: type, fn: Callable[[Any], Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Replace each ``leaf`` object found where futures are looked for by ``fn(obj)``."""
    return _replace_call(args, kwargs, leaf, fn)


def extract(
    args: tuple[Any, ...], kwargs: dict[str, Any], future_type: type
) -> tuple[tuple[Any, ...], dict[str, Any], list[Any]]:
    """Replace futures of ``future_type`` by :class:`Dep`; return them in order."""
    found: list[Any] = []
    index: dict[int, Dep] = {}
    if not kwargs and _CONTAINERS.isdisjoint(map(type, args)):
        # Futures as plain arguments only (a task graph's usual call): one pass.
        flat = []
        for arg in args:
            if type(arg) is future_type:
                dep = index.get(id(arg))
                if dep is None:
                    dep = index[id(arg)] = Dep(len(found))
                    found.append(arg)
                arg = dep
            flat.append(arg)
        return tuple(flat), kwargs, found

    def placeholder(fut: Any) -> Dep:
        dep = index.get(id(fut))
        if dep is None:
            dep = index[id(fut)] = Dep(len(found))
            found.append(fut)
        return dep

    new_args, new_kwargs = _replace_call(args, kwargs, future_type, placeholder)
    return new_args, new_kwargs, found


def place(
    args: tuple[Any, ...], kwargs: dict[str, Any], future_type: type
) -> tuple[tuple[Any, ...], tuple[int, ...], list[Any]] | None:
    """The usual call of a task graph, made cheap to ship: futures only as
    plain positional arguments, nothing else to look into (no container
    among the arguments, no future or container among the keywords).

    Returns the arguments with ``None`` where the futures were, the places
    as one flat tuple ``(position, dependency index, position, ...)``, and
    the futures (each once); or None for any other call (:func:`extract`
    takes those). A pickle of the first needs no :class:`Dep`: each costs a
    global lookup to pickle. Few objects are made: a task graph keeps them
    until the task is sent, and the cyclic GC walks what lives.
    """
    if not _CONTAINERS.isdisjoint(map(type, args)) or (
        kwargs and not (_CONTAINERS | {future_type}).isdisjoint(map(type, kwargs.values()))
    ):
        return None
    template = list(args)
    places: list[int] = []
    found: list[Any] = []
    for position, arg in enumerate(args):
        if type(arg) is future_type:
            # A future passed twice is one dependency (futures compare by identity).
            if arg in found:
                places += (position, found.index(arg))
            else:
                places += (position, len(found))
                found.append(arg)
            template[position] = None
    return tuple(template), tuple(places), found


def put_in_place(
    args: tuple[Any, ...], places: tuple[int, ...], values: Sequence[Any]
) -> tuple[Any, ...]:
    """Undo :func:`place`: the dependencies' values where their futures were."""
    filled = list(args)
    for i in range(0, len(places), 2):
        filled[places[i]] = values[places[i + 1]]
    return tuple(filled)


def substitute(
    args: tuple[Any, ...], kwargs: dict[str, Any], values: Sequence[Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Put dependency values where :func:`extract` left placeholders."""
    return _replace_call(args, kwargs, Dep, lambda dep: values[dep.index])
