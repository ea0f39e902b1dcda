"""Run the workloads of ``WORKLOADS.md`` on pel and its peers, side by side.

::

    python -m benchmarks.run [--quick] [--systems pel,ray] [--workloads W1,W5]
                             [--repeats 3] [--workers N] [--json out.json]

Every (system, workload, repeat) runs in a fresh interpreter
(``python -m benchmarks.run --one SYSTEM WORKLOAD --workers N``, which prints
one ``@@BENCH {json}`` line) in its own process group, under a time limit; the
group is killed afterwards so no worker outlives its run. A run past the limit
is recorded as ``hang/timeout``; a system that is not installed, fails or gives
a wrong result is reported as such in the table, never left out.

The table shows the median over repeats of each figure, and pel against the
best peer on each row as a factor where above 1 means pel is better.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import workloads as wl
from .systems import SYSTEMS, System, cpu_count, get

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "latest.json"
MARK = "@@BENCH "

UNITS = (
    "W1",
    "W2",
    "W3",
    "W4",
    "W5-submit",
    "W5-map",
    "W6",
    "W6-results",
    "W6-bandwidth",
    "W7",
    "W8",
    "W9",
)


# -- one run, in its own interpreter ------------------------------------------------------


class WrongResult(Exception):
    pass


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise WrongResult(what)


def _warm(system: System, n: int, kind: str) -> None:
    """Bring every worker up before the clock starts (some systems start them lazily)."""
    if kind == "map":
        system.map(wl.noop, list(range(4 * n)))
    else:
        system.submit_many(wl.noop, [(i,) for i in range(2 * n)])


def _started(name: str, n: int, kind: str = "submit") -> System:
    system = get(name)
    system.start(n)
    _warm(system, n, kind)
    return system


def _stop(system: System, timeout: float = 30.0) -> None:
    """Stop the system, but never let a stuck shutdown hold the run's result back."""
    t = threading.Thread(target=system.stop, daemon=True)
    t.start()
    t.join(timeout)


def _w1(name: str, n: int, s: wl.Sizes, rate: float) -> dict[str, Any]:
    system = _started(name, n)
    args = [(i,) for i in range(s.w1_tasks)]
    t0 = time.perf_counter()
    out = system.submit_many(wl.noop, args)
    wall = time.perf_counter() - t0
    _stop(system)
    _check(out == list(range(s.w1_tasks)), "results differ from f(i) = i")
    return {"wall_s": wall, "tasks_per_s": s.w1_tasks / wall}


def _w2(name: str, n: int, s: wl.Sizes, rate: float) -> dict[str, Any]:
    system = _started(name, n, "map")
    items = list(range(s.w2_items))
    t0 = time.perf_counter()
    out = system.map(wl.noop, items)
    wall = time.perf_counter() - t0
    _stop(system)
    _check(out == items, "results differ from f(i) = i")
    return {"wall_s": wall, "items_per_s": s.w2_items / wall}


def _w3(name: str, n: int, s: wl.Sizes, rate: float) -> dict[str, Any]:
    system = _started(name, n)
    for i in range(s.w3_warmup):
        system.round_trip(wl.noop, i)
    samples = []
    for i in range(s.w3_trips):
        t0 = time.perf_counter()
        r = system.round_trip(wl.noop, i)
        samples.append(time.perf_counter() - t0)
        _check(r == i, "round trip returned a wrong value")
    _stop(system)
    samples.sort()
    p99 = samples[math.ceil(0.99 * len(samples)) - 1]
    return {"median_us": statistics.median(samples) * 1e6, "p99_us": p99 * 1e6}


def _w4(name: str, n: int, s: wl.Sizes, rate: float) -> dict[str, Any]:
    iters = wl.w4_iterations(rate, s)
    walls = {}
    for workers in (1, n):
        system = _started(name, workers)
        t0 = time.perf_counter()
        out = system.submit_many(wl.spin, [(k,) for k in iters])
        walls[workers] = time.perf_counter() - t0
        _stop(system)
        _check(len(out) == len(iters), "wrong number of results")
    t1, tn = walls[1], walls[n]
    return {"t1_s": t1, "tn_s": tn, "efficiency": t1 / (n * tn)}


