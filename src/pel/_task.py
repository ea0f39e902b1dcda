"""Task options and the ``@pel.task`` decorator.

Options are a frozen dataclass validated once, at construction, so a bad value
fails where it is written rather than when the task runs. ``@pel.task`` wraps a
function without changing how it is called: calling a :class:`TaskFunction`
runs the function here; submitting it uses its options as defaults.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Generic, ParamSpec, TypeVar, overload

from ._errors import OptionError

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["TaskFunction", "TaskOptions", "task"]


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """Per-task options. ``priority``: higher runs first among ready tasks."""

    name: str | None = None
    priority: int = 0

    def __post_init__(self) -> None:
        if self.name is not None and not isinstance(self.name, str):
            raise OptionError(f"task option 'name' must be a str, got {self.name!r}")
        if not isinstance(self.priority, int) or isinstance(self.priority, bool):
            raise OptionError(f"task option 'priority' must be an int, got {self.priority!r}")


class TaskFunction(Generic[P, R]):
    """A function carrying default :class:`TaskOptions`, made by :func:`task`."""

    def __init__(self, fn: Callable[P, R], options: TaskOptions) -> None:
        if not callable(fn):
            raise TypeError(f"pel.task() needs a callable, got {type(fn).__name__} {fn!r}")
        self.fn = fn
        self.options = options
        functools.update_wrapper(self, fn)
        self.__qualname__: str = getattr(fn, "__qualname__", type(fn).__name__)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def with_options(self, **changes: Any) -> TaskFunction[P, R]:
        """A copy with some options changed: ``train.with_options(priority=5)``."""
        return TaskFunction(self.fn, replace(self.options, **changes))

    def __repr__(self) -> str:
        return f"<pel task {self.options.name or self.__qualname__}>"

    def __reduce__(self) -> str | tuple[Any, ...]:
        # A decorated module-level function is found by name: the module
        # attribute *is* this wrapper. Otherwise (pel.task(fn), with_options(),
        # __main__, which a worker may not import) rebuild it from its parts.
        if self.__module__ != "__main__" and _lookup(self.__module__, self.__qualname__) is self:
            return self.__qualname__
        return (TaskFunction, (self.fn, self.options))


def _lookup(module_name: str, qualname: str) -> object:
    obj: object = sys.modules.get(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj


@overload
def task(
    fn: Callable[P, R], /, *, name: str | None = ..., priority: int = ...
) -> TaskFunction[P, R]: ...
@overload
def task(
    fn: None = ..., /, *, name: str | None = ..., priority: int = ...
) -> Callable[[Callable[P, R]], TaskFunction[P, R]]: ...


def task(
    fn: Callable[P, R] | None = None, /, *, name: str | None = None, priority: int = 0
) -> TaskFunction[P, R] | Callable[[Callable[P, R]], TaskFunction[P, R]]:
    """Give a function default task options: ``@pel.task(priority=1)`` or ``pel.task(fn)``."""
    options = TaskOptions(name=name, priority=priority)
    if fn is None:
        return lambda f: TaskFunction(f, options)
    return TaskFunction(fn, options)


def split_options(fn: Callable[..., Any]) -> tuple[Callable[..., Any], TaskOptions | None]:
    """The callable to ship and its options, if it was made by :func:`task`."""
    if type(fn) is TaskFunction:
        return fn, fn.options
    return fn, None
