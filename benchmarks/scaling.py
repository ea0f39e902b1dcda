"""How pel's coordinator costs grow with the amount of work.

::

    python -m benchmarks.scaling [--quick] [--sizes 1000,10000,100000,1000000]
                                 [--map-items 2000000] [--only submit,pending,map]
                                 [--no-gc] [--json out.json]

Three measurements, each size in a fresh interpreter
(``python -m benchmarks.scaling --one KIND N``, which prints one
``@@BENCH {json}`` line), run and killed as a process group like
``benchmarks.run``:

1. ``submit``: coordinator time per task. Two workers (warmed), ``n`` no-op
   tasks submitted at once (``[ex.submit(noop, i) for i in range(n)]``), then
   every result gathered. Per task: the submit loop, the whole wall time, and
   the parent process's CPU time (``getrusage(RUSAGE_SELF)`` user + sys: the
   caller's thread and pel's runtime thread, not the workers). These should
   be flat across sizes.
2. ``pending``: coordinator memory per pending task. One worker is held by a
   first task that blocks reading a FIFO, so nothing else runs; ``n`` tasks
   are submitted and the parent's RSS increase over just before submitting is
   divided by ``n`` (no tracemalloc, which would inflate it). Then the FIFO is
   written, and every result is gathered and checked.
3. ``map``: ``ex.map(noop, itertools.count())`` (two workers) consumed for
   ``--map-items`` items, the parent's RSS sampled every 100,000 items. The
   figure is the largest sample minus the first: it should stay bounded, not
   grow with the items consumed.

Python's cyclic GC stays on (as for users); ``--no-gc`` turns it off in each
run, to tell pel's own per-task cost from the collector's, which grows with
the number of live objects (the submit table counts its full collections).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from . import workloads as wl
from .run import (
    MARK,
    ROOT,
    WrongResult,
    emit_and_exit,
    machine_info,
    measure_into,
    run_group,
)

DEFAULT_JSON = ROOT / "benchmarks" / "results" / "scaling.json"

FULL_SIZES = (1_000, 10_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 10_000, 100_000)
FULL_MAP_ITEMS = 2_000_000
QUICK_MAP_ITEMS = 300_000
MAP_SAMPLE_EVERY = 100_000
SUBMIT_WORKERS = 2
MAP_WORKERS = 2
KINDS = ("submit", "pending", "map")


# -- measuring the parent --------------------------------------------------------------


def rss_bytes() -> int:
    """This process's resident set size: psutil if installed, else /proc."""
    try:
        import psutil
    except ImportError:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no psutil and no VmRSS in /proc/self/status") from None
    return int(psutil.Process().memory_info().rss)


def rss_source() -> str:
    try:
        import psutil  # noqa: F401
    except ImportError:
        return "/proc/self/status VmRSS"
    return "psutil rss"