def _w5(name: str, n: int, s: wl.Sizes, rate: float, mode: str) -> dict[str, Any]:
    iters = wl.w5_iterations(rate, s)
    system = _started(name, n, "map" if mode == "map" else "submit")
    t0 = time.perf_counter()
    if mode == "map":
        cpu = system.map(wl.spin, iters)
    else:
        cpu = system.submit_many(wl.spin, [(k,) for k in iters])
    makespan = time.perf_counter() - t0
    _stop(system)
    _check(len(cpu) == len(iters), "wrong number of results")
    total, largest = float(sum(cpu)), float(max(cpu))
    bound = max(total / n, largest)
    return {
        "makespan_s": makespan,
        "task_cpu_total_s": total,
        "largest_task_s": largest,
        "bound_s": bound,
        "ratio": makespan / bound,
    }


_SAMPLER = """
import sys, psutil
root, interval = psutil.Process(int(sys.argv[1])), float(sys.argv[2])
me = psutil.Process()
import select
peak = 0
while not select.select([sys.stdin], [], [], interval)[0]:
    total = 0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        procs = []
    for p in procs:
        if p.pid != me.pid:
            try:
                total += p.memory_full_info().pss
            except psutil.Error:
                pass
    peak = max(peak, total)
print(peak, flush=True)
"""


