"""Where pel's time goes: the profiles docs/benchmarks.md quotes.

    python -m benchmarks.profile tasks     # per-function CPU per task of W1 (needs yappi)
    python -m benchmarks.profile startup   # import time, first and second worker start

``tasks`` profiles both of the parent's threads (the caller and pel's runtime
thread) with yappi's CPU clock; yappi slows everything several times, so read
the shares, not the microseconds. ``startup`` times the pieces of W8.
"""

from __future__ import annotations

import argparse
import time

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


def profile_startup() -> None:
    start = time.perf_counter()
    from pel.backends.base import BackendOptions
    from pel.backends.processes.pool import ProcessesBackend

    imported = time.perf_counter()
    backend = ProcessesBackend(BackendOptions(2))
    backend.start_worker()
    first = time.perf_counter()
    backend.start_worker()
    second = time.perf_counter()
    backend.close(kill=False)
    closed = time.perf_counter()
    print(
        f"import pel's processes backend {imported - start:.3f} s; first worker (starts the "
        f"forkserver) {first - imported:.3f} s; second worker {second - first:.3f} s; "
        f"close {closed - second:.3f} s"
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
