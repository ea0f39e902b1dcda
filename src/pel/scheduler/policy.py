"""Numbers the scheduler decides by: prefetch depth, chunk size, estimates.

Plain functions of measured durations, so each rule can be read, tested and
tuned on its own.
"""

from __future__ import annotations

import math

#: Share of a worker's time we accept to lose waiting for its next task
#: rather than queue one behind a task that may turn out to be long.
IDLE_TOLERANCE = 0.02
MAX_PREFETCH = 512
#: Before anything is measured, a worker holds this many tasks: one, so no
#: task waits behind one whose length is unknown (and priorities hold).
INITIAL_PREFETCH = 1
#: Weight of a new sample in the moving averages.
SMOOTHING = 0.2
#: A map chunk should take about this long: long enough that the per-message
#: overhead is a few percent, short enough to balance.
TARGET_CHUNK_SECONDS = 0.02
MAX_CHUNK = 50_000
#: Chunks shrink toward the end of a map, but not below this much work: a
#: smaller one costs more in its round trip than it can save in balance.
MIN_TAIL_SECONDS = 0.002
#: Before an item has been timed, chunks are single items: probes that cost
#: one round trip each and never lump several long items together.
INITIAL_CHUNK = 1


def smooth(previous: float | None, sample: float) -> float:
    """Exponentially weighted moving average; the first sample stands alone."""
    if previous is None:
        return sample
    return previous + SMOOTHING * (sample - previous)


def timed_items(
    totals: tuple[float, float] | None, seconds: float, items: int
) -> tuple[float, float]:
    """Decayed totals ``(seconds, items)`` of the map chunks timed so far;
    their ratio is the time per item.

    Weighted by items, not by chunk: a one-item probe, whose time is mostly
    the fixed cost of a chunk, must not weigh as much as a chunk of 20,000
    (averaged per chunk, the probes kept chunks 10x too small for thousands
    of items after).
    """
    if totals is None:
        return seconds, float(items)
    keep = 1.0 - SMOOTHING
    return totals[0] * keep + seconds, totals[1] * keep + items


def prefetch_depth(task_seconds: float | None, overhead_seconds: float) -> int:
    """How many tasks a worker should hold (running + queued), by Little's law.

    To never wait, a worker needs ``1 + overhead / task`` tasks in flight: the
    one running plus enough to cover a round trip. When a round trip is under
    ``IDLE_TOLERANCE`` of a task, one task at a time is better: nothing queues
    behind a task that may be long, so the queue stays with the scheduler,
    which balances it.
    """
    if task_seconds is None:
        return INITIAL_PREFETCH
    ratio = overhead_seconds / max(task_seconds, 1e-9)
    if ratio < IDLE_TOLERANCE:
        return 1
    return min(MAX_PREFETCH, 1 + math.ceil(ratio))


def chunk_size(
    item_seconds: float | None, workers: int, remaining: int | None, max_chunk: int = MAX_CHUNK
) -> int:
    """Items per map chunk: about ``TARGET_CHUNK_SECONDS`` of work.

    When the number of items left is known (the input is exhausted, or has a
    length), no chunk takes more than ``remaining / (2 * workers)``, so the
    chunks shrink toward the end and no worker is left with a long tail
    (guided self-scheduling); but not below ``MIN_TAIL_SECONDS`` of work.
    """
    if item_seconds is None:
        size = INITIAL_CHUNK
    else:
        size = int(TARGET_CHUNK_SECONDS / max(item_seconds, 1e-9))
    if remaining is not None:
        floor = 1 if item_seconds is None else int(MIN_TAIL_SECONDS / max(item_seconds, 1e-9))
        share = math.ceil(remaining / (2 * max(workers, 1)))
        size = min(size, max(floor, share), remaining)
    return max(1, min(size, max_chunk))


#: No retry waits longer than this, however many came before.
MAX_RETRY_DELAY = 30.0


def retry_delay(first: float, attempt: int, key: int) -> float:
    """Exponential backoff with jitter: about ``first * 2**(attempt - 1)``.

    The jitter (x0.5 to x1.5) spreads out retries of tasks that failed
    together, so they do not all hit a flaky resource at once again. It is a
    hash of the task and attempt, not a random draw: the scheduler stays
    deterministic, and a replay gives the same delays.
    """
    jitter = 0.5 + ((key * 2654435761 + attempt * 40503) % 1000) / 1000
    return min(MAX_RETRY_DELAY, first * 2.0 ** (attempt - 1) * jitter)
