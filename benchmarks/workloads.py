"""Task functions and sizes of the workloads in ``WORKLOADS.md`` (W1-W9).

Everything a worker runs lives here, at module level, so every system can
import it by reference (no system gets to pickle a closure that another one
would import). Nothing here imports a parallel system.
"""

from __future__ import annotations

import os
import time
from collections import namedtuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Kept light: a system whose workers are fresh interpreters (pel, joblib, Dask,
# Ray) imports this module in each worker to find the task function, and W8
# times that. A dataclass here cost ~6 ms per worker (dataclasses, typing).

# -- sizes ------------------------------------------------------------------------

_FULL_SIZES = {
    "w1_tasks": 10_000,
    "w2_items": 200_000,
    "w3_trips": 500,
    "w3_warmup": 50,
    "w4_tasks": 32,
    "w4_task_s": 0.100,
    "w5_tasks": 120,
    "w5_serial_s": 8.0,
    "w5_alpha": 1.3,
    "w5_seed": 20240611,
    "w6_mb": 400,
    "w6_tasks": 8,
    "w6r_mb": 50,  # W6-results: each of w6_tasks tasks returns this much
    "w6b_mb": 1024,  # W6-bandwidth: put + zero-copy read of this much
    "w7_leaves": 4_096,
    "w9_tasks": 20,
    "w9_task_s": 0.050,
    "w9_crasher": 7,
    "w9_timeout_s": 20.0,
}

#: How big each workload is; ``FULL`` is the definition, ``QUICK`` a smoke run.
Sizes = namedtuple("Sizes", list(_FULL_SIZES), defaults=list(_FULL_SIZES.values()))  # type: ignore[misc]

FULL = Sizes()
QUICK = Sizes(
    w1_tasks=1_000,
    w2_items=20_000,
    w3_trips=100,
    w3_warmup=10,
    w4_tasks=8,
    w4_task_s=0.050,
    w5_tasks=40,
    w5_serial_s=1.0,
    w6_mb=40,
    w6r_mb=5,
    w6b_mb=64,
    w7_leaves=256,
    w9_timeout_s=5.0,
)


def sizes_dict(sizes: Sizes) -> dict[str, Any]:
    return dict(sizes._asdict())


# -- W1, W2, W3: no-op --------------------------------------------------------------


def noop(i: Any) -> Any:
    """W1/W2/W3: ``f(i) -> i``."""
    return i


# -- W4, W5: pure-Python CPU --------------------------------------------------------


def spin(iterations: int) -> float:
    """Burn ``iterations`` rounds of pure-Python arithmetic (holds the GIL).

    Returns the CPU seconds this thread spent, so a workload can compute its
    lower bound from what the tasks really cost in that run rather than from
    the calibration alone (a worker sharing its core does not inflate it).
    """
    start = time.thread_time()
    x = 0
    for i in range(iterations):
        x = (x + i * i) % 1_000_003
    if x < 0:  # never true; keeps the loop from looking dead
        return -1.0
    return time.thread_time() - start


def calibrate(target_s: float = 0.1) -> float:
    """Iterations of :func:`spin` per second on this machine, measured at ``target_s``."""
    n = 100_000
    t0 = time.perf_counter()
    spin(n)
    rate = n / (time.perf_counter() - t0)
    for _ in range(2):  # refine at the target size (warm caches, steady clock)
        m = max(1, int(rate * target_s))
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            spin(m)
            times.append(time.perf_counter() - t0)
        rate = m / sorted(times)[1]
    return rate


def w4_iterations(rate: float, sizes: Sizes) -> list[int]:
    return [max(1, int(rate * sizes.w4_task_s))] * sizes.w4_tasks


def w5_iterations(rate: float, sizes: Sizes) -> list[int]:
    """Seeded Pareto(alpha) task sizes scaled to ``w5_serial_s`` in total, fixed order."""
    import random  # here: the module stays light for workers (see the top)

    rng = random.Random(sizes.w5_seed)
    raw = [rng.paretovariate(sizes.w5_alpha) for _ in range(sizes.w5_tasks)]
    scale = sizes.w5_serial_s / sum(raw)
    return [max(1, int(r * scale * rate)) for r in raw]


# -- W6: big argument ---------------------------------------------------------------


def make_array(mb: int) -> Any:
    import numpy as np

    n = mb * 1024 * 1024 // 8
    return np.arange(n, dtype=np.float64)


def sum_part(array: Any, part: int, parts: int) -> float:
    """W6: sum one ``1/parts`` slice of ``array``."""
    n = len(array)
    lo = n * part // parts
    hi = n * (part + 1) // parts
    return float(array[lo:hi].sum())


def w6_expected(mb: int) -> float:
    n = mb * 1024 * 1024 // 8
    return float(n * (n - 1) // 2)


def make_part(i: int, mb: int) -> Any:
    """W6-results: a ``mb`` MB float64 array of ``i``."""
    import numpy as np

    return np.full(mb * 1024 * 1024 // 8, float(i), dtype=np.float64)


def sum_parts(parts: list[Any]) -> float:
    """W6-results: the ninth task, summing every part."""
    return float(sum(float(p.sum()) for p in parts))


def sum_parts_star(*parts: Any) -> float:
    """W6-results for Ray, which resolves only top-level ObjectRef arguments."""
    return sum_parts(list(parts))


def w6r_expected(mb: int, tasks: int) -> float:
    return float(mb * 1024 * 1024 // 8 * sum(range(tasks)))


def read_all(array: Any) -> float:
    """W6-bandwidth: read every byte of ``array`` (a sum)."""
    return float(array.sum())


# -- W7: tree ---------------------------------------------------------------------


def leaf(i: int) -> int:
    return i


def add(a: int, b: int) -> int:
    return a + b


def w7_expected(leaves: int) -> int:
    return leaves * (leaves - 1) // 2


# -- W9: a task that kills its worker once ---------------------------------------


def crash_once(i: int, crasher: int, marker_dir: str, seconds: float) -> int:
    """Sleep ``seconds``; task ``crasher`` kills its worker the first time it runs.

    "First time" is an ``O_EXCL`` marker file in ``marker_dir``: a retry of the
    same task (on a fresh worker) finds the marker and succeeds.
    """
    time.sleep(seconds)
    if i == crasher:
        try:
            fd = os.open(
                os.path.join(marker_dir, f"crashed-{i}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY
            )
        except FileExistsError:
            return i
        os.close(fd)
        os._exit(1)
    return i
