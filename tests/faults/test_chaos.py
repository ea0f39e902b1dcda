"""Chaos: the W7 task graph while a random worker is SIGKILLed every 100 ms.

The benchmark command (``python -m benchmarks.chaos``) runs 20 executors, each
until 5 workers were killed; this is the short version: one executor, the
graph summed until 3 were, each sum right, no hang, no process left.
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
    # One tree takes ~0.1 s, about one kill interval: sum it again and again
    # (each checked) until a few workers were killed under it.
    ex = make_executor(2)
    with kill_workers(ex, interval=0.1, seed=0) as killer:
        for _ in range(200):
            assert tree_sum(ex, LEAVES) == LEAVES * (LEAVES - 1) // 2
            if len(killer.killed) >= 3:
                break
    ex.shutdown(wait=True)
    assert wait_for_exit(killer.seen, timeout=10) == []
    assert len(killer.killed) >= 3, f"only {len(killer.killed)} workers were killed"
