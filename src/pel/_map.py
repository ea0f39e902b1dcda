"""The driver behind ``Executor.map``: lazy input, chunks, a bounded window.

It runs in the caller's thread, inside the generator ``map`` returns. It
keeps at most ``WINDOW_PER_WORKER * workers`` chunks in flight and reads the
input only to fill them (plus a look-ahead of ``LOOKAHEAD_CHUNKS`` chunks,
which is how it learns that the end is near when the input has no length).
Chunk sizes come from :func:`pel.scheduler.policy.chunk_size`, fed with the
per-item time measured on each finished chunk.

The first chunks are submitted when ``map`` is called, so work starts at once,
as with ``concurrent.futures``; the rest follow as results are consumed.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sized
from itertools import islice
from typing import Any, Literal

from ._futures import Future
from .scheduler import policy

__all__ = ["MapRun"]

WINDOW_PER_WORKER = 3
LOOKAHEAD_CHUNKS = 2

SubmitChunk = Callable[[list[tuple[Any, ...]], int], "Future[Any]"]


class MapRun:
    def __init__(
        self,
        submit_chunk: SubmitChunk,
        iterables: tuple[Iterable[Any], ...],
        workers: int,
        timeout: float | None,
        chunksize: int | Literal["auto"],
        ordered: bool,
    ) -> None:
        self._submit_chunk = submit_chunk
        self._items: Iterator[tuple[Any, ...]] = zip(*iterables)  # noqa: B905 - shortest input ends map, as built-in map
        self._total = (
            min(len(it) for it in iterables if isinstance(it, Sized))
            if all(isinstance(it, Sized) for it in iterables)
            else None
        )
        self._workers = workers
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._fixed = None if chunksize == "auto" else chunksize
        self._ordered = ordered
        self._buffer: deque[tuple[Any, ...]] = deque()
        self._pulled = 0  # items read from the input
        self._sent = 0  # items put in chunks
        self._exhausted = False
        self._input_error: BaseException | None = None
        self._item_seconds: float | None = None
        self._inflight: deque[Future[Any]] = deque()
        try:
            self._fill()
        except BaseException:
            self._cancel_inflight()
            raise

    def _cancel_inflight(self) -> None:
        for future in self._inflight:
            future.cancel()

    # -- input ---------------------------------------------------------------------

    def _remaining(self) -> int | None:
        if self._exhausted:
            return len(self._buffer)
        if self._total is not None:
            return self._total - self._sent
        return None

    def _chunk_size(self) -> int:
        if self._fixed is not None:
            return self._fixed
        return policy.chunk_size(self._item_seconds, self._workers, self._remaining())

    def _pull(self, count: int) -> None:
        before = len(self._buffer)
        try:
            # deque.extend keeps the items read before an exception.
            self._buffer.extend(islice(self._items, count))
        except Exception as exc:
            self._input_error = exc
            self._exhausted = True
        got = len(self._buffer) - before
        self._pulled += got
        if got < count:
            self._exhausted = True

    def _next_chunk(self) -> list[tuple[Any, ...]]:
        size = self._chunk_size()
        want = size * (LOOKAHEAD_CHUNKS if self._fixed is None else 1)
        if not self._exhausted and len(self._buffer) < want:
            self._pull(want - len(self._buffer))
            if self._exhausted:
                size = self._chunk_size()
        take = min(size, len(self._buffer))
        return [self._buffer.popleft() for _ in range(take)]

    def _fill(self) -> None:
        limit = WINDOW_PER_WORKER * self._workers
        while len(self._inflight) < limit:
            chunk = self._next_chunk()
            if not chunk:
                return
            self._inflight.append(self._submit_chunk(chunk, self._sent))
            self._sent += len(chunk)

    # -- output --------------------------------------------------------------------

    def _timeout(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def _next_done(self) -> Future[Any]:
        if self._ordered:
            return self._inflight.popleft()
        done, _ = concurrent.futures.wait(
            self._inflight, self._timeout(), return_when=concurrent.futures.FIRST_COMPLETED
        )
        if not done:
            raise TimeoutError("map() timed out")
        # Oldest first among those done, so the order is stable.
        future = next(f for f in self._inflight if f in done)
        self._inflight.remove(future)
        return future

    def results(self) -> Iterator[Any]:
        try:
            while self._inflight:
                future = self._next_done()
                values, error, seconds = future.result(self._timeout())
                if values:
                    self._item_seconds = policy.smooth(self._item_seconds, seconds / len(values))
                self._fill()
                yield from values
                if error is not None:
                    raise error
            if self._input_error is not None:
                error = self._input_error
                if hasattr(error, "add_note"):
                    error.add_note(
                        f"raised by the input of Executor.map after {self._pulled} items"
                    )
                raise error
        finally:
            self._cancel_inflight()
