"""Running calls: what every worker body shares, in a worker process or not.

Kept apart from :mod:`.base` (the backend interface and its records) and
light to import: a worker process imports this module as it starts, and the
first task waits for that.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from itertools import islice, starmap

TYPE_CHECKING = False  # not typing's: importing it costs a worker's start-up
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ISOLATE", "TIMED", "RetrySpec", "remote_error", "run_chunk"]

#: Call flags. TIMED: report when the call starts (it has a timeout).
#: ISOLATE: send every finished result before and right after the call (a
#: retry after a crash: nothing else's result may die with it).
TIMED = 1
ISOLATE = 2


def remote_error(exc: BaseException) -> BaseException:
    """Attach the formatted traceback as ``__cause__``, as the caller will see it."""
    import traceback  # here: its imports (and pel's errors') would slow every worker's start

    from .._errors import RemoteTraceback

    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    exc.__cause__ = RemoteTraceback(f'\n"""\n{tb}"""')
    return exc


def run_chunk(
    fn: Callable[..., Any], chunk: tuple[bool, Sequence[Any], RetrySpec | None]
) -> tuple[list[Any], list[tuple[int, BaseException]] | None, float]:
    """Apply ``fn`` to each item of a map chunk.

    ``chunk`` is ``(star, items, retry)``: items are argument tuples when
    ``star`` (map over several iterables), else single arguments; ``retry`` is
    ``(retries, retry_on, first delay)`` or ``None``. Returns ``(results,
    errors, seconds)``: a result per item (``None`` where the item failed),
    the failures as ``(index, error)`` with their tracebacks as cause, or
    ``None``, and the time it took, from which ``map`` tunes its chunk size.
    An item that raises one of ``retry_on`` is run again here, after a backoff
    waited in this worker (the items after it wait too). Its jitter is its
    own: a random number drawn per chunk plus the item's place in it, so
    items that failed together, in this chunk or in others, do not retry
    together.
    The loop is C's: ``list.extend`` keeps what it appended before an
    exception, and carries on from the next item.
    """
    star, items, retry = chunk
    start = time.perf_counter()
    results: list[Any] = []
    errors: list[tuple[int, BaseException]] | None = None
    salt: int | None = None  # drawn at the first retry: this chunk's jitter
    count = len(items)
    while len(results) < count:
        done = len(results)
        rest = items if not done else islice(items, done, None)
        try:
            results.extend(starmap(fn, rest) if star else map(fn, rest))
        except Exception as exc:
            index = len(results)
            if retry is not None and salt is None:
                salt = int.from_bytes(os.urandom(4), "little")  # not random: an import
            ok, value = _retry_item(fn, items[index], star, retry, exc, (salt or 0) + index)
            if not ok:
                if errors is None:
                    errors = []
                errors.append((index, remote_error(value)))
                value = None
            results.append(value)
    return results, errors, time.perf_counter() - start


#: ``(retries, retry_on, first delay)`` for the items of a map chunk.
RetrySpec = tuple[int, tuple[type[BaseException], ...], float]


def _retry_item(
    fn: Callable[..., Any],
    item: Any,
    star: bool,
    retry: RetrySpec | None,
    error: Exception,
    jitter_key: int,
) -> tuple[bool, Any]:
    if retry is None:
        return False, error
    retries, retry_on, first_delay = retry
    for attempt in range(1, retries + 1):
        if not isinstance(error, retry_on):
            break
        from ..scheduler.policy import retry_delay  # here: workers need not import it

        time.sleep(retry_delay(first_delay, attempt, jitter_key))
        try:
            return True, fn(*item) if star else fn(item)
        except Exception as again:
            error = again
    return False, error
