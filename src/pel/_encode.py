"""What a call becomes for the backend: its payload and its dependencies.

Runs in the submitting thread, once per task, so the two commonest calls are
cut short: scalars only (nothing in them can go out of band or name
``__main__``: one ``pickle.dumps``), and a graph node whose arguments are all
distinct futures (its payload depends only on how many: made once).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import _arguments, _refs
from ._errors import ForeignFutureError, SerializationError, SharedMemoryError
from ._futures import Future, FutureFoundError
from ._refs import ObjectRef
from .transport import serialize

if TYPE_CHECKING:
    from ._runtime import Runtime
    from .backends.base import Backend

__all__ = ["check_owner", "encode_call", "futures_only"]

#: Argument types whose pickle holds nothing but themselves.
_SCALARS = frozenset({int, float, str, bool, type(None)})
#: The payload of a call of n distinct futures, by n, for n up to _FUTURES_ONLY_KEPT.
_FUTURES_ONLY: dict[int, bytes] = {}
_FUTURES_ONLY_KEPT = 16


def encode_call(
    backend: Backend, runtime: Runtime, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, Sequence[Future[Any]]]:
    """A call as the backend takes it, and the futures it depends on.

    For a pickling backend, the payload is the pickle of ``(args, kwargs)``
    (large buffers out of band), or of ``(args, kwargs, places)`` when
    futures are plain positional arguments (see :func:`_arguments.place`);
    otherwise the arguments themselves, futures replaced by placeholders.
    """
    store = backend.store
    if not backend.pickles:
        if _refs.made:  # an ObjectRef stands for its object: put it in place
            args, kwargs = _arguments.replace(args, kwargs, ObjectRef, ObjectRef._get)
        new_args, new_kwargs, deps = _arguments.extract(args, kwargs, Future)
        check_owner(runtime, name, deps)
        return (new_args, new_kwargs), deps
    if not kwargs:
        # The two commonest calls, cut short (see the module docstring).
        if _SCALARS.issuperset(map(type, args)):
            return pickle.dumps((args, kwargs), serialize.PROTOCOL), ()
        payload = futures_only(args)
        if payload is not None:
            # The arguments are the dependencies, each once: the tuple serves
            # as they are, with no list to keep (and for the GC to walk).
            check_owner(runtime, name, args)
            return payload, args
    # A future as a plain argument (a task graph) is seen at C speed; one
    # deeper down makes the pickler raise FutureFoundError.
    if Future not in map(type, args) and (not kwargs or Future not in map(type, kwargs.values())):
        try:
            return serialize.dumps_oob((args, kwargs), store), ()
        except FutureFoundError:
            pass  # the call has futures in it: find them, then pickle again
        except SharedMemoryError:
            raise  # it names the size and the limit; the arguments are fine
        except Exception as exc:
            raise serialize.describe_failure(name, args, kwargs, exc) from None
    placed = _arguments.place(args, kwargs, Future)
    if placed is not None:
        # Futures as plain arguments: the worker puts their values in
        # place, so the pickle holds no placeholder (see _arguments.place).
        new_args, places, deps = placed
        new_kwargs = kwargs
    else:
        new_args, new_kwargs, deps = _arguments.extract(args, kwargs, Future)
    check_owner(runtime, name, deps)
    try:
        if placed is not None:
            return serialize.dumps_oob((new_args, new_kwargs, places), store), deps
        return serialize.dumps_oob((new_args, new_kwargs), store), deps
    except FutureFoundError as found:
        raise SerializationError(
            f"task {name!r}: a pel future is nested inside an object pel does not look "
            f"into ({found.args[0]!r}); futures are dependencies only as arguments or in "
            f"lists, tuples, sets and dict values. Pass it as an argument of its own."
        ) from None
    except SharedMemoryError:
        raise
    except Exception as exc:
        raise serialize.describe_failure(name, new_args, new_kwargs, exc) from None


def futures_only(args: tuple[Any, ...]) -> bytes | None:
    """The payload of a call whose arguments are distinct futures, all of
    them, as :func:`_arguments.place` would make it; else None."""
    for arg in args:
        if type(arg) is not Future:
            return None
    n = len(args)
    if n > 1 and (args[0] is args[1] if n == 2 else len(set(map(id, args))) < n):
        return None
    payload = _FUTURES_ONLY.get(n)
    if payload is None:
        places = tuple(i for position in range(n) for i in (position, position))
        payload = pickle.dumps(((None,) * n, {}, places), serialize.PROTOCOL)
        if n <= _FUTURES_ONLY_KEPT:
            _FUTURES_ONLY[n] = payload
    return payload


def check_owner(runtime: Runtime, name: str, deps: Sequence[Future[Any]]) -> None:
    """Futures of another executor are refused, naming the task."""
    for dep in deps:
        if dep._owner is not runtime:
            raise ForeignFutureError(
                f"task {name!r} was given {dep!r}, a future of another executor; "
                f"pass its result (dep.result()) instead"
            )
