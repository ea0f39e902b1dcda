"""Backends: where tasks run. Loaded by name, lazily, so optional ones stay optional."""

from __future__ import annotations

import importlib
import os

TYPE_CHECKING = False  # not typing's: worker processes import this package
if TYPE_CHECKING:
    from .base import Backend

__all__ = ["BACKENDS", "Backend", "load_backend", "usable_cores"]

#: name -> "module:class", imported only when chosen.
BACKENDS = {
    "processes": "pel.backends.processes.pool:ProcessesBackend",
    "threads": "pel.backends.threads:ThreadsBackend",
    "inline": "pel.backends.inline:InlineBackend",
}


def __getattr__(name: str) -> object:
    if name == "Backend":  # loaded on first use, like the backends themselves
        from .base import Backend

        return Backend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_backend(name: str) -> type[Backend]:
    if not isinstance(name, str) or name not in BACKENDS:
        from .._errors import OptionError

        raise OptionError(f"unknown backend {name!r}; choose one of {', '.join(sorted(BACKENDS))}")
    module_name, _, class_name = BACKENDS[name].partition(":")
    cls: type[Backend] = getattr(importlib.import_module(module_name), class_name)
    return cls


def usable_cores() -> int:
    """The cores this process may run on (its affinity, where there is one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
