"""Timeouts and retries of ``map`` items, exactly as docs/guide.md states them.

- A chunk of n items may run for n x timeout in all: a slow item is caught
  only when its chunk as a whole runs past that (then the chunk is split
  down to the item, which alone has ``timeout``).
- An item retried in its chunk (``retry_on``) waits its backoff in the
  worker, with a jitter of its own.
"""

from __future__ import annotations

from typing import Any

import pytest

import pel
from pel.backends import base
from tasks import sleep_then

SLOW = 3.0  # seconds: past a 1 s timeout, well within a chunk's 8 x 1 s


def test_a_slow_item_within_its_chunk_s_budget_is_delivered() -> None:
    with pel.Executor(1, task_timeout=1.0, retries=0) as ex:
        items = [0.0] * 7 + [SLOW]
        assert list(ex.map(sleep_then, items, range(8), chunksize=8)) == list(range(8))


def test_the_same_item_alone_times_out_after_timeout() -> None:
    with pel.Executor(1, task_timeout=1.0, retries=0) as ex:
        results = ex.map(sleep_then, [SLOW], chunksize=1)
        with pytest.raises(pel.TaskTimeoutError, match="timeout of 1 s per item"):
            next(results)


class Flaky:
    """Fails the first time it sees each item, then returns it."""

    def __init__(self) -> None:
        self.seen: set[Any] = set()

    def __call__(self, item: Any) -> Any:
        if item not in self.seen:
            self.seen.add(item)
            raise ConnectionError(item)
        return item


def test_items_retried_in_one_chunk_each_get_their_own_jitter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(base.time, "sleep", waits.append)
    first = 0.1
    results, errors, _ = base.run_chunk(
        Flaky(), (False, [10, 11, 12, 13], (2, (ConnectionError,), first))
    )
    assert results == [10, 11, 12, 13] and errors is None
    assert len(waits) == 4, "one backoff per item, waited in the worker"
    assert all(0.5 * first <= w <= 1.5 * first for w in waits), waits
    assert len(set(waits)) == 4, f"items that failed together wait alike: {waits}"