class PeakPss:
    """The peak PSS of this process and all its descendants while in the block.

    Sampled every ``interval`` by a separate process: psutil reads and parses
    each process's smaps in Python, and doing that in a thread of the measured
    process took its GIL from the system under test (most from the systems
    that use the GIL most, pel first among them).
    """

    def __init__(self, interval: float = 0.02) -> None:
        import psutil

        self.psutil = psutil
        self.me = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._sampler: subprocess.Popen[str] | None = None

    def sample(self) -> int:
        """One sample, taken here (outside the timed part)."""
        total = 0
        procs = [self.me]
        with contextlib.suppress(self.psutil.Error):
            procs += self.me.children(recursive=True)
        for p in procs:
            if self._sampler is not None and p.pid == self._sampler.pid:
                continue
            with contextlib.suppress(self.psutil.Error):
                total += p.memory_full_info().pss
        self.peak = max(self.peak, total)
        return total

    def __enter__(self) -> PeakPss:
        self.sample()
        self._sampler = subprocess.Popen(
            [sys.executable, "-c", _SAMPLER, str(os.getpid()), str(self.interval)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._sampler is not None
        out, _ = self._sampler.communicate("stop\n", timeout=60)
        self.peak = max(self.peak, int(out.strip() or 0))
        self._sampler = None
        self.sample()


def _w6(name: str, n: int, s: wl.Sizes, rate: float) -> dict[str, Any]:
    system = _started(name, n)
    big = wl.make_array(s.w6_mb)
    parts = s.w6_tasks
    with PeakPss() as pss:
        base = pss.sample()
        t0 = time.perf_counter()
        out = system.submit_shared(wl.sum_part, big, [(i, parts) for i in range(parts)])
        wall = time.perf_counter() - t0
    _stop(system)
    expected = wl.w6_expected(s.w6_mb)
    _check(math.isclose(sum(out), expected, rel_tol=1e-9), f"sum {sum(out)} != {expected}")
    mb = 1024 * 1024
    extra = (pss.peak - base) / mb
    return {
        "wall_s": wall,
        "peak_pss_mb": pss.peak / mb,
        "pss_before_mb": base / mb,
        "extra_pss_mb": extra,
        "extra_per_array": extra / s.w6_mb,
    }


def _w6r(name: str, n: int, s: wl.Sizes, rate: float) -> dict[str, Any]:
    """W6-results: w6_tasks tasks each return a w6r_mb array; one more task sums them."""
    system = _started(name, n)
    args = [(i, s.w6r_mb) for i in range(s.w6_tasks)]
    with PeakPss() as pss:
        base = pss.sample()
        t0 = time.perf_counter()
        total = system.results_reduce(wl.make_part, wl.sum_parts, args)
        wall = time.perf_counter() - t0
    _stop(system)
    expected = wl.w6r_expected(s.w6r_mb, s.w6_tasks)
    _check(math.isclose(total, expected, rel_tol=1e-9), f"sum {total} != {expected}")
    mb = 1024 * 1024
    return {"wall_s": wall, "extra_pss_mb": (pss.peak - base) / mb}


def _w6b(name: str, n: int, s: wl.Sizes, rate: float) -> dict[str, Any]:
    """W6-bandwidth: store w6b_mb once and read it all in a task, next to numpy's memcpy."""
    import numpy as np

    big = wl.make_array(s.w6b_mb)
    gb = big.nbytes / 1e9
    dst = np.empty_like(big)
    np.copyto(dst, big)  # fault the pages in before timing
    t0 = time.perf_counter()
    np.copyto(dst, big)
    memcpy = time.perf_counter() - t0
    del dst
    t0 = time.perf_counter()
    local = wl.read_all(big)
    local_read = time.perf_counter() - t0
    system = _started(name, n)
    system.put_read(wl.make_array(1), wl.read_all)  # workers import numpy before the clock
    put_s, read_s, value = system.put_read(big, wl.read_all)
    _stop(system)
    _check(value == local, f"read {value} != {local}")
    return {
        "put_gbps": gb / put_s,
        "read_gbps": gb / read_s,
        "put_read_gbps": gb / (put_s + read_s),
        "memcpy_gbps": gb / memcpy,
        "local_read_gbps": gb / local_read,
    }


def _w7(name: str, n: int, s: wl.Sizes, rate: float) -> dict[str, Any]:
    system = _started(name, n)
    t0 = time.perf_counter()
    total = system.tree_sum(s.w7_leaves)
    wall = time.perf_counter() - t0
    _stop(system)
    _check(total == wl.w7_expected(s.w7_leaves), f"tree sum {total} is wrong")
    return {"wall_s": wall, "tasks_per_s": (2 * s.w7_leaves - 1) / wall}


def _w8(name: str, n: int, s: wl.Sizes, rate: float) -> dict[str, Any]:
    code = get(name).cold_code(n)
    t0 = time.perf_counter()
    rc, _, err, timed_out = run_group([sys.executable, "-c", code], 120)
    wall = time.perf_counter() - t0
    if timed_out:
        raise RuntimeError("the cold-start program did not finish within 120 s")
    if rc != 0:
        raise RuntimeError(f"exit {rc}: {err.strip()[-500:]}")
    return {"wall_s": wall}


def _w9(name: str, n: int, s: wl.Sizes, rate: float) -> dict[str, Any]:
    system = _started(name, n)
    box: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="pel-bench-w9-") as markers:
        args = [(i, s.w9_crasher, markers, s.w9_task_s) for i in range(s.w9_tasks)]

        def go() -> None:
            try:
                box["out"] = system.submit_outcomes(wl.crash_once, args)
            except BaseException as exc:
                box["exc"] = exc

        t0 = time.perf_counter()
        worker = threading.Thread(target=go, daemon=True)
        worker.start()
        worker.join(s.w9_timeout_s)
        wall = time.perf_counter() - t0
    if worker.is_alive():
        # Do not try to stop a stuck system: the parent kills the process group.
        return {
            "outcome": "hang",
            "detail": f"no result after {s.w9_timeout_s:.0f} s",
            "wall_s": wall,
            "_skip_stop": True,
        }
    _stop(system)
    if "exc" in box:
        exc = box["exc"]
        return {
            "outcome": "error",
            "detail": f"whole call raised {type(exc).__name__}: {_short(exc)}",
            "wall_s": wall,
        }
    out = box["out"]
    failed = [(i, r) for i, r in enumerate(out) if isinstance(r, BaseException)]
    wrong = [i for i, r in enumerate(out) if not isinstance(r, BaseException) and r != i]
    if not failed and not wrong:
        return {"outcome": "correct", "detail": f"all {len(out)} results correct", "wall_s": wall}
    kinds = sorted({type(r).__name__ for _, r in failed})
    detail = f"{len(failed)}/{len(out)} tasks failed ({', '.join(kinds)})"
    if failed:
        detail += f"; first: task {failed[0][0]}: {_short(failed[0][1])}"
    if wrong:
        detail += f"; {len(wrong)} wrong values"
    return {"outcome": "error", "detail": detail, "wall_s": wall}


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


RUNNERS: dict[str, Callable[[str, int, wl.Sizes, float], dict[str, Any]]] = {
    "W1": _w1,
    "W2": _w2,
    "W3": _w3,
    "W4": _w4,
    "W5-submit": lambda name, n, s, rate: _w5(name, n, s, rate, "submit"),
    "W5-map": lambda name, n, s, rate: _w5(name, n, s, rate, "map"),
    "W6": _w6,
    "W6-results": _w6r,
    "W6-bandwidth": _w6b,
    "W7": _w7,
    "W8": _w8,
    "W9": _w9,
}


def run_one(name: str, unit: str, n: int, quick: bool, rate: float | None) -> None:
    """The ``--one`` mode: run one (system, workload), print one result line, exit."""
    result: dict[str, Any] = {"system": name, "unit": unit, "workers": n}
    missing = SYSTEMS[name].missing() if name in SYSTEMS else f"unknown system {name!r}"
    if missing:
        result.update(status="not installed", error=missing)
    else:
        sizes = wl.QUICK if quick else wl.FULL
        if rate is None and unit.startswith(("W4", "W5")):
            rate = wl.calibrate()
        measure_into(result, lambda: RUNNERS[unit](name, n, sizes, rate or 0.0))
    emit_and_exit(result)


def measure_into(result: dict[str, Any], measure: Callable[[], dict[str, Any]]) -> None:
    """Run one measurement; record its metrics or why it failed, never raise."""
    try:
        result.update(status="ok", metrics=measure())
    except NotImplementedError as exc:
        result.update(status="n/a", error=str(exc))
    except WrongResult as exc:
        result.update(status="error", error=f"wrong result: {exc}")
    except BaseException as exc:
        result.update(
            status="error",
            error=f"{type(exc).__name__}: {_short(exc, 400)}",
            traceback=traceback.format_exc()[-2000:],
        )


def emit_and_exit(result: dict[str, Any]) -> None:
    """Print the one result line of a ``--one`` process, then leave at once."""
    print(MARK + json.dumps(result, default=str), flush=True)
    sys.stderr.flush()
    # Leftover threads or workers of a system must not hold the result back.
    os._exit(0)


# -- the driver ------------------------------------------------------------------------


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + path if path else "")
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env.setdefault("TQDM_DISABLE", "1")
    return env


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


