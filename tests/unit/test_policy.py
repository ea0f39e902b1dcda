"""Unit tests for pel.scheduler.policy: prefetch depth, chunk size, smoothing."""

from __future__ import annotations

import math

import pytest

from pel.scheduler import policy
from pel.scheduler.policy import (
    IDLE_TOLERANCE,
    INITIAL_CHUNK,
    INITIAL_PREFETCH,
    MAX_CHUNK,
    MAX_PREFETCH,
    MIN_TAIL_SECONDS,
    SMOOTHING,
    TARGET_CHUNK_SECONDS,
    chunk_size,
    prefetch_depth,
    smooth,
    timed_items,
)

# -- smooth --------------------------------------------------------------------------


def test_smooth_first_sample_stands_alone() -> None:
    assert smooth(None, 3.5) == 3.5
    assert smooth(None, 0.0) == 0.0


def test_smooth_moves_toward_the_sample_by_the_weight() -> None:
    assert smooth(10.0, 20.0) == pytest.approx(10.0 + SMOOTHING * 10.0)
    assert smooth(10.0, 0.0) == pytest.approx(10.0 * (1 - SMOOTHING))
    assert smooth(5.0, 5.0) == 5.0


def test_smooth_converges_to_a_steady_sample() -> None:
    value: float | None = None
    for _ in range(200):
        value = smooth(value, 1.0 if value is not None else 100.0)
    assert value == pytest.approx(1.0, rel=1e-6)


def test_smooth_stays_between_previous_and_sample() -> None:
    for prev, sample in [(1.0, 2.0), (2.0, 1.0), (0.0, 1e-6), (1e6, 1.0)]:
        out = smooth(prev, sample)
        assert min(prev, sample) <= out <= max(prev, sample)


# -- prefetch_depth ------------------------------------------------------------------


def test_prefetch_before_any_measurement() -> None:
    assert prefetch_depth(None, 0.0) == INITIAL_PREFETCH
    assert prefetch_depth(None, 10.0) == INITIAL_PREFETCH


@pytest.mark.parametrize(
    ("task", "overhead", "expected"),
    [
        (1.0, 1.0, 2),  # ratio 1: one running + one covering the round trip
        (0.5, 1.25, 4),  # ratio 2.5 -> 1 + ceil(2.5)
        (0.25, 0.75, 4),  # ratio 3 -> 1 + 3
        (0.001, 0.0001, 2),  # ratio 0.1 -> 1 + 1
        (2.0**-20, 200 * 2.0**-20, 201),  # exact binary fractions: ratio 200
    ],
)
def test_prefetch_littles_law(task: float, overhead: float, expected: int) -> None:
    assert prefetch_depth(task, overhead) == expected
    assert prefetch_depth(task, overhead) == 1 + math.ceil(overhead / task)


def test_prefetch_is_one_below_idle_tolerance() -> None:
    task = 1.0
    assert prefetch_depth(task, 0.0) == 1
    assert prefetch_depth(task, task * IDLE_TOLERANCE * 0.99) == 1
    # at the threshold queueing starts again: 1 + ceil(0.02) = 2
    assert prefetch_depth(task, task * IDLE_TOLERANCE) == 2
    assert prefetch_depth(task, task * IDLE_TOLERANCE * 1.01) == 2


def test_prefetch_long_tasks_hold_one() -> None:
    assert prefetch_depth(10.0, 200e-6) == 1
    assert prefetch_depth(0.1, 1e-3) == 1


def test_prefetch_is_capped() -> None:
    assert prefetch_depth(1e-9, 1.0) == MAX_PREFETCH
    assert prefetch_depth(1e-3, 1.0) == MAX_PREFETCH
    assert prefetch_depth(1.0, (MAX_PREFETCH - 1) * 1.0) == MAX_PREFETCH


def test_prefetch_zero_task_time_does_not_divide_by_zero() -> None:
    assert prefetch_depth(0.0, 1e-4) == MAX_PREFETCH
    assert prefetch_depth(0.0, 0.0) == 1


def test_prefetch_never_rises_as_tasks_get_longer() -> None:
    overhead = 300e-6
    depths = [prefetch_depth(10.0**exp, overhead) for exp in range(-9, 3)]
    assert depths == sorted(depths, reverse=True)
    assert all(1 <= d <= MAX_PREFETCH for d in depths)
    assert depths[0] == MAX_PREFETCH
    assert depths[-1] == 1


# -- chunk_size ------------------------------------------------------------------------


def test_chunk_before_any_measurement() -> None:
    assert chunk_size(None, 4, None) == INITIAL_CHUNK
    assert chunk_size(None, 4, 10_000) == INITIAL_CHUNK


