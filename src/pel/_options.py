"""Checking the options of an ``Executor`` that are more than a type: sizes
given as strings (``"2GiB"``), and the data plane's."""

from __future__ import annotations

import os

from ._errors import OptionError

__all__ = ["check_data_plane", "parse_size"]

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_size(size: object, what: str = "worker_memory_limit") -> int:
    """Bytes from an int or a string such as ``"512MiB"`` or ``"2 GB"``."""
    if isinstance(size, int) and not isinstance(size, bool):
        number, unit = float(size), ""
    elif isinstance(size, str):
        text = size.strip().lower()
        digits = text.rstrip("abcdefghijklmnopqrstuvwxyz ")
        unit = text[len(digits) :].strip()
        try:
            number = float(digits)
        except ValueError:
            number = -1.0
        if unit not in _SIZE_UNITS:
            number = -1.0
    else:
        number, unit = -1.0, ""
    if not number > 0:
        raise OptionError(
            f"{what} must be a positive number of bytes or a string such as '2GiB', got {size!r}"
        )
    return int(number * _SIZE_UNITS[unit])


def check_data_plane(threshold: object, limit: object, spill_dir: object) -> None:
    for option, value in (("shm_threshold", threshold), ("shm_limit", limit)):
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise OptionError(f"{option} must be an int (bytes) or None, got {value!r}")
        if value < (1 if option == "shm_threshold" else 0):
            raise OptionError(f"{option} must be at least 1 byte, got {value}")
    if spill_dir is None or spill_dir is False:
        return
    if not isinstance(spill_dir, (str, os.PathLike)):
        raise OptionError(f"spill_dir must be a path, None or False, got {spill_dir!r}")
    path = os.fspath(spill_dir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise OptionError(f"spill_dir must be a directory, and {path!r} is not one")