#: Where peers leave semaphores and memmaps when their process group is killed
#: (W9's hang, a timeout): removed after each run, so a benchmark session does
#: not fill /dev/shm. pel's own files are not on the list: a leak is a bug.
SHM = "/dev/shm"
PEER_SHM_PREFIXES = ("sem.mp-", "sem.loky-", "joblib_memmapping_folder_", "psm_", "loky-")


def _shm_entries() -> set[str]:
    try:
        return set(os.listdir(SHM))
    except OSError:
        return set()


def _sweep_peer_shm(before: set[str]) -> None:
    for name in sorted(_shm_entries() - before):
        if name.startswith(PEER_SHM_PREFIXES):
            path = os.path.join(SHM, name)
            with contextlib.suppress(OSError):
                if os.path.isdir(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)


def run_group(cmd: list[str], timeout: float) -> tuple[int | None, str, str, bool]:
    """Run ``cmd`` in a new session; kill its whole process group when it is done.

    Output goes to files, not pipes: a worker the run left behind would keep a
    pipe open (and the read blocked) after the run itself has exited.
    Returns (exit code, stdout, stderr, timed out).
    """
    shm_before = _shm_entries()
    with tempfile.TemporaryFile("w+") as out_f, tempfile.TemporaryFile("w+") as err_f:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=_child_env(),
            stdin=subprocess.DEVNULL,
            stdout=out_f,
            stderr=err_f,
            text=True,
            start_new_session=True,
        )
        # Not proc.wait(timeout): it polls with a backoff of up to 50 ms, which
        # rounded every W8 time up to the next poll (they all read 0.06 or
        # 0.11 s). A blocking wait is exact; a timer ends a run that hangs.
        fired = threading.Event()

        def expire() -> None:
            fired.set()
            _kill_group(proc.pid)

        timer = threading.Timer(timeout, expire)
        timer.start()
        try:
            rc: int | None = proc.wait()
        finally:
            timer.cancel()
            _kill_group(proc.pid)  # the run and whatever it left behind
            proc.wait()
            _sweep_peer_shm(shm_before)
        timed_out = fired.is_set()
        if timed_out:
            rc = None
        out_f.seek(0)
        err_f.seek(0)
        return rc, out_f.read(), err_f.read(), timed_out


