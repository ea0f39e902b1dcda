"""Chaos: the W7 task graph while a random worker is SIGKILLed every 100 ms.

The benchmark command (``python -m benchmarks.chaos``) runs the full graph 20
times in a row; this is the short version: runs until a few workers were
killed, each run with the right sum, no hang, no process left.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import pel
import tasks
from pel.testing import kill_workers, wait_for_exit

LEAVES = 4096  # 8,191 tasks, as W7


@pytest.fixture
def backend() -> str:
    return "processes"


def tree_sum(ex: pel.Executor, leaves: int) -> Any:
    level: list[Any] = [ex.submit(tasks.identity, i) for i in range(leaves)]
    while len(level) > 1:
        level = [ex.submit(tasks.add, a, b) for a, b in zip(level[::2], level[1::2], strict=True)]
    return level[0].result(timeout=120)


def test_task_graph_survives_workers_killed_every_100ms(
    make_executor: Callable[..., pel.Executor],
) -> None:
    kills = 0
    for run in range(10):
        ex = make_executor(2)
        with kill_workers(ex, interval=0.1, seed=run) as killer:
            assert tree_sum(ex, LEAVES) == LEAVES * (LEAVES - 1) // 2
        ex.shutdown(wait=True)
        assert wait_for_exit(killer.seen, timeout=10) == []
        kills += len(killer.killed)
        if kills >= 3:
            break
    assert kills >= 3, f"only {kills} workers were killed in 10 runs"
