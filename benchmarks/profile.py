"""Where pel's time goes: the profiles docs/benchmarks.md quotes.

    python -m benchmarks.profile tasks     # per-function CPU per task of W1 (needs yappi)
    python -m benchmarks.profile graph     # the same for W7's tree
    python -m benchmarks.profile startup   # W8's pieces: imports, start + first task, shutdown
    python -m benchmarks.profile shmwrite  # W6's floor: writing 400 MB into /dev/shm
    python -m benchmarks.profile gc        # W7 with and without the cyclic GC
    python -m benchmarks.profile w6parts   # W6's write and tasks: imports ahead, BLAS caps
    python -m benchmarks.profile map       # W2: pel's chunks, and pickling 200,000 ints
    python -m benchmarks.profile threads W7 [--against SRC]  # parent CPU per thread, warm
    python -m benchmarks.profile roundtrip # W3: where one round trip's time goes

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

    def by_two_files(fd: int) -> None:
        # Half each into two files: what one buffer cannot be (a reader maps it whole).
        path = f"/dev/shm/pel-profile-{os.getpid()}-second"
        second = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            half = size // 2
            other = threading.Thread(target=os.write, args=(second, data[half:]))
            other.start()
            os.write(fd, data[:half])
            other.join()
        finally:
            os.close(second)
            os.unlink(path)

    print(f"writing {mb} MB into a new /dev/shm file, best of 5:")
    for label, write in [
        ("os.write (what pel does)", by_write),
        ("mmap + copy", by_mmap),
        ("two threads, pwrite", by_two_threads),
        ("two threads, two files", by_two_files),
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


_W6_PARTS = """
import os, statistics, sys, time
sys.path[:0] = {path!r}
import pel
from benchmarks import workloads as wl

def imports_numpy():
    import numpy
    return 1

if __name__ == "__main__":
    with pel.Executor(2, inner_threads={inner}) as ex:
        [f.result() for f in [ex.submit(wl.noop, i) for i in range(4)]]  # as W6 warms
        if not {hint}:
            ex._backend.store.announce = None  # no imports ahead
        if {numpy_first}:
            [f.result() for f in [ex.submit(imports_numpy) for _ in range(4)]]
        big = wl.make_array(400)
        t0 = time.perf_counter()
        futures = [ex.submit(wl.sum_part, big, i, 8) for i in range(8)]
        t1 = time.perf_counter()
        [f.result() for f in futures]
        t2 = time.perf_counter()
    print(t1 - t0, t2 - t1)