def spawn_one(
    name: str, unit: str, n: int, quick: bool, rate: float | None, timeout: float
) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.run", "--one", name, unit, "--workers", str(n)]
    if quick:
        cmd.append("--quick")
    if rate is not None:
        cmd += ["--rate", repr(rate)]
    t0 = time.perf_counter()
    rc, out, err, timed_out = run_group(cmd, timeout)
    if timed_out:
        return {
            "system": name,
            "unit": unit,
            "status": "hang/timeout",
            "error": f"no result within {timeout:.0f} s",
            "elapsed_s": time.perf_counter() - t0,
        }
    for line in reversed(out.splitlines()):
        if line.startswith(MARK):
            result: dict[str, Any] = json.loads(line[len(MARK) :])
            result["elapsed_s"] = time.perf_counter() - t0
            return result
    tail = (err or out).strip().splitlines()[-5:]
    return {
        "system": name,
        "unit": unit,
        "status": "error",
        "error": f"exit {rc} without a result: {' | '.join(tail)[-600:]}",
        "elapsed_s": time.perf_counter() - t0,
    }


@dataclass(frozen=True)
class Row:
    label: str
    figure: str
    unit: str
    key: str
    fmt: str
    better: str  # "higher", "lower", "info" (a number, not compared) or "" (not a number)


ROWS = (
    Row("W1 tiny", "tasks/s", "W1", "tasks_per_s", "int", "higher"),
    Row("W2 map", "items/s", "W2", "items_per_s", "int", "higher"),
    Row("W3 latency", "median µs", "W3", "median_us", "int", "lower"),
    Row("W3 latency", "p99 µs", "W3", "p99_us", "int", "lower"),
    Row("W4 cpu", "T1/(N·TN)", "W4", "efficiency", "2f", "higher"),
    Row("W5 skew submit", "makespan/bound", "W5-submit", "ratio", "2f", "lower"),
    Row("W5 skew map", "makespan/bound", "W5-map", "ratio", "2f", "lower"),
    Row("W6 bigdata", "wall s", "W6", "wall_s", "2f", "lower"),
    Row("W6 bigdata", "peak PSS MB", "W6", "peak_pss_mb", "int", "lower"),
    Row("W6 bigdata", "extra PSS / array", "W6", "extra_per_array", "2f", "lower"),
    Row("W6 results", "wall s", "W6-results", "wall_s", "2f", "lower"),
    Row("W6 results", "extra PSS MB", "W6-results", "extra_pss_mb", "int", "lower"),
    Row("W6 bandwidth", "put GB/s", "W6-bandwidth", "put_gbps", "2f", "higher"),
    Row("W6 bandwidth", "read GB/s", "W6-bandwidth", "read_gbps", "2f", "higher"),
    Row("W6 bandwidth", "put+read GB/s", "W6-bandwidth", "put_read_gbps", "2f", "higher"),
    Row("W6 bandwidth", "memcpy GB/s", "W6-bandwidth", "memcpy_gbps", "2f", "info"),
    Row("W6 bandwidth", "local read GB/s", "W6-bandwidth", "local_read_gbps", "2f", "info"),
    Row("W7 dag", "wall s", "W7", "wall_s", "2f", "lower"),
    Row("W7 dag", "tasks/s", "W7", "tasks_per_s", "int", "higher"),
    Row("W8 cold", "wall s", "W8", "wall_s", "3f", "lower"),
    Row("W9 crash", "outcome", "W9", "outcome", "text", ""),
)


