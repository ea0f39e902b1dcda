"""Backends: where tasks run. Loaded by name, lazily, so optional ones stay optional."""

from __future__ import annotations

import importlib
from typing import Any

from .._errors import OptionError
from .base import Backend

__all__ = ["BACKENDS", "Backend", "load_backend"]

#: name -> "module:class", imported only when chosen.
BACKENDS = {
    "processes": "pel.backends.processes.pool:ProcessesBackend",
    "threads": "pel.backends.threads:ThreadsBackend",
    "inline": "pel.backends.inline:InlineBackend",
}


def load_backend(name: str) -> type[Backend]:
    if not isinstance(name, str) or name not in BACKENDS:
        raise OptionError(f"unknown backend {name!r}; choose one of {', '.join(sorted(BACKENDS))}")
    module_name, _, class_name = BACKENDS[name].partition(":")
    cls: Any = getattr(importlib.import_module(module_name), class_name)
    return cls  # type: ignore[no-any-return]