"""


def profile_w6_parts(runs: int = 3) -> None:
    """W6 on pel in fresh processes: the submits (the 400 MB write) and the
    tasks after it, with imports ahead and the BLAS caps on and off."""
    import statistics
    import subprocess
    import sys

    from pel.backends.base import usable_cores

    uncapped = usable_cores()  # OpenBLAS's own default: a thread per core
    print(f"{'W6 on pel, 2 workers':<58} {'submits s':>9} {'tasks s':>8}   (medians of {runs})")
    for label, hint, numpy_first, inner in [
        ("no imports ahead, BLAS uncapped (before)", False, False, uncapped),
        ("no imports ahead, numpy imported before the clock", False, True, uncapped),
        ("imports ahead, BLAS uncapped", True, False, uncapped),
        ("imports ahead, BLAS capped at cores / workers (now)", True, False, None),
    ]:
        parts = []
        for _ in range(runs):
            code = _W6_PARTS.format(path=sys.path, hint=hint, numpy_first=numpy_first, inner=inner)
            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout
            parts.append([float(x) for x in out.split()])
        submits, tasks = (statistics.median(c) for c in zip(*parts, strict=True))
        print(f"{label:<58} {submits:9.3f} {tasks:8.3f}")


def profile_map() -> None:
    """W2 on pel: the chunks one map of 200,000 no-ops is cut into, and what
    pickling 200,000 ints costs (the work every system's parent does)."""
    import array
    import marshal
    import pickle

    import pel
    from pel import _map

    from . import workloads as wl

    sizes: list[int] = []
    next_chunk = _map.MapRun._next_chunk

    def recording(run: Any) -> list[Any]:
        chunk = next_chunk(run)
        if chunk:
            sizes.append(len(chunk))
        return chunk

    items = list(range(200_000))
    with pel.Executor(2) as ex:
        list(ex.map(wl.noop, range(8)))  # as W2 warms
        _map.MapRun._next_chunk = recording  # type: ignore[method-assign]
        try:
            for _ in range(3):
                sizes.clear()
                assert list(ex.map(wl.noop, items)) == items
                print(f"W2 on pel: {len(sizes)} chunks; the largest {max(sizes):,} items")
        finally:
            _map.MapRun._next_chunk = next_chunk  # type: ignore[method-assign]

    def best(step: Any) -> float:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        return min(times) * 1e3

    data = pickle.dumps(items, 5)
    packed = array.array("q", items).tobytes()
    marshalled = marshal.dumps(items)
    print("200,000 ints, best of 5, ms:")
    print(f"  pickle.dumps {best(lambda: pickle.dumps(items, 5)):6.2f}")
    print(f"  pickle.loads {best(lambda: pickle.loads(data)):6.2f}")
    print(f"  array frombytes + tolist {best(lambda: array.array('q', packed).tolist()):6.2f}")
    print(f"  marshal.loads {best(lambda: marshal.loads(marshalled)):6.2f}")


_THREADS = """
import json, sys, threading, time
sys.path[:0] = {path!r}
import pel
from benchmarks import workloads as wl

def thread_cpu(tid):
    with open(f"/proc/self/task/{{tid}}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9

def tree(ex):
    level = [ex.submit(wl.leaf, i) for i in range(4096)]
    while len(level) > 1:
        level = [ex.submit(wl.add, a, b) for a, b in zip(level[::2], level[1::2])]
    return level[0].result()

if __name__ == "__main__":
    items = list(range(200_000))
    with pel.Executor(2) as ex:
        list(ex.map(wl.noop, range(8)))
        runtime = next(t for t in threading.enumerate() if t.name == "pel-runtime").native_id
        main = threading.get_native_id()
        rows = []
        for i in range({runs} + 3):
            c0, r0, t0 = thread_cpu(main), thread_cpu(runtime), time.perf_counter()
            out = list(ex.map(wl.noop, items)) if {w2} else tree(ex)
            rows.append((time.perf_counter() - t0, thread_cpu(main) - c0, thread_cpu(runtime) - r0))
            out = None
    print(json.dumps(rows[3:]))  # the first three warm up
"""


def profile_threads(workload: str, against: str | None, rounds: int, runs: int = 25) -> None:
    """W7's tree or one W2 map, warm, over and over in one process: the
    median wall time and CPU of the caller's thread and of pel's runtime
    thread (Linux: ``/proc/self/task/*/schedstat``). Steadier than a first
    run in a fresh process, so a change of a few percent shows; with
    ``--against`` (``src`` directories, comma-separated), alternates fresh
    processes of this checkout and of those."""
    import json
    import os
    import statistics
    import subprocess
    import sys

    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    sources = [here] + [os.path.abspath(src) for src in (against or "").split(",") if src]
    rows: dict[str, list[list[float]]] = {src: [] for src in sources}
    for _ in range(rounds):
        for src in sources:
            path = [src, *[p for p in sys.path if os.path.abspath(p) != here]]
            code = _THREADS.format(path=path, runs=runs, w2=workload == "W2")
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"the run with {src} failed:\n{done.stderr}")
            rows[src].extend(json.loads(done.stdout.splitlines()[-1]))
    unit = "map of 200,000 no-ops" if workload == "W2" else "W7 tree (8,191 tasks)"
    print(f"per {unit}, warm; medians of {rounds} x {runs} runs, ms")
    print(f"{'pel src':<40} {'wall':>7} {'caller':>7} {'runtime':>8} {'both':>7}")
    for src, got in rows.items():
        wall, caller, runtime = (statistics.median(c) * 1e3 for c in zip(*got, strict=True))
        print(f"{src[-40:]:<40} {wall:7.2f} {caller:7.2f} {runtime:8.2f} {caller + runtime:7.2f}")


