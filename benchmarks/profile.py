"""Where pel's time goes: the profiles docs/benchmarks.md quotes.

    python -m benchmarks.profile tasks     # per-function CPU per task of W1 (needs yappi)
    python -m benchmarks.profile graph     # the same for W7's tree
    python -m benchmarks.profile startup   # W8's pieces: imports, start + first task, shutdown
    python -m benchmarks.profile shmwrite  # W6's floor: writing 400 MB into /dev/shm
    python -m benchmarks.profile gc        # W7 with and without the cyclic GC

``tasks`` profiles both of the parent's threads (the caller and pel's runtime
thread) with yappi's CPU clock; yappi slows everything several times, so read
the shares, not the microseconds. ``startup`` times the pieces of W8 under each start method.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

TASKS = 50_000


def noop(x: int) -> int:
    return x


def _print_profile(stats: Any, tasks: int, top: int) -> None:
    stats.sort("tsub")
    total = sum(s.tsub for s in stats)
    print(f"parent CPU under yappi: {total / tasks * 1e6:.1f} us/task (inflated by profiling)")
    print(f"{'share':>6} {'self us':>8} {'calls':>8}  function")
    for s in list(stats)[:top]:
        per_task = s.tsub / tasks * 1e6
        print(f"{s.tsub / total:6.1%} {per_task:8.2f} {s.ncall:8d}  {s.full_name[-70:]}")


def profile_tasks(top: int) -> None:
    """W1's shape: 10,000 no-op submits at a time, 50,000 in all."""
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
    _print_profile(yappi.get_func_stats(), TASKS, top)


def profile_graph(top: int) -> None:
    """W7's tree (8,191 tasks, futures as arguments), 5 times."""
    import yappi

    import pel

    from . import workloads as wl

    def tree(ex: pel.Executor, leaves: int) -> Any:
        level: list[Any] = [ex.submit(wl.leaf, i) for i in range(leaves)]
        while len(level) > 1:
            level = [ex.submit(wl.add, a, b) for a, b in zip(level[::2], level[1::2], strict=True)]
        return level[0].result()

    with pel.Executor(2) as ex:
        tree(ex, 256)
        yappi.set_clock_type("cpu")
        yappi.start()
        for _ in range(5):
            tree(ex, 4096)
        yappi.stop()
    _print_profile(yappi.get_func_stats(), 5 * 8191, top)


_GC = """
import gc, resource, sys, time
sys.path[:0] = {path!r}
import pel
from benchmarks import workloads as wl

def tree(ex, leaves):
    level = [ex.submit(wl.leaf, i) for i in range(leaves)]
    while len(level) > 1:
        level = [ex.submit(wl.add, a, b) for a, b in zip(level[::2], level[1::2])]
    return level[0].result()

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

if __name__ == "__main__":
    if {off}:
        gc.disable()
    with pel.Executor(2) as ex:
        [f.result() for f in [ex.submit(wl.noop, i) for i in range(4)]]  # as W7 warms
        t0 = time.perf_counter()
        tree(ex, 4096)
        first = 8191 / (time.perf_counter() - t0)
        per_task = []
        for _ in range(12):
            c0 = cpu()
            tree(ex, 4096)
            per_task.append((cpu() - c0) / 8191 * 1e6)
    per_task.sort()
    print(first, per_task[len(per_task) // 2])
"""


def profile_gc(runs: int = 3) -> None:
    """W7's tree in fresh processes, the cyclic GC on and off: the first tree's
    tasks/s (as W7 runs), then the median parent CPU per task over 12 more."""
    import subprocess
    import sys

    print(
        f"{'cyclic GC':<10} {'first tree tasks/s':>30} {'warm: parent CPU us/task':>36}"
        f"   ({runs} fresh processes each)"
    )
    for label, off in [("on", False), ("off", True)]:
        firsts, warms = [], []
        for _ in range(runs):
            out = subprocess.run(
                [sys.executable, "-c", _GC.format(path=sys.path, off=off)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            first, warm = (float(x) for x in out.split())
            firsts.append(f"{first:,.0f}")
            warms.append(f"{warm:.2f}")
        print(f"{label:<10} {' '.join(firsts):>30} {' '.join(warms):>36}")


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


def profile_shm_write(mb: int = 400) -> None:
    """How fast a buffer can be written into /dev/shm here, by method (W6's floor)."""
    import mmap
    import os
    import threading

    data = memoryview(bytearray(b"\x01") * (mb * 2**20))
    size = data.nbytes

    def by_write(fd: int) -> None:
        os.write(fd, data)

    def by_mmap(fd: int) -> None:
        os.ftruncate(fd, size)
        with mmap.mmap(fd, size) as mapping:
            mapping[:] = data

    def by_two_threads(fd: int) -> None:
        os.ftruncate(fd, size)
        half = size // 2
        other = threading.Thread(target=os.pwrite, args=(fd, data[half:], half))
        other.start()
        os.pwrite(fd, data[:half], 0)
        other.join()

    print(f"writing {mb} MB into a new /dev/shm file, best of 5:")
    for label, write in [
        ("os.write (what pel does)", by_write),
        ("mmap + copy", by_mmap),
        ("two threads, pwrite", by_two_threads),
    ]:
        best = float("inf")
        for i in range(5):
            path = f"/dev/shm/pel-profile-{os.getpid()}-{i}"
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
            try:
                start = time.perf_counter()
                write(fd)
                best = min(best, time.perf_counter() - start)
            finally:
                os.close(fd)
                os.unlink(path)
        print(f"  {label:26} {size / best / 1e9:5.2f} GB/s")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("what", choices=["tasks", "graph", "startup", "shmwrite", "gc"])
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    if args.what == "tasks":
        profile_tasks(args.top)
    elif args.what == "graph":
        profile_graph(args.top)
    elif args.what == "startup":
        profile_startup()
    elif args.what == "gc":
        profile_gc()
    else:
        profile_shm_write()


if __name__ == "__main__":
    main()
