"""The ``pel`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pel", description="pel: a parallel execution layer")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the showcase workload and print the speedup")
    demo.add_argument("--workers", type=_positive_int, default=None, help="default: one per core")
    demo.add_argument(
        "--scale", type=_positive_float, default=1.0, help="work per task (1.0: a few seconds)"
    )
    args = parser.parse_args(argv)
    if args.command == "demo":
        from . import _demo

        _demo.run(sys.stdout, workers=args.workers, scale=args.scale)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
