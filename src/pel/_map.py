"""The driver behind ``Executor.map``: lazy input, chunks, a bounded window.

It runs in the caller's thread, inside the iterator ``map`` returns. It
keeps ``WINDOW_PER_WORKER * workers`` chunks running or queued, and at most
``HELD_PER_WORKER * workers`` in all, finished ones waiting to be yielded in
order included. It reads the input only to fill them, plus a look-ahead of
``LOOKAHEAD_CHUNKS`` chunks, which is how it learns that the end is near when
the input has no length.
Chunk sizes come from :func:`pel.scheduler.policy.chunk_size`, fed with the
per-item time measured on each finished chunk.

The first chunks are submitted when ``map`` is called, so work starts at once,
as with ``concurrent.futures``; the rest follow as results are consumed.

An item that fails raises its error at its place in the results, and the
iterator stays usable: ``next()`` goes on with the next item (a ``for`` loop
stops at the error, as with ``concurrent.futures``). A chunk that takes its
worker down is split by the runtime until the item that does it is alone;
that item fails with ``WorkerCrashedError``, every other result arrives.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence, Sized
from itertools import chain, islice
from typing import Any, Literal, cast

from ._futures import Future
from .scheduler import policy

__all__ = ["MapResults", "MapRun"]

WINDOW_PER_WORKER = 3
#: With ordered results, finished chunks wait behind a slow one; the window
#: refills as they finish (workers keep busy), up to this many held.
HELD_PER_WORKER = 12
LOOKAHEAD_CHUNKS = 2

#: ``submit_chunk((star, items), index of the first item)``
SubmitChunk = Callable[[tuple[bool, Sequence[Any]], int], "Future[Any]"]


class MapResults(chain):  # type: ignore[type-arg]
    """What ``Executor.map`` returns: an iterator over the results.

    An ``itertools.chain`` over the finished chunks, so stepping through the
    results runs no Python code per item (a generator costs 4x as much), with
    a generator's ``close()``: it stops the map and cancels unstarted chunks.
    """

    __slots__ = ("_chunks", "_run")
    _chunks: Generator[list[Any] | _ItemsWithErrors, None, None]
    _run: MapRun

    def __length_hint__(self) -> int:
        """The items not yet handed out, at most (``list()`` sizes its list
        once, instead of growing it item by item); 0 when the input has no
        length, or the map is closed."""
        return self._run.left()

    def close(self) -> None:
        self._chunks.close()
        # A generator never started runs no finally: cancel here too.
        self._run._cancel_inflight()


class _ItemsWithErrors:
    """A chunk's results where some items failed: raises each error at its
    place, and goes on with the next item when asked again.

    ``itertools.chain`` keeps an iterator that raised as its current one, so
    the results iterator carries on past an error; chunks without errors
    are plain lists and cost no Python code per item.
    """

    __slots__ = ("_errors", "_first", "_index", "_values")

    def __init__(
        self, values: list[Any], errors: list[tuple[int, BaseException]], first: int
    ) -> None:
        self._values = values
        self._errors = dict(errors)
        self._first = first
        self._index = 0

    def __iter__(self) -> _ItemsWithErrors:
        return self

    def __next__(self) -> Any:
        index = self._index
        if index >= len(self._values):
            raise StopIteration
        self._index = index + 1
        error = self._errors.get(index)
        if error is None:
            return self._values[index]
        # One error may stand for several items (their chunk failed as a
        # whole): it says so once, in the note _annotate gave it.
        _annotate(error, f"raised for input item {self._first + index} of Executor.map")
        raise error.with_traceback(None)


_NOTE_PREFIX = "raised for input item"


def _annotate(error: BaseException, note: str) -> None:
    """Add pel's note saying which item(s) failed, unless it has one already."""
    add_note = getattr(error, "add_note", None)  # Python 3.11+
    notes = getattr(error, "__notes__", ())
    if add_note is not None and not any(n.startswith(_NOTE_PREFIX) for n in notes):
        add_note(note)


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
        # One iterable: items are the values themselves (no 1-tuples to build,
        # pickle and unpack); several: argument tuples, for starmap.
        self._star = len(iterables) > 1
        self._items: Iterator[Any] = (
            zip(*iterables)  # noqa: B905 - the shortest input ends map, as built-in map
            if self._star
            else iter(iterables[0])
        )
        #: One list or tuple: chunks are sliced from it, not read through the
        #: buffer (one copy of each item reference instead of three).
        first = iterables[0]
        self._source = (
            first if not self._star and (type(first) is list or type(first) is tuple) else None
        )
        self._total = (
            min(len(it) for it in iterables if isinstance(it, Sized))
            if all(isinstance(it, Sized) for it in iterables)
            else None
        )
        self._workers = workers
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._fixed = None if chunksize == "auto" else chunksize
        self._ordered = ordered
        # Items read ahead: a list and the index of the first unsent one, so a
        # chunk is one C-speed slice.
        self._buffer: list[Any] = []
        self._start = 0
        self._pulled = 0  # items read from the input
        self._sent = 0  # items put in chunks
        self._yielded = 0  # items in the chunks handed to the results iterator
        self._exhausted = False
        self._input_error: BaseException | None = None
        #: Decayed (seconds, items) of the chunks timed so far: see policy.timed_items.
        self._timed: tuple[float, float] | None = None
        self._inflight: deque[Future[Any]] = deque()
        #: Index of the first item and number of items of each chunk in flight.
        self._spans: dict[Future[Any], tuple[int, int]] = {}
        # The consumer fills from its thread; shutdown() drains from its own.
        self._lock = threading.RLock()
        self._draining = False
        #: Its results were closed (or ended): nothing more is read or sent,
        #: at shutdown either (an endless input is never drained).
        self._closed = False
        try:
            self._fill()
        except BaseException:
            self._cancel_inflight()
            raise

    def _cancel_inflight(self) -> None:
        with self._lock:
            self._closed = True
            pending = list(self._inflight)
        for future in pending:
            # Running chunks finish (killing their workers would cost more).
            future.cancel_pending()

    # -- input ---------------------------------------------------------------------

    def _buffered(self) -> int:
        return len(self._buffer) - self._start

    def left(self) -> int:
        """Results not yet handed out (give or take the chunk being read),
        when the input has a length and the map is open; else 0."""
        if self._total is None or self._closed:
            return 0
        return max(0, self._total - self._yielded)

    def _remaining(self) -> int | None:
        if self._exhausted:
            return self._buffered()
        if self._total is not None:
            return self._total - self._sent
        return None

    def _chunk_size(self) -> int:
        if self._fixed is not None:
            return self._fixed
        timed = self._timed
        item_seconds = None if timed is None else timed[0] / timed[1]
        return policy.chunk_size(item_seconds, self._workers, self._remaining())

    def _pull(self, count: int) -> None:
        if self._start:
            del self._buffer[: self._start]
            self._start = 0
        before = len(self._buffer)
        try:
            # list.extend keeps the items read before an exception.
            self._buffer.extend(islice(self._items, count))
        except Exception as exc:
            self._input_error = exc
            self._exhausted = True
        got = len(self._buffer) - before
        self._pulled += got
        if got < count:
            self._exhausted = True

    def _next_chunk(self) -> Sequence[Any]:
        if self._source is not None:
            chunk = self._source[self._sent : self._sent + self._chunk_size()]
            self._pulled = self._sent + len(chunk)
            return chunk
        size = self._chunk_size()
        want = size * (LOOKAHEAD_CHUNKS if self._fixed is None else 1)
        if not self._exhausted and self._buffered() < want:
            self._pull(want - self._buffered())
            if self._exhausted:
                size = self._chunk_size()
        chunk = self._buffer[self._start : self._start + size]
        self._start += len(chunk)
        return chunk

    def _fill(self) -> None:
        with self._lock:
            if self._closed:
                return
            limit = WINDOW_PER_WORKER * self._workers
            held = HELD_PER_WORKER * self._workers
            unfinished = sum(1 for f in self._inflight if not f.done())
            while self._draining or (unfinished < limit and len(self._inflight) < held):
                chunk = self._next_chunk()
                if not chunk:
                    return
                future = self._submit_chunk((self._star, chunk), self._sent)
                self._inflight.append(future)
                self._spans[future] = (self._sent, len(chunk))
                self._sent += len(chunk)
                unfinished += 1

    def drain(self) -> None:
        """Submit all the input left: the executor is shutting down.

        ``concurrent.futures`` submits a whole map at the call, so its results
        can be read after the ``with`` block; this keeps that true. Reads the
        rest of the input, so a map over an endless one must be closed first.
        """
        with self._lock:
            if self._closed:
                return
            self._draining = True
            self._fill()

    # -- output --------------------------------------------------------------------

    def _timeout(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def _next_done(self) -> Future[Any]:
        # _inflight is only read under the lock: shutdown() may drain (append
        # to it) from another thread; the waits themselves hold no lock.
        if self._ordered:
            head = self._inflight[0]
            while not head.done():
                self._fill()  # chunks behind the head finished: keep workers busy
                with self._lock:
                    running = [f for f in self._inflight if not f.done()]
                if running:  # else the head finished meanwhile
                    self._wait_any(running)
            with self._lock:
                return self._inflight.popleft()
        with self._lock:
            candidates = list(self._inflight)
        done = self._wait_any(candidates)
        with self._lock:
            # Oldest first among those done, so the order is stable.
            future = next(f for f in self._inflight if f in done)
            self._inflight.remove(future)
        return future

    def _wait_any(self, futures: list[Future[Any]]) -> set[Future[Any]]:
        done, _ = concurrent.futures.wait(
            futures, self._timeout(), return_when=concurrent.futures.FIRST_COMPLETED
        )
        if not done:
            raise TimeoutError("map() timed out")
        return cast("set[Future[Any]]", done)

    def results(self) -> MapResults:
        """The results, item by item: chunk lists chained at C speed (see
        :class:`_ItemsWithErrors` for chunks where items failed)."""
        chunks = self._chunks()
        # from_iterable builds an instance of the class it is called on.
        results = cast(MapResults, MapResults.from_iterable(chunks))
        results._chunks = chunks
        results._run = self
        return results

    def _chunks(self) -> Generator[list[Any] | _ItemsWithErrors, None, None]:
        try:
            while self._inflight:
                future = self._next_done()
                first, count = self._spans.pop(future)
                failure = future.exception(self._timeout())
                if failure is not None:
                    # The chunk failed as a whole (its result could not be
                    # sent back, say): each of its items fails with that error.
                    self._fill()
                    if count > 1:
                        _annotate(
                            failure,
                            f"{_NOTE_PREFIX}s {first} to {first + count - 1} of Executor.map "
                            f"(raised for each: their chunk failed as a whole)",
                        )
                    errors = [(i, failure) for i in range(count)]
                    self._yielded += count
                    yield _ItemsWithErrors([None] * count, errors, first)
                    continue
                values, errors, seconds = future.result()
                if values:
                    self._timed = policy.timed_items(self._timed, seconds, len(values))
                self._fill()
                self._yielded += count
                yield values if errors is None else _ItemsWithErrors(values, errors, first)
            if self._input_error is not None:
                error = self._input_error
                if hasattr(error, "add_note"):
                    error.add_note(
                        f"raised by the input of Executor.map after {self._pulled} items"
                    )
                raise error
        finally:
            self._cancel_inflight()