@pytest.mark.parametrize(
    ("item", "expected"),
    [(0.001, 20), (0.0001, 200), (0.004, 5), (1e-6, 20_000), (0.05, 1), (100.0, 1)],
)
def test_chunk_targets_a_duration(item: float, expected: int) -> None:
    assert chunk_size(item, 4, None) == expected
    assert expected == max(1, int(TARGET_CHUNK_SECONDS / item))


def test_chunk_clamped_to_max() -> None:
    assert chunk_size(1e-12, 4, None) == MAX_CHUNK
    assert chunk_size(0.0, 4, None) == MAX_CHUNK
    assert chunk_size(1e-9, 1, None, max_chunk=100) == 100
    assert chunk_size(None, 1, None, max_chunk=5) == min(INITIAL_CHUNK, 5)


def test_chunk_at_least_one() -> None:
    assert chunk_size(1e6, 8, None) == 1
    assert chunk_size(1e-6, 8, 0) == 1
    assert chunk_size(1e-6, 8, 1) == 1
    assert chunk_size(None, 1, None, max_chunk=0) == 1


@pytest.mark.parametrize(
    ("remaining", "workers", "expected"),
    [(100_000, 4, 12_500), (100_001, 4, 12_501), (200_000, 2, 20_000), (20_000, 2, 5_000)],
)
def test_chunk_limited_by_remaining(remaining: int, workers: int, expected: int) -> None:
    assert chunk_size(1e-6, workers, remaining) == expected
    target, share = int(TARGET_CHUNK_SECONDS / 1e-6), math.ceil(remaining / (2 * workers))
    assert expected == min(target, share)


@pytest.mark.parametrize(
    ("remaining", "expected"), [(10_000, 2_000), (2_001, 2_000), (1_500, 1_500)]
)
def test_the_tail_does_not_shrink_below_its_floor(remaining: int, expected: int) -> None:
    # 1 us items: the guided share would be remaining / 8, but a chunk is
    # never less than MIN_TAIL_SECONDS of work (2,000 items), unless fewer remain.
    assert int(MIN_TAIL_SECONDS / 1e-6) == 2_000
    assert chunk_size(1e-6, 4, remaining) == expected


def test_chunk_zero_workers_counts_as_one() -> None:
    assert chunk_size(1e-4, 0, 100) == 50


def test_chunk_never_more_than_guided_share_or_floor() -> None:
    for item in (None, 1e-9, 1e-6, 1e-4, 1e-2, 1.0):
        for workers in (1, 2, 3, 8, 64):
            for remaining in (0, 1, 2, 7, 100, 999, 12_345, 10**7):
                size = chunk_size(item, workers, remaining)
                assert 1 <= size <= MAX_CHUNK
                floor = 1 if item is None else int(MIN_TAIL_SECONDS / item)
                share = math.ceil(remaining / (2 * workers))
                assert size <= max(1, min(remaining, max(share, floor))), (
                    item,
                    workers,
                    remaining,
                    size,
                )


def test_chunks_shrink_toward_the_end() -> None:
    workers = 4
    remaining = 100_000
    sizes = []
    while remaining > 0:
        size = chunk_size(1e-6, workers, remaining)
        sizes.append(size)
        remaining -= size
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[0] == 12_500
    assert all(size == 2_000 for size in sizes[-5:-1])  # the floor, then what is left
    assert len(sizes) < 40  # without the floor: 56, down to chunks of 1 item
    assert sum(sizes) == 100_000


def test_timed_items_weighs_chunks_by_their_items() -> None:
    # Six one-item probes at 1 us (mostly fixed cost), then a chunk of
    # 20,000 items at 0.1 us each: the estimate follows the chunk.
    totals = None
    for _ in range(6):
        totals = timed_items(totals, 1e-6, 1)
    totals = timed_items(totals, 20_000 * 1e-7, 20_000)
    assert totals[0] / totals[1] == pytest.approx(1e-7, rel=0.01)


def test_timed_items_forgets_old_chunks() -> None:
    totals = timed_items(None, 1.0, 100)  # 10 ms an item
    for _ in range(30):
        totals = timed_items(totals, 0.1, 100)  # then 1 ms
    assert totals[0] / totals[1] == pytest.approx(1e-3, rel=0.01)


def test_policy_constants_are_sane() -> None:
    assert 0 < IDLE_TOLERANCE < 1
    assert 0 < SMOOTHING <= 1
    assert INITIAL_PREFETCH >= 1
    assert 1 <= INITIAL_CHUNK <= MAX_CHUNK
    assert policy.MAX_PREFETCH == MAX_PREFETCH
