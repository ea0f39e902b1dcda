"""When a worker holds finished results back to send them with the next ones.

Quick single calls' results are batched (one message for several), but never
behind a map chunk: a chunk's length follows its size, which the map changes
from chunk to chunk, so the chunks before say nothing about the next.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from pel.backends.processes.worker import _Worker


@pytest.fixture
def worker() -> Iterator[_Worker]:
    read_fd, write_fd = os.pipe()
    yield _Worker(read_fd, write_fd)
    os.close(read_fd)
    os.close(write_fd)


def _finished_quick_call(worker: _Worker, fn_id: int) -> None:
    worker.expected[fn_id] = 1e-6  # measured quick
    worker.unsent.append((0, True, b"result", 1e-6))
    worker.first_unsent = time.perf_counter()


def test_results_wait_behind_a_quick_single_call(worker: _Worker) -> None:
    _finished_quick_call(worker, fn_id=7)
    worker.queue.append((1, 7, b"", [], False, 0))
    assert worker._may_hold()


def test_results_never_wait_behind_a_map_chunk(worker: _Worker) -> None:
    _finished_quick_call(worker, fn_id=7)
    worker.queue.append((1, 7, b"", [], True, 0))
    assert not worker._may_hold()
