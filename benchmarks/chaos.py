"""Chaos run: the W7 task graph while a random worker is SIGKILLed every 100 ms.

::

    python -m benchmarks.chaos [--runs 20] [--leaves 4096] [--interval 0.1]
                               [--min-kills 5] [--workers 2] [--timeout 120]

Each run builds a fresh executor, sums the binary tree of ``--leaves`` leaf
tasks (8,191 tasks for 4,096 leaves, futures passed as arguments), and kills
a random worker process with SIGKILL every ``--interval`` seconds meanwhile
(:func:`pel.testing.kill_workers`). One tree takes about 0.1 s now, less than
an interval, so a run sums it again and again (each checked) until at least
``--min-kills`` workers were killed under it. A run passes when every sum is right, it
finishes within ``--timeout`` seconds, and after shutdown no worker process it
ever saw is alive. Prints one line per run and a summary; exits 1 if any run
failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import pel
from pel.testing import kill_workers, wait_for_exit

from . import workloads as wl


def tree_sum(ex: pel.Executor, leaves: int, timeout: float) -> Any:
    level: list[Any] = [ex.submit(wl.leaf, i) for i in range(leaves)]
    while len(level) > 1:
        level = [ex.submit(wl.add, a, b) for a, b in zip(level[::2], level[1::2], strict=True)]
    return level[0].result(timeout=timeout)


def one_run(seed: int, args: argparse.Namespace) -> tuple[bool, str]:
    start = time.perf_counter()
    expected = wl.w7_expected(args.leaves)
    ex = pel.Executor(args.workers)
    trees = 0
    try:
        with kill_workers(ex, interval=args.interval, seed=seed) as killer:
            try:
                outcome = "ok"
                while outcome == "ok" and (trees == 0 or len(killer.killed) < args.min_kills):
                    got = tree_sum(ex, args.leaves, args.timeout)
                    trees += 1
                    if got != expected:
                        outcome = f"WRONG {got} != {expected}"
            except TimeoutError:
                outcome = f"HANG (no result in {args.timeout:g} s)"
            except Exception as exc:
                outcome = f"ERROR {type(exc).__name__}: {exc}"
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
    left = wait_for_exit(killer.seen, timeout=10)
    if left and outcome == "ok":
        outcome = f"LEAK: worker processes alive after shutdown: {left}"
    seconds = time.perf_counter() - start
    line = (
        f"run {seed + 1:2d}: {outcome:4s}  {trees:3d} trees  {len(killer.killed):2d} workers "
        f"killed  {len(killer.seen):3d} worker processes  {seconds:6.2f} s"
    )
    return outcome == "ok", line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--leaves", type=int, default=4096)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--min-kills", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    print(
        f"chaos: W7 tree of {2 * args.leaves - 1} tasks, {args.workers} workers, "
        f"a worker SIGKILLed every {args.interval:g} s, {args.runs} runs of at least "
        f"{args.min_kills} kills each (pel {pel.__version__})"
    )
    passed = 0
    kills = 0
    for seed in range(args.runs):
        ok, line = one_run(seed, args)
        print(line, flush=True)
        passed += ok
        kills += int(line.split("workers killed")[0].split()[-1])
    print(f"passed {passed}/{args.runs}; {kills} workers killed in all")
    return 0 if passed == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
