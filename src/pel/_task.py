"""Task options and the ``@pel.task`` decorator.

Options are an immutable value validated once, at construction, so a bad value
fails where it is written rather than when the task runs. ``@pel.task`` wraps a
function without changing how it is called: calling a :class:`TaskFunction`
runs the function here; submitting it uses its options as defaults.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar, overload

from ._errors import OptionError
from ._value import Value

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["TaskFunction", "TaskOptions", "TaskPolicy", "task"]


#: A worker crash (or a timeout) is retried this many times by default.
DEFAULT_RETRIES = 3
#: The first retry waits about this long; each next one twice as long.
DEFAULT_RETRY_DELAY = 0.05


class TaskOptions(Value):
    """Per-task options; ``None`` means "the executor's default".

    ``priority``: higher runs first among ready tasks. ``retries``: how many
    times a task is run again after its worker died under it, it timed out, or
    it raised one of ``retry_on``. ``timeout``: seconds one attempt may run
    before its worker is killed (``math.inf``: no limit). ``retry_delay``: the
    wait before the first retry, doubled for each next one, with jitter.
    Immutable: :meth:`replace` makes a changed copy.
    """

    __slots__ = ("name", "priority", "retries", "retry_delay", "retry_on", "timeout")

    name: str | None
    priority: int
    retries: int | None
    retry_on: tuple[type[BaseException], ...] | None
    timeout: float | None
    retry_delay: float | None

    def __init__(
        self,
        name: str | None = None,
        priority: int = 0,
        retries: int | None = None,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
        timeout: float | None = None,
        retry_delay: float | None = None,
    ) -> None:
        if name is not None and not isinstance(name, str):
            raise OptionError(f"task option 'name' must be a str, got {name!r}")
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise OptionError(f"task option 'priority' must be an int, got {priority!r}")
        if retries is not None:
            check_retries(retries, "task option 'retries'")
        if retry_on is not None:
            retry_on = check_retry_on(retry_on, "task option 'retry_on'")
        if timeout is not None:
            check_timeout(timeout, "task option 'timeout'")
        if retry_delay is not None:
            check_delay(retry_delay, "task option 'retry_delay'")
        for field, value in (
            ("name", name),
            ("priority", priority),
            ("retries", retries),
            ("retry_on", retry_on),
            ("timeout", timeout),
            ("retry_delay", retry_delay),
        ):
            object.__setattr__(self, field, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"TaskOptions are immutable (setting {name!r}); use replace()")

    def __reduce__(self) -> tuple[Any, tuple[object, ...]]:
        return (
            TaskOptions,
            (self.name, self.priority, self.retries, self.retry_on, self.timeout, self.retry_delay),
        )

    def replace(self, **changes: Any) -> TaskOptions:
        """A copy with some options changed, validated like the original."""
        unknown = set(changes) - set(self.__slots__)
        if unknown:
            raise OptionError(f"unknown task option(s): {', '.join(sorted(unknown))}")
        fields = {name: getattr(self, name) for name in self.__slots__}
        return TaskOptions(**{**fields, **changes})


def check_retries(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise OptionError(f"{what} must be an int >= 0, got {value!r}")
    return value


def check_retry_on(value: object, what: str) -> tuple[type[BaseException], ...]:
    """One exception class or a tuple of them, as ``except`` takes."""
    classes = value if isinstance(value, tuple) else (value,)
    for cls in classes:
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise OptionError(f"{what} must be an exception class or a tuple of them, got {cls!r}")
    return classes


def check_timeout(value: object, what: str) -> float:
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not value > 0  # also rejects NaN
    ):
        raise OptionError(f"{what} must be a number of seconds > 0 (math.inf: none), got {value!r}")
    return float(value)


def check_delay(value: object, what: str) -> float:
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not 0 <= value < float("inf")
    ):
        raise OptionError(f"{what} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


class TaskPolicy(Value):
    """What a task gets when it fails: its options merged over the executor's.
    Treated as immutable (one is shared by every task of a function)."""

    __slots__ = ("retries", "retry_delay", "retry_on", "timeout")

    def __init__(
        self,
        retries: int = DEFAULT_RETRIES,
        retry_on: tuple[type[BaseException], ...] = (),
        timeout: float | None = None,  # seconds per attempt; None: no limit
        retry_delay: float = DEFAULT_RETRY_DELAY,
    ) -> None:
        self.retries = retries
        self.retry_on = retry_on
        self.timeout = timeout
        self.retry_delay = retry_delay

    def merged(self, options: TaskOptions | None) -> TaskPolicy:
        if options is None:
            return self
        timeout = self.timeout if options.timeout is None else options.timeout
        return TaskPolicy(
            self.retries if options.retries is None else options.retries,
            self.retry_on if options.retry_on is None else options.retry_on,
            None if timeout == float("inf") else timeout,
            self.retry_delay if options.retry_delay is None else options.retry_delay,
        )

    def is_retriable(self, error: BaseException) -> bool:
        return bool(self.retry_on) and isinstance(error, self.retry_on)


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
        return TaskFunction(self.fn, self.options.replace(**changes))

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
    fn: Callable[P, R],
    /,
    *,
    name: str | None = ...,
    priority: int = ...,
    retries: int | None = ...,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = ...,
    timeout: float | None = ...,
    retry_delay: float | None = ...,
) -> TaskFunction[P, R]: ...
@overload
def task(
    fn: None = ...,
    /,
    *,
    name: str | None = ...,
    priority: int = ...,
    retries: int | None = ...,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = ...,
    timeout: float | None = ...,
    retry_delay: float | None = ...,
) -> Callable[[Callable[P, R]], TaskFunction[P, R]]: ...


def task(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    priority: int = 0,
    retries: int | None = None,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
    timeout: float | None = None,
    retry_delay: float | None = None,
) -> TaskFunction[P, R] | Callable[[Callable[P, R]], TaskFunction[P, R]]:
    """Give a function default task options: ``@pel.task(retries=5)`` or ``pel.task(fn, ...)``."""
    options = TaskOptions(
        name=name,
        priority=priority,
        retries=retries,
        retry_on=retry_on,  # normalised to a tuple
        timeout=timeout,
        retry_delay=retry_delay,
    )
    if fn is None:
        return lambda f: TaskFunction(f, options)
    return TaskFunction(fn, options)


def split_options(fn: Callable[..., Any]) -> tuple[Callable[..., Any], TaskOptions | None]:
    """The callable to ship and its options, if it was made by :func:`task`."""
    if type(fn) is TaskFunction:
        return fn, fn.options
    return fn, None