def cpu_seconds() -> float:
    """User + system CPU of this process, all its threads (not its children)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def gc_collections() -> list[int]:
    """Cyclic-GC collections so far, per generation (0, 1, 2)."""
    return [int(g["collections"]) for g in gc.get_stats()]


def _gc_delta(before: list[int]) -> list[int]:
    return [b - a for a, b in zip(before, gc_collections(), strict=True)]


# -- task functions (pickled by value when this module is __main__) ---------------------


def wait_on_fifo(path: str) -> str:
    """Block, without polling, until the parent writes a byte into the FIFO ``path``."""
    with open(path, "rb", buffering=0) as f:  # blocks until the parent opens it to write
        f.read(1)  # blocks until the parent writes
    return "released"


# -- one measurement, in its own interpreter ------------------------------------------


def _warm(ex: Any, workers: int) -> None:
    """Every worker up and every lazy import done before anything is measured."""
    futures = [ex.submit(wl.noop, i) for i in range(4 * workers)]
    if [f.result() for f in futures] != list(range(4 * workers)):
        raise WrongResult("warm-up tasks returned wrong values")


def measure_submit(n: int) -> dict[str, Any]:
    import pel

    with pel.Executor(SUBMIT_WORKERS) as ex:
        _warm(ex, SUBMIT_WORKERS)
        gc.collect()
        gc0 = gc_collections()
        cpu0 = cpu_seconds()
        t0 = time.perf_counter()
        futures = [ex.submit(wl.noop, i) for i in range(n)]
        t1 = time.perf_counter()
        out = [f.result() for f in futures]
        t2 = time.perf_counter()
        cpu = cpu_seconds() - cpu0
        collections = _gc_delta(gc0)
    if out != list(range(n)):
        raise WrongResult("results differ from f(i) = i")
    return {
        "n": n,
        "workers": SUBMIT_WORKERS,
        "submit_s": t1 - t0,
        "wall_s": t2 - t0,
        "parent_cpu_s": cpu,
        "submit_us_per_task": (t1 - t0) / n * 1e6,
        "wall_us_per_task": (t2 - t0) / n * 1e6,
        "parent_cpu_us_per_task": cpu / n * 1e6,
        "tasks_per_s": n / (t2 - t0),
        "gc_enabled": gc.isenabled(),
        "gc_collections": collections,
    }


def _open_for_writing(path: str, timeout: float) -> int:
    """Open the FIFO to write; that returns once the blocking task has opened it to read."""
    box: dict[str, Any] = {}

    def go() -> None:
        try:
            box["fd"] = os.open(path, os.O_WRONLY)
        except BaseException as exc:
            box["exc"] = exc

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(timeout)
    if "exc" in box:
        raise box["exc"]
    if "fd" not in box:
        raise RuntimeError(f"the blocking task did not start within {timeout:.0f} s")
    return int(box["fd"])


def _inbox_drained(ex: Any, timeout: float = 60.0) -> bool:
    """Wait until pel's runtime thread has taken every submission from its inbox.

    Reads a private attribute (benchmark-only); if it is gone, waits 1 s instead.
    """
    inbox = getattr(getattr(ex, "_runtime", None), "_inbox", None)
    if inbox is None:
        time.sleep(1.0)
        return False
    deadline = time.monotonic() + timeout
    while inbox and time.monotonic() < deadline:
        time.sleep(0.01)
    return not inbox


def measure_pending(n: int) -> dict[str, Any]:
    import pel

    with tempfile.TemporaryDirectory(prefix="pel-bench-scaling-") as tmp:
        fifo = os.path.join(tmp, "release")
        os.mkfifo(fifo)
        with pel.Executor(1) as ex:
            # The blocker is the first task, so its length is unknown and the
            # scheduler gives the worker nothing more (prefetch depth 1).
            blocker = ex.submit(wait_on_fifo, fifo)
            try:
                fd = _open_for_writing(fifo, 60.0)
            except BaseException:
                ex.terminate()  # the blocker may never finish: do not wait for it
                raise
            try:
                gc.collect()
                rss0 = rss_bytes()
                blocks0 = sys.getallocatedblocks()
                t0 = time.perf_counter()
                futures = [ex.submit(wl.noop, i) for i in range(n)]
                submit_s = time.perf_counter() - t0
                rss_submitted = rss_bytes()
                drained = _inbox_drained(ex)
                rss1 = rss_bytes()
                blocks1 = sys.getallocatedblocks()
                still_pending = sum(not f.done() for f in futures)
                if blocker.done():
                    raise RuntimeError("the blocking task finished before it was released")
            finally:
                os.write(fd, b"x")
                os.close(fd)
            t1 = time.perf_counter()
            if blocker.result() != "released":
                raise WrongResult("the blocking task returned a wrong value")
            out = [f.result() for f in futures]
            drain_s = time.perf_counter() - t1
    if out != list(range(n)):
        raise WrongResult("results differ from f(i) = i")
    if still_pending != n:
        raise RuntimeError(f"only {still_pending} of {n} tasks were pending when measured")
    return {
        "n": n,
        "workers": 1,
        "rss_before_mb": rss0 / 2**20,
        "rss_pending_mb": rss1 / 2**20,
        "rss_increase_mb": (rss1 - rss0) / 2**20,
        "bytes_per_task": (rss1 - rss0) / n,
        "bytes_per_task_right_after_submit": (rss_submitted - rss0) / n,
        "heap_blocks_per_task": (blocks1 - blocks0) / n,
        "inbox_drained": drained,
        "submit_us_per_task": submit_s / n * 1e6,
        "drain_us_per_task": drain_s / n * 1e6,
        "rss_source": rss_source(),
    }


def measure_map(items: int) -> dict[str, Any]:
    import pel

    samples: list[dict[str, Any]] = []
    with pel.Executor(MAP_WORKERS) as ex:
        _warm(ex, MAP_WORKERS)
        gc.collect()
        rss0 = rss_bytes()
        results = ex.map(wl.noop, itertools.count())
        t0 = time.perf_counter()
        i = 0
        try:
            for i, value in enumerate(results, 1):
                if value != i - 1:
                    raise WrongResult(f"item {i - 1} came back as {value!r}")
                if i % MAP_SAMPLE_EVERY == 0:
                    samples.append(
                        {"items": i, "s": time.perf_counter() - t0, "rss_mb": rss_bytes() / 2**20}
                    )
                if i >= items:
                    break
        finally:
            results.close()  # cancels the chunks still in flight
        wall = time.perf_counter() - t0
    if i < items:
        raise WrongResult(f"map over an endless input stopped after {i} items")
    rss = [s["rss_mb"] for s in samples]
    return {
        "items": items,
        "workers": MAP_WORKERS,
        "sample_every": MAP_SAMPLE_EVERY,
        "rss_before_mb": rss0 / 2**20,
        "samples": samples,
        "rss_first_sample_mb": rss[0],
        "rss_max_mb": max(rss),
        "growth_mb": max(rss) - rss[0],
        "wall_s": wall,
        "items_per_s": items / wall,
        "rss_source": rss_source(),
    }


def run_one(kind: str, n: int, no_gc: bool) -> None:
    """The ``--one`` mode: one measurement, one result line, exit."""
    result: dict[str, Any] = {"kind": kind, "n": n, "gc": not no_gc}
    if no_gc:
        gc.disable()
    fn = {"submit": measure_submit, "pending": measure_pending, "map": measure_map}[kind]
    measure_into(result, lambda: fn(n))
    emit_and_exit(result)


# -- the driver -----------------------------------------------------------------------


def spawn_one(kind: str, n: int, timeout: float, no_gc: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.scaling", "--one", kind, str(n)]
    if no_gc:
        cmd.append("--no-gc")
    t0 = time.perf_counter()
    rc, out, err, timed_out = run_group(cmd, timeout)
    elapsed = time.perf_counter() - t0
    if timed_out:
        return {
            "kind": kind,
            "n": n,
            "status": "hang/timeout",
            "error": f"no result within {timeout:.0f} s",
            "elapsed_s": elapsed,
        }
    for line in reversed(out.splitlines()):
        if line.startswith(MARK):
            result: dict[str, Any] = json.loads(line[len(MARK) :])
            result["elapsed_s"] = elapsed
            return result
    tail = (err or out).strip().splitlines()[-5:]
    return {
        "kind": kind,
        "n": n,
        "status": "error",
        "error": f"exit {rc} without a result: {' | '.join(tail)[-600:]}",
        "elapsed_s": elapsed,
    }


def _table(head: list[str], body: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    lines = [
        "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [head, ["-" * w for w in widths], *body]
    ]
    return "\n".join(lines)


def _failed(r: dict[str, Any], width: int) -> list[str]:
    return [f"{r['n']:,}", f"{r['status']}: {r.get('error', '')}"[:200]] + [""] * (width - 2)


def _ratio_note(rows: list[dict[str, Any]], key: str, what: str) -> str:
    ok = [r for r in rows if r["status"] == "ok"]
    if len(ok) < 2:
        return ""
    first, last = ok[0]["metrics"], ok[-1]["metrics"]
    steps = ", ".join(
        f"{b['n'] // a['n']}x n -> {b['metrics'][key] / a['metrics'][key]:.2f}x"
        for a, b in itertools.pairwise(ok)
    )
    return (
        f"{what}, largest n over smallest: {last[key] / first[key]:.2f}x "
        f"(flat = 1.00; step by step: {steps})"
    )


def render_submit(rows: list[dict[str, Any]]) -> str:
    head = ["n", "submit µs/task", "wall µs/task", "parent CPU µs/task", "tasks/s", "full GCs"]
    body = []
    for r in rows:
        if r["status"] != "ok":
            body.append(_failed(r, len(head)))
            continue
        m = r["metrics"]
        body.append(
            [
                f"{r['n']:,}",
                f"{m['submit_us_per_task']:.1f}",
                f"{m['wall_us_per_task']:.1f}",
                f"{m['parent_cpu_us_per_task']:.1f}",
                f"{m['tasks_per_s']:,.0f}",
                str(m["gc_collections"][2]) if m["gc_enabled"] else "gc off",
            ]
        )
    title = (
        f"1. Coordinator time per task: {SUBMIT_WORKERS} workers, n no-op tasks submitted at "
        "once, then gathered\n   (parent CPU = getrusage(RUSAGE_SELF) user+sys: caller + pel "
        "runtime thread, not the workers;\n   full GCs = gen-2 collections of Python's "
        "cyclic GC during the run)"
    )
    notes = [
        _ratio_note(rows, "wall_us_per_task", "wall/task"),
        _ratio_note(rows, "parent_cpu_us_per_task", "parent CPU/task"),
    ]
    return "\n".join([title, _table(head, body), *[n for n in notes if n]])


def render_pending(rows: list[dict[str, Any]]) -> str:
    head = ["n", "RSS before MB", "RSS increase MB", "bytes/task", "heap blocks/task", "gather"]
    body = []
    for r in rows:
        if r["status"] != "ok":
            body.append(_failed(r, len(head)))
            continue
        m = r["metrics"]
        body.append(
            [
                f"{r['n']:,}",
                f"{m['rss_before_mb']:.1f}",
                f"{m['rss_increase_mb']:.1f}",
                f"{m['bytes_per_task']:,.0f}",
                f"{m['heap_blocks_per_task']:.1f}",
                "correct",
            ]
        )
    title = (
        "2. Coordinator memory per pending task: 1 worker held by a task blocked on a FIFO, "
        "n tasks submitted;\n   parent RSS increase / n (includes the caller's list of "
        "futures, 8 bytes/task); heap blocks = sys.getallocatedblocks()"
    )
    note = _ratio_note(rows, "bytes_per_task", "bytes/task")
    return "\n".join([title, _table(head, body), *([note] if note else [])])


def render_map(r: dict[str, Any]) -> str:
    title = (
        f"3. Bounded memory: ex.map(noop, itertools.count()), {MAP_WORKERS} workers, "
        f"parent RSS every {MAP_SAMPLE_EVERY:,} items"
    )
    if r["status"] != "ok":
        return f"{title}\n   {r['status']}: {r.get('error', '')}"
    m = r["metrics"]
    body = [
        [
            f"{s['items']:,}",
            f"{s['s']:.2f}",
            f"{s['rss_mb']:.1f}",
            f"{s['rss_mb'] - m['rss_first_sample_mb']:+.1f}",
        ]
        for s in m["samples"]
    ]
    table = _table(["items", "s", "RSS MB", "vs first MB"], body)
    summary = (
        f"RSS before map {m['rss_before_mb']:.1f} MB; max - first sample = {m['growth_mb']:.1f} MB "
        f"over {m['items']:,} items ({m['items_per_s']:,.0f} items/s)"
    )
    return "\n".join([title, table, summary])


def _progress(r: dict[str, Any]) -> str:
    if r["status"] != "ok":
        return f"{r['status']}: {r.get('error', '')}"[:200]
    m = r["metrics"]
    keys = [k for k, v in m.items() if isinstance(v, float) and k.endswith(("_task", "_mb"))]
    return ", ".join(f"{k}={m[k]:.4g}" for k in keys)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s.replace("_", "")) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of integers: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive integers: {text!r}")
    return sizes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.scaling", description=__doc__.split("::")[0]
    )
    p.add_argument(
        "--quick", action="store_true", help="sizes 1000,10000,100000; 300,000 map items"
    )
    p.add_argument("--sizes", type=_sizes, help="comma list of n (default 1000,...,1000000)")
    p.add_argument("--map-items", type=int, help="map items consumed (default 2,000,000)")
    p.add_argument("--only", help=f"comma list of: {','.join(KINDS)} (default all)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"default {DEFAULT_JSON}")
    p.add_argument(
        "--no-gc",
        action="store_true",
        help="gc.disable() in each run: pel's own costs, without Python's cyclic collector",
    )
    p.add_argument("--timeout", type=float, help="per-run limit, s (default 600; quick 120)")
    p.add_argument("--one", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)

    if a.one:
        run_one(a.one[0], int(a.one[1]), a.no_gc)
        return 0  # not reached

    sizes = sorted(a.sizes or (QUICK_SIZES if a.quick else FULL_SIZES))
    map_items = a.map_items or (QUICK_MAP_ITEMS if a.quick else FULL_MAP_ITEMS)
    if map_items < MAP_SAMPLE_EVERY:
        p.error(f"--map-items must be at least {MAP_SAMPLE_EVERY:,}")
    kinds = a.only.split(",") if a.only else list(KINDS)
    for k in kinds:
        if k not in KINDS:
            p.error(f"unknown measurement {k!r}; known: {', '.join(KINDS)}")
    timeout = a.timeout or (120.0 if a.quick else 600.0)
    print(
        f"{'QUICK' if a.quick else 'FULL'} scaling run: sizes {sizes}, map items {map_items:,}, "
        f"per-run limit {timeout:.0f} s{', gc disabled' if a.no_gc else ''}",
        file=sys.stderr,
    )

    load_start = os.getloadavg()
    started = time.perf_counter()
    plan = [(k, n) for k in kinds if k != "map" for n in sizes]
    if "map" in kinds:
        plan.append(("map", map_items))
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for done, (kind, n) in enumerate(plan, 1):
        result = spawn_one(kind, n, timeout, a.no_gc)
        runs[kind].append(result)
        print(
            f"[{done}/{len(plan)}] {kind:7} n={n:<9,} {_progress(result)} "
            f"({result['elapsed_s']:.1f} s)",
            file=sys.stderr,
            flush=True,
        )

    sections = []
    if "submit" in runs:
        sections.append(render_submit(runs["submit"]))
    if "pending" in runs:
        sections.append(render_pending(runs["pending"]))
    if "map" in runs:
        sections.append(render_map(runs["map"][0]))
    print(
        f"pel scaling ({'quick' if a.quick else 'full'}{', gc disabled' if a.no_gc else ''}): "
        "one fresh interpreter per run; "
        f"{time.perf_counter() - started:.0f} s\n"
    )
    print("\n\n".join(sections))

    machine = machine_info(["pel"], load_start)
    machine["loadavg_at_end"] = os.getloadavg()
    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "mode": "quick" if a.quick else "full",
        "sizes": sizes,
        "map_items": map_items,
        "timeout_s": timeout,
        "rss_source": rss_source(),
        "gc": not a.no_gc,
        "machine": machine,
        "runs": runs,
    }
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwrote {a.json}")
    failed = [r for rs in runs.values() for r in rs if r["status"] != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