def _fmt(value: float, fmt: str) -> str:
    if fmt == "int":
        return f"{value:,.0f}"
    return f"{value:.3f}" if fmt == "3f" else f"{value:.2f}"


def summarize(
    runs: list[dict[str, Any]], systems: list[str], units: list[str]
) -> list[dict[str, Any]]:
    """One entry per table row: per system the median (or what went wrong)."""
    rows = []
    for row in ROWS:
        if row.unit not in units:
            continue
        cells: dict[str, dict[str, Any]] = {}
        for name in systems:
            mine = [r for r in runs if r["system"] == name and r["unit"] == row.unit]
            ok = [r for r in mine if r["status"] == "ok"]
            cell: dict[str, Any] = {"runs": len(mine), "ok": len(ok)}
            if ok and row.better:
                values = [float(r["metrics"][row.key]) for r in ok]
                cell["median"] = statistics.median(values)
                cell["values"] = values
            elif ok:
                outcomes = sorted({r["metrics"]["outcome"] for r in ok})
                cell["text"] = "/".join(outcomes)
                cell["details"] = sorted({r["metrics"]["detail"] for r in ok})
            if len(ok) < len(mine):
                bad = [r for r in mine if r["status"] != "ok"]
                cell["status"] = bad[0]["status"]
                cell["errors"] = sorted({r.get("error", "") for r in bad})
            cells[name] = cell
        entry: dict[str, Any] = {
            "label": row.label,
            "figure": row.figure,
            "unit": row.unit,
            "key": row.key,
            "better": row.better,
            "cells": cells,
        }
        pel = cells.get("pel", {}).get("median")
        peers = {k: c["median"] for k, c in cells.items() if k != "pel" and "median" in c}
        if row.better in ("higher", "lower") and pel is not None and peers:
            pick = max if row.better == "higher" else min
            best = pick(peers, key=lambda k: peers[k])
            factor = pel / peers[best] if row.better == "higher" else peers[best] / pel
            entry["best_peer"] = best
            entry["pel_vs_best"] = factor
        rows.append(entry)
    return rows


def _cell_text(cell: dict[str, Any], fmt: str) -> str:
    if "median" in cell:
        text = _fmt(cell["median"], fmt)
    elif "text" in cell:
        text = cell["text"]
    elif cell.get("status") == "not installed":
        return "not inst."
    elif cell.get("status") == "hang/timeout":
        return "hang/timeout"
    elif cell.get("status") == "n/a":
        return "n/a"
    elif cell.get("status"):
        return "ERROR"
    else:
        return "-"
    if cell.get("status"):
        text += f" ({cell['ok']}/{cell['runs']} ok)"
    return text


def render(rows: list[dict[str, Any]], systems: list[str]) -> str:
    labels = [SYSTEMS[s].label for s in systems]
    head = ["workload", "figure", *labels, "pel vs best"]
    body = []
    for entry in rows:
        row = next(r for r in ROWS if r.unit == entry["unit"] and r.key == entry["key"])
        line = [entry["label"], entry["figure"]]
        line += [_cell_text(entry["cells"][s], row.fmt) for s in systems]
        if "pel_vs_best" in entry:
            line.append(f"{entry['pel_vs_best']:.2f}x ({SYSTEMS[entry['best_peer']].label})")
        else:
            line.append("")
        body.append(line)
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]

    def fmt_line(cols: list[str]) -> str:
        parts = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cols, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    lines = [fmt_line(head), fmt_line(["-" * w for w in widths])]
    lines += [fmt_line(r) for r in body]
    lines.append("")
    lines.append("pel vs best: pel's figure against the best peer's, as a factor; >1 = pel better.")
    notes = []
    for entry in rows:
        for name in systems:
            cell = entry["cells"][name]
            for err in cell.get("errors", []):
                if cell.get("status") not in ("not installed", "n/a"):
                    notes.append(f"{entry['unit']} {name}: {cell['status']}: {err}")
            if entry["key"] == "outcome":
                for d in cell.get("details", []):
                    notes.append(f"W9 {name}: {cell.get('text')}: {d}")
    missing = [f"{name}: {SYSTEMS[name].missing()}" for name in systems if SYSTEMS[name].missing()]
    if missing:
        lines.append("Not installed: " + "; ".join(missing))
    if notes:
        lines.append("Details:")
        lines += [f"  {n}" for n in dict.fromkeys(notes)]
    return "\n".join(lines)