def profile_round_trip(trips: int = 300) -> None:
    """W3's round trip, piece by piece: when (after ``submit`` is called)
    each step of one no-op task's round trip happens, medians over
    ``trips`` round trips. The steps are timed by wrapping pel's own
    functions, which adds a few microseconds to each."""
    import statistics

    import pel
    from pel import _futures, _runtime
    from pel.backends.processes import pool

    from . import workloads as wl

    marks: dict[str, float] = {}

    def first(name: str, fn: Any, after: bool = True, when: Any = None) -> Any:
        def wrapped(*args: Any) -> Any:
            if not after and (when is None or when(args)):
                marks.setdefault(name, time.perf_counter())
            result = fn(*args)
            if after and (when is None or when(args, result)):
                marks.setdefault(name, time.perf_counter())
            return result

        return wrapped

    real = [
        (_runtime.Runtime, "_turn"),
        (pool.ProcessesBackend, "send"),
        (pool.ProcessesBackend, "wait"),
        (_futures.Future, "set_result"),
        (pool.os, "writev"),
    ]
    saved = [getattr(cls, name) for cls, name in real]
    _runtime.Runtime._turn = first(  # type: ignore[method-assign]
        # The turn that takes the submit: no reports, something in the inbox.
        "runtime's turn begins",
        saved[0],
        after=False,
        when=lambda a: not a[1] and bool(a[0]._inbox),
    )
    pool.ProcessesBackend.send = first("call written to the worker", saved[1])  # type: ignore[method-assign]
    pool.ProcessesBackend.wait = first(  # type: ignore[method-assign]
        "result read", saved[2], when=lambda a, r: bool(r)
    )
    _futures.Future.set_result = first("future set", saved[3])  # type: ignore[method-assign]
    # The system call that writes the call to the worker (and wakes it).
    pool.os.writev = first("writev to the worker begins", saved[4], after=False)  # type: ignore[assignment]
    steps = ["submit returned", "runtime's turn begins", "writev to the worker begins"]
    steps += ["call written to the worker"]
    steps += ["result read", "future set", "caller awake"]
    rows = []
    try:
        with pel.Executor(2) as ex:
            for i in range(50):
                ex.submit(wl.noop, i).result()
            for i in range(trips):
                marks.clear()
                t0 = time.perf_counter()
                future = ex.submit(wl.noop, i)
                marks["submit returned"] = time.perf_counter()
                future.result()
                marks["caller awake"] = time.perf_counter()
                if all(step in marks for step in steps):
                    rows.append([marks[step] - t0 for step in steps])
    finally:
        for (cls, name), fn in zip(real, saved, strict=True):
            setattr(cls, name, fn)
    print(f"one no-op round trip on 2 workers, medians of {len(rows)}: µs after submit() is called")
    for j, step in enumerate(steps):
        print(f"  {step:<28} {statistics.median(r[j] for r in rows) * 1e6:7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument(
        "what",
        choices=[
            "tasks",
            "graph",
            "startup",
            "shmwrite",
            "gc",
            "w6parts",
            "map",
            "threads",
            "roundtrip",
        ],
    )
    parser.add_argument("workload", nargs="?", choices=["W2", "W7"], default="W7")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--against", help="threads: other pels' src directories, comma-separated")
    parser.add_argument("--rounds", type=int, default=2, help="threads: processes per src")
    args = parser.parse_args()
    if args.what == "threads":
        profile_threads(args.workload, args.against, args.rounds)
    elif args.what == "roundtrip":
        profile_round_trip()
    elif args.what == "tasks":
        profile_tasks(args.top)
    elif args.what == "graph":
        profile_graph(args.top)
    elif args.what == "startup":
        profile_startup()
    elif args.what == "gc":
        profile_gc()
    elif args.what == "w6parts":
        profile_w6_parts()
    elif args.what == "map":
        profile_map()
    else:
        profile_shm_write()


if __name__ == "__main__":
    main()
