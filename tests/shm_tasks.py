"""Task functions of the data-plane tests; importable by worker processes."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

MB = 1 << 20


def backing_file(obj: Any) -> str | None:
    """The file whose mapping holds ``obj``'s buffer in this process, from /proc/self/maps.

    ``None`` when the buffer is ordinary (private, anonymous) memory: then it
    was copied. A path means the memory *is* that file's pages: zero-copy.
    """
    if isinstance(obj, np.ndarray):
        address = obj.__array_interface__["data"][0]
    else:
        address = np.frombuffer(obj, dtype=np.uint8).__array_interface__["data"][0]
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            if lo <= address < hi:
                return fields[5].strip() if len(fields) == 6 else None
    return None


def describe(array: Any) -> tuple[str | None, bool, float]:
    """Where the task's array lives, whether it is writable, and its sum."""
    return backing_file(array), bool(array.flags.writeable), float(array.sum())


def describe_all(arrays: list[Any]) -> list[tuple[str | None, bool, float]]:
    return [describe(a) for a in arrays]


def full(nbytes: int, value: float) -> Any:
    return np.full(nbytes // 8, value, dtype=np.float64)


def write_first(array: Any) -> None:
    array[0] = 1.0


def write_to_copy(array: Any) -> float:
    mine = array.copy()  # the documented way to a writable array
    mine[0] = 1.0
    return float(mine[0])


def total(arrays: list[Any]) -> float:
    return float(sum(float(a.sum()) for a in arrays))


def size_and_type(obj: Any) -> tuple[str, int, bool]:
    readonly = obj.readonly if isinstance(obj, memoryview) else isinstance(obj, bytes)
    return type(obj).__name__, len(obj), readonly


def leave_segment_and_die(array: Any) -> None:
    """Write a segment as if for a result, then die before reporting it.

    The name follows the store's rule, with this worker's pid as creator: the
    parent must sweep it when it sees the worker die.
    """
    path = backing_file(array)
    assert path is not None
    owner, token = os.path.basename(path).split("-")[1:3]
    orphan = os.path.join(os.path.dirname(path), f"pel-{owner}-{token}-{os.getpid()}-999")
    with open(orphan, "wb") as f:
        f.write(b"\0" * MB)
    os._exit(7)


def wait_then_describe(path: str, array: Any) -> tuple[str | None, bool, float]:
    from tasks import wait_for_file

    wait_for_file(path)
    return describe(array)


def imported_by_hint(blob: Any) -> bool:
    """Was ``blob``'s module imported by pel's preload hint (before this call)?"""
    import sys

    return bool(sys.modules[type(blob).__module__].IMPORTED_BY_HINT)


def has_module(name: str) -> bool:
    import sys

    return name in sys.modules


def initial_environment() -> dict[str, str]:
    """The environment this process started with (a forked worker: its fork server's)."""
    with open("/proc/self/environ", "rb") as f:
        pairs = [item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item]
    return {k.decode(): v.decode() for k, v in pairs}


def native_threads() -> tuple[dict[str, str | None], int]:
    """The thread-pool variables here, and this process's threads after numpy loaded."""
    import numpy  # noqa: F401  (its BLAS starts its thread pool as it loads)

    from pel.backends.processes.native_threads import VARIABLES

    return {name: os.environ.get(name) for name in VARIABLES}, len(os.listdir("/proc/self/task"))
