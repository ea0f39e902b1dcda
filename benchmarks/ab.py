"""Interleaved A/B runs: pel at two checkouts, or pel and a peer, on one workload.

    python -m benchmarks.ab W7 --against /tmp/old/src           # this pel vs another
    python -m benchmarks.ab W2 --peers mp-pool --rounds 11       # pel vs a peer
    python -m benchmarks.ab W7 --against /tmp/old/src --peers mp-pool

The machines these benchmarks run on are shared: a figure drifts by a third
from one minute to the next, and a change worth 5-15% is lost in that drift
when its runs come minutes apart (as with ``benchmarks.run --repeats``, which
runs a workload's repeats back to back). Here the candidates alternate run
by run, each run in a fresh process as ``benchmarks.run`` does it, so the
drift falls on all of them alike; the medians are compared.

``--against SRC`` runs a second pel from another checkout's ``src`` directory
(for instance a ``git worktree add /tmp/old <commit>``), put first on the
``PYTHONPATH`` of its runs and so of their workers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Any

from . import run
from .systems import cpu_count


def _metric(unit: str) -> str:
    """The workload's first rate (higher is better), else its first time."""
    rows = [row for row in run.ROWS if row.unit == unit]
    for better in ("higher", "lower"):
        for row in rows:
            if row.better == better:
                return row.key
    raise SystemExit(f"no figure to compare for workload {unit!r}")


def _one(system: str, src: str | None, unit: str, workers: int, timeout: float) -> Any:
    saved = os.environ.get("PYTHONPATH")
    if src is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = src
    try:
        result = run.spawn_one(system, unit, workers, False, None, timeout)
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.split("\n")[0])
    p.add_argument("workload", help="one unit of benchmarks.run, such as W7 or W5-map")
    p.add_argument("--against", metavar="SRC", help="another pel's src directory")
    p.add_argument("--peers", default="", help="comma list of peer systems to add")
    p.add_argument("--rounds", type=int, default=11, help="runs per candidate (default 11)")
    p.add_argument("--metric", help="the figure to compare (default: the workload's first)")
    p.add_argument("--workers", type=int, default=cpu_count())
    p.add_argument("--timeout", type=float, default=300.0, help="per-run limit, s")
    args = p.parse_args(argv)
    metric = args.metric or _metric(args.workload)
    candidates: list[tuple[str, str, str | None]] = [("pel", "pel", None)]
    if args.against:
        candidates.append((f"pel@{args.against}", "pel", os.path.abspath(args.against)))
    candidates += [(peer, peer, None) for peer in args.peers.split(",") if peer]
    run._byte_compile()
    if args.against:
        import compileall

        compileall.compile_dir(os.path.abspath(args.against), quiet=1)
    values: dict[str, list[float]] = {label: [] for label, _, _ in candidates}
    for round_ in range(args.rounds):
        for label, system, src in candidates:
            result = _one(system, src, args.workload, args.workers, args.timeout)
            value = result.get("metrics", {}).get(metric)
            if value is None:
                print(f"round {round_ + 1}: {label}: {result.get('status')}: {result.get('error')}")
                continue
            values[label].append(value)
            print(f"round {round_ + 1}: {label}: {metric}={value:,.6g}", flush=True)
    print(f"\n{args.workload} {metric}, medians of {args.rounds} interleaved runs:")
    first = statistics.median(values["pel"]) if values["pel"] else None
    for label, got in values.items():
        if not got:
            print(f"  {label:30s} no result")
            continue
        median = statistics.median(got)
        ratio = f"  {median / first:5.2f}x pel's" if first and label != "pel" else ""
        spread = f"{min(got):,.6g} - {max(got):,.6g}"
        print(f"  {label:30s} {median:>14,.6g}{ratio}   (range {spread})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
