"""Where pel's time goes: the profiles docs/benchmarks.md quotes.

    python -m benchmarks.profile tasks     # per-function CPU per task of W1 (needs yappi)
    python -m benchmarks.profile startup   # W8's pieces: imports, start + first task, shutdown

``tasks`` profiles both of the parent's threads (the caller and pel's runtime
thread) with yappi's CPU clock; yappi slows everything several times, so read
the shares, not the microseconds. ``startup`` times the pieces of W8 under each start method.
"""

from __future__ import annotations

import argparse

TASKS = 50_000


def noop(x: int) -> int:
    return x


def profile_tasks(top: int) -> None:
    import yappi

    import pel

    with pel.Executor(2) as ex:
        ex.submit(noop, 0).result()
        yappi.set_clock_type("cpu")
        yappi.start()
        for _ in range(TASKS // 10_000):
            futures = [ex.submit(noop, i) for i in range(10_000)]
            for future in futures:
                future.result()
        yappi.stop()
    stats = yappi.get_func_stats()
    stats.sort("tsub")
    total = sum(s.tsub for s in stats)
    print(f"parent CPU under yappi: {total / TASKS * 1e6:.1f} us/task (inflated by profiling)")
    print(f"{'share':>6} {'self us':>8} {'calls':>8}  function")
    for s in list(stats)[:top]:
        per_task = s.tsub / TASKS * 1e6
        print(f"{s.tsub / total:6.1%} {per_task:8.2f} {s.ncall:8d}  {s.full_name[-70:]}")


_STARTUP = """
import time
t0 = time.perf_counter()
import pel
t1 = time.perf_counter()
import pel._executor, pel.backends.processes.pool
t2 = time.perf_counter()
ex = pel.Executor(2, mp_context={context})
ex.submit(abs, 1).result()
t3 = time.perf_counter()
ex.shutdown()
t4 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, t4 - t3)
"""


def profile_startup(repeats: int = 5) -> None:
    """W8's pieces, each start method in fresh interpreters; medians."""
    import statistics
    import subprocess
    import sys

    print(
        f"{'start method':<28} {'import pel':>10} {'import rest':>11} {'start+1 task':>12} "
        f"{'shutdown':>9}   (medians of {repeats} fresh `python -c`, seconds)"
    )
    for label, context in [
        ("pel's fork server (default)", "None"),
        ("multiprocessing forkserver", "'forkserver'"),
        ("multiprocessing spawn", "'spawn'"),
    ]:
        runs = []
        for _ in range(repeats):
            out = subprocess.run(
                [sys.executable, "-c", _STARTUP.format(context=context)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            runs.append([float(x) for x in out.split()])
        medians = [statistics.median(column) for column in zip(*runs, strict=True)]
        widths = (10, 11, 12, 9)
        print(
            f"{label:<28} " + " ".join(f"{m:>{w}.3f}" for m, w in zip(medians, widths, strict=True))
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("what", choices=["tasks", "startup"])
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    if args.what == "tasks":
        profile_tasks(args.top)
    else:
        profile_startup()


if __name__ == "__main__":
    main()
