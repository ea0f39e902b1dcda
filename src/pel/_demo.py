"""The showcase behind ``pel demo``: real work, measured against serial.

Two workloads, each run twice in the same process, serially in the caller and
then on pel, so the speedup printed is a ratio of two figures measured
seconds apart on the same machine:

* Monte-Carlo estimate of pi: many independent CPU-bound tasks (``map``).
* A small ETL task graph: make shards, turn each into a histogram of a
  computed feature as soon as its shard exists, then merge the histograms;
  futures passed as arguments are the edges.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from ._executor import Executor


def count_inside(seed: int, samples: int) -> int:
    """Points of the unit square inside the quarter circle (pure Python CPU work)."""
    rng = random.Random(seed)
    inside = 0
    for _ in range(samples):
        x, y = rng.random(), rng.random()
        if x * x + y * y <= 1.0:
            inside += 1
    return inside


def make_shard(seed: int, rows: int) -> list[float]:
    """Simulated readings: each row is the end of a short random walk."""
    rng = random.Random(seed)
    gauss = rng.gauss
    return [100.0 + sum(gauss(0.0, 5.0) for _ in range(9)) for _ in range(rows)]


BINS = 40


def featurize(shard: list[float]) -> list[int]:
    """A feature per row (a few transcendental calls), binned: a small result."""
    counts = [0] * BINS
    for v in shard:
        x = v / 100.0
        feature = math.sin(x) ** 2 + math.log1p(x * x) + math.tanh(x - 1.0) + math.sqrt(x)
        counts[min(BINS - 1, max(0, int(feature * 8.0)))] += 1
    return counts


def combine(histograms: list[list[int]]) -> dict[str, float]:
    counts = [sum(column) for column in zip(*histograms)]  # noqa: B905 - same length
    rows = sum(counts)
    mean_bin = sum(i * c for i, c in enumerate(counts)) / rows
    return {"rows": float(rows), "mean_bin": mean_bin}


@dataclass
class Phase:
    name: str
    tasks: int
    serial_seconds: float
    parallel_seconds: float
    answer: str

    @property
    def speedup(self) -> float:
        return self.serial_seconds / self.parallel_seconds


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def monte_carlo(ex: Executor, tasks: int, samples: int) -> Phase:
    seeds = range(tasks)
    serial_s, serial = _timed(lambda: sum(count_inside(s, samples) for s in seeds))
    par_s, parallel = _timed(lambda: sum(ex.map(count_inside, seeds, [samples] * tasks)))
    assert parallel == serial, "parallel and serial runs must agree exactly"
    estimate = 4.0 * parallel / (tasks * samples)
    return Phase("Monte-Carlo pi (map)", tasks, serial_s, par_s, f"pi ~ {estimate:.5f}")


def task_graph(ex: Executor, shards: int, rows: int) -> Phase:
    def serial() -> dict[str, float]:
        return combine([featurize(make_shard(i, rows)) for i in range(shards)])

    def parallel() -> dict[str, float]:
        made = [ex.submit(make_shard, i, rows) for i in range(shards)]
        features = [ex.submit(featurize, shard) for shard in made]
        return ex.submit(combine, features).result()

    serial_s, expected = _timed(serial)
    par_s, got = _timed(parallel)
    assert got == expected, "parallel and serial runs must agree exactly"
    answer = f"{int(got['rows'])} rows, mean bin {got['mean_bin']:.2f}"
    return Phase("ETL task graph (submit)", 2 * shards + 1, serial_s, par_s, answer)


def run(out: TextIO, workers: int | None = None, scale: float = 1.0) -> list[Phase]:
    with Executor(workers) as ex:
        n = ex.max_workers
        out.write(f"pel demo: {n} worker processes ({ex.backend} backend)\n")
        ex.submit(int).result()  # start the workers before timing anything
        phases = [
            monte_carlo(ex, tasks=max(8, 8 * n), samples=int(600_000 * scale)),
            task_graph(ex, shards=max(4, 4 * n), rows=int(25_000 * scale)),
        ]
    header = f"{'workload':<26} {'tasks':>6} {'serial s':>9} {'pel s':>8} {'speedup':>8}  result"
    out.write(header + "\n" + "-" * len(header) + "\n")
    for p in phases:
        out.write(
            f"{p.name:<26} {p.tasks:>6} {p.serial_seconds:>9.2f} {p.parallel_seconds:>8.2f} "
            f"{p.speedup:>7.2f}x  {p.answer}\n"
        )
    out.write(
        f"speedup = serial time / pel time, both measured in this run on {n} workers "
        f"(ideal: {n}x)\n"
    )
    return phases