def machine_info(systems: list[str], loadavg_at_start: tuple[float, ...]) -> dict[str, Any]:
    model = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 1024 / 1024, 1)
    versions: dict[str, dict[str, str]] = {}
    for name in systems:
        cls = SYSTEMS[name]
        v = {"python": platform.python_version()}
        for dist in cls.distributions:
            try:
                v[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                v[dist] = "not installed"
        versions[name] = v
    extra = {}
    for dist in ("numpy", "psutil", "cloudpickle"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            extra[dist] = importlib.metadata.version(dist)
    return {
        "cpu_model": model,
        "cores_logical": os.cpu_count(),
        "cores_usable": cpu_count(),
        "memory_gib": mem,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "loadavg_at_start": loadavg_at_start,
        "versions": versions,
        "other_packages": extra,
    }


def _progress(result: dict[str, Any]) -> str:
    if result["status"] != "ok":
        return f"{result['status']}: {result.get('error', '')}"[:160]
    m = result["metrics"]
    keys = [k for k in m if not k.startswith("_")]
    return ", ".join(f"{k}={m[k]:.4g}" if isinstance(m[k], float) else f"{k}={m[k]}" for k in keys)


#: Left out of a quick run unless named in --systems.
SLOW_TO_START = ("dask-distributed", "ray")


def _byte_compile() -> None:
    """Compile pel's and the benchmarks' modules to bytecode first, as any
    non-editable install does (and as the peers' installs did).

    An editable install run with ``PYTHONDONTWRITEBYTECODE`` set (as in some
    sandboxes) would otherwise compile pel from source in every fresh process:
    +40 ms on W8, for a reason no user of an installed pel meets.
    """
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("pel")
    roots = [Path(__file__).resolve().parent]
    if spec is not None and spec.origin is not None:
        roots.append(Path(spec.origin).parent)
    for root in roots:
        compileall.compile_dir(str(root), quiet=1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("::")[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes, 1 repeat (a smoke run)")
    p.add_argument("--systems", help=f"comma list of: {','.join(SYSTEMS)} (default all)")
    p.add_argument("--workloads", help="comma list of W1..W9 or units like W5-map (default all)")
    p.add_argument("--repeats", type=int, help="repeats per (system, workload); 3 (quick: 1)")
    p.add_argument("--workers", type=int, default=cpu_count(), help="N (default: usable cores)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"default {DEFAULT_JSON}")
    p.add_argument("--timeout", type=float, help="per-run limit, s (default 300; quick 60)")
    p.add_argument("--one", nargs=2, metavar=("SYSTEM", "WORKLOAD"), help=argparse.SUPPRESS)
    p.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    a = p.parse_args(argv)

    if a.one:
        run_one(a.one[0], a.one[1], a.workers, a.quick, a.rate)
        return 0  # not reached

    systems = a.systems.split(",") if a.systems else list(SYSTEMS)
    if a.quick and not a.systems:
        # Each of their runs starts a cluster (seconds): half of a quick run.
        systems = [s for s in systems if s not in SLOW_TO_START]
        print(
            f"quick run: {', '.join(SLOW_TO_START)} left out (their start-up is seconds per "
            f"run); --systems includes them",
            file=sys.stderr,
        )
    for s in systems:
        if s not in SYSTEMS:
            p.error(f"unknown system {s!r}; known: {', '.join(SYSTEMS)}")
    wanted = a.workloads.split(",") if a.workloads else list(UNITS)
    units = [u for u in UNITS if any(u == w or u.split("-")[0] == w for w in wanted)]
    if not units:
        p.error(f"no workload matches {a.workloads!r}; known: {', '.join(UNITS)}")
    repeats = a.repeats or (1 if a.quick else 3)
    timeout = a.timeout or (60.0 if a.quick else 300.0)
    sizes = wl.QUICK if a.quick else wl.FULL
    n = a.workers

    _byte_compile()
    rate = None
    if any(u.startswith(("W4", "W5")) for u in units):
        rate = wl.calibrate(sizes.w4_task_s)
        print(
            f"calibrated: {rate:,.0f} spin iterations/s "
            f"(a W4 task = {int(rate * sizes.w4_task_s):,} iterations ≈ {sizes.w4_task_s * 1e3:.0f}"
            " ms)",
            file=sys.stderr,
        )
    print(
        f"{'QUICK' if a.quick else 'FULL'} run: N={n} workers, {repeats} repeat(s), "
        f"per-run limit {timeout:.0f} s; sizes: {wl.sizes_dict(sizes)}",
        file=sys.stderr,
    )
    load_start = os.getloadavg()
    runs: list[dict[str, Any]] = []
    installed = {s: SYSTEMS[s].missing() is None for s in systems}
    total = sum(installed.values()) * len(units) * repeats
    done = 0
    started = time.perf_counter()
    for rep in range(repeats):
        for u, unit in enumerate(units):
            # A different order for each (repeat, workload): a run right after
            # a heavy peer (Ray's daemons shutting down, say) is not always the
            # same system's, so the median is not biased against one.
            shift = (rep + u) % len(systems)
            for name in systems[shift:] + systems[:shift]:
                if not installed[name]:
                    if rep == 0:
                        runs.append(
                            {
                                "system": name,
                                "unit": unit,
                                "status": "not installed",
                                "error": SYSTEMS[name].missing(),
                                "repeat": rep,
                            }
                        )
                    continue
                done += 1
                result = spawn_one(name, unit, n, a.quick, rate, timeout)
                result["repeat"] = rep
                runs.append(result)
                print(
                    f"[{done}/{total}] {unit:9} {name:16} rep {rep + 1}: {_progress(result)} "
                    f"({result.get('elapsed_s', 0):.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )

    rows = summarize(runs, systems, units)
    table = render(rows, systems)
    header = (
        f"pel benchmarks ({'quick' if a.quick else 'full'}): N={n} workers, {repeats} repeat(s), "
        f"medians; {time.perf_counter() - started:.0f} s"
    )
    if a.quick:
        header += (
            f"\nQUICK sizes (not the WORKLOADS.md ones): W1 {sizes.w1_tasks} tasks, "
            f"W2 {sizes.w2_items} items, W3 {sizes.w3_trips} trips, W4 {sizes.w4_tasks} x "
            f"{sizes.w4_task_s * 1e3:.0f} ms, W5 {sizes.w5_tasks} tasks / {sizes.w5_serial_s:g} s, "
            f"W6 {sizes.w6_mb} MB, W7 {sizes.w7_leaves} leaves"
        )
    print(header)
    print(table)

    machine = machine_info(systems, load_start)
    machine["loadavg_at_end"] = os.getloadavg()
    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "mode": "quick" if a.quick else "full",
        "workers": n,
        "repeats": repeats,
        "timeout_s": timeout,
        "sizes": wl.sizes_dict(sizes),
        "spin_iterations_per_s": rate,
        "machine": machine,
        "systems": {
            s: {
                "installed": installed[s],
                "missing": SYSTEMS[s].missing(),
                "how": SYSTEMS[s].notes,
            }
            for s in systems
        },
        "rows": rows,
        "runs": runs,
        "table": table,
    }
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
