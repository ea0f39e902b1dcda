"""Pickling calls and results: pickle protocol 5, cloudpickle when needed.

The fast path is the C pickler: plain functions, numbers, strings, arrays. It
falls back to cloudpickle for what the C pickler refuses (lambdas, closures,
classes and functions defined in ``__main__`` or in a function). ``__main__``
objects always go by value: a worker started by forkserver or spawn cannot
import ``__main__`` when it is an interactive session or ``python -c``.

Errors name the culprit: which argument of which task could not be pickled,
and why. Finding out which argument failed re-pickles them one by one, which
is only done once something has already failed.
"""

from __future__ import annotations

import functools
import io
import pickle
import sys
from collections.abc import Callable
from typing import Any

from .._errors import RemoteTraceback, SerializationError

__all__ = ["describe_failure", "dumps", "dumps_function", "dumps_with_tracebacks", "loads"]

PROTOCOL = 5
loads = pickle.loads


def _cloudpickle() -> Any:
    # Imported on first use: it costs ~25 ms, paid only by programs that
    # pickle lambdas, closures or __main__ objects (and by every start-up
    # of every worker, if imported at the top).
    import cloudpickle

    return cloudpickle


@functools.cache
def _traceback_pickler() -> Any:
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


def _main_is_importable() -> bool:
    """Can a worker import ``__main__`` (a script), or is it a REPL/``-c``?

    Asked per pickle, so the answer is kept for as long as ``__main__`` is the
    same module object.
    """
    global _main_checked
    main = sys.modules.get("__main__")
    if _main_checked[0] is not main:
        importable = bool(getattr(main, "__file__", None)) and not hasattr(sys, "ps1")
        _main_checked = (main, importable)
    return _main_checked[1]


def dumps(obj: Any) -> bytes:
    """Pickle ``obj``; C pickler first, cloudpickle when it refuses.

    Exceptions from pickling propagate unchanged (callers add context);
    ``FutureFoundError`` in particular must reach the caller.
    """
    if not _main_is_importable():
        # Instances of classes defined in an interactive __main__ must travel
        # by value; cloudpickle's hook only runs for non-builtin objects.
        return _cloud_dumps(obj)
    try:
        return pickle.dumps(obj, PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        # "cannot pickle 'X' object" is final: cloudpickle would refuse too.
        if isinstance(exc, TypeError) and "cannot pickle" in str(exc):
            raise
        return _cloud_dumps(obj)


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


def describe_failure(
    task_name: str, args: tuple[Any, ...], kwargs: dict[str, Any], exc: BaseException
) -> SerializationError:
    """Build the error for a call that failed to pickle, naming the argument."""
    culprit = "its arguments"
    for label, value in [(f"argument {i}", a) for i, a in enumerate(args)] + [
        (f"keyword argument {k!r}", v) for k, v in kwargs.items()
    ]:
        try:
            dumps(value)
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
