"""Executor.map: order, chunking, laziness, errors from the function and the input."""

from __future__ import annotations

import concurrent.futures
import itertools
import operator
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pel
from tasks import add, fail_at, identity, wait_for_file

CHUNKSIZES = [1, 3, "auto", 10_000]


class Counted:
    """Wraps an iterable and counts the items taken from it."""

    def __init__(self, items: Iterable[Any]) -> None:
        self._items = iter(items)
        self.taken = 0

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        item = next(self._items)
        self.taken += 1
        return item


class InputBroke(Exception):
    pass


def breaks_after(n: int, error: BaseException) -> Iterator[int]:
    yield from range(n)
    raise error


def test_map_ordered(ex: pel.Executor) -> None:
    assert list(ex.map(add, range(500), range(500))) == [2 * i for i in range(500)]


@pytest.mark.parametrize("chunksize", CHUNKSIZES)
def test_map_chunksizes(ex: pel.Executor, chunksize: int | str) -> None:
    out = list(ex.map(identity, range(300), chunksize=chunksize))
    assert out == list(range(300))


@pytest.mark.parametrize("chunksize", CHUNKSIZES)
@pytest.mark.parametrize("kind", [list, tuple])
def test_map_slices_a_list_or_tuple_input(
    ex: pel.Executor, chunksize: int | str, kind: Any
) -> None:
    items = kind(range(300))
    assert list(ex.map(identity, items, chunksize=chunksize)) == list(range(300))
    assert sorted(ex.map(identity, items, chunksize=chunksize, ordered=False)) == list(range(300))


def test_map_hints_how_many_results_are_left(ex: pel.Executor) -> None:
    """list() sizes its list from the hint: the items not yet handed out
    when the input has a length (give or take the chunk being read), else
    no hint; none once the map is closed or done."""
    results = ex.map(identity, range(1000), chunksize=100)
    assert operator.length_hint(results) == 1000
    assert next(results) == 0
    assert 800 <= operator.length_hint(results) <= 1000
    results.close()
    assert operator.length_hint(results) == 0
    assert operator.length_hint(ex.map(identity, iter(range(10)))) == 0
    done = ex.map(identity, [1, 2, 3])
    assert list(done) == [1, 2, 3]
    assert operator.length_hint(done) == 0


def test_map_unordered_yields_every_result(ex: pel.Executor) -> None:
    out = list(ex.map(add, range(500), range(500), ordered=False, chunksize=7))
    assert sorted(out) == [2 * i for i in range(500)]


def test_map_unordered_yields_results_as_they_arrive(ex: pel.Executor, tmp_path: Path) -> None:
    release, ready = tmp_path / "release", tmp_path / "ready"
    ready.touch()
    if ex.backend == "inline":
        release.touch()  # inline runs each item at once, so item 0 must not block
    out = ex.map(
        wait_for_file, [str(release), str(ready)], ["held", "quick"], chunksize=1, ordered=False
    )
    first = next(out)
    release.touch()
    rest = list(out)
    if ex.backend == "inline":
        assert [first, *rest] == ["held", "quick"]
    else:
        assert [first, *rest] == ["quick", "held"]


def test_map_several_iterables_stop_at_the_shortest(ex: pel.Executor) -> None:
    assert list(ex.map(add, range(10), range(100, 105))) == [100, 102, 104, 106, 108]
    assert list(ex.map(add, iter(range(10)), itertools.count(100))) == [
        100 + 2 * i for i in range(10)
    ]
    assert list(ex.map(add, [1, 2, 3], (10, 20, 30))) == [11, 22, 33]


@pytest.mark.parametrize("ordered", [True, False])
def test_map_empty_input(ex: pel.Executor, ordered: bool) -> None:
    assert list(ex.map(identity, [], ordered=ordered)) == []
    assert list(ex.map(add, [], range(10), ordered=ordered)) == []
    assert list(ex.map(identity, iter([]), ordered=ordered)) == []


def test_map_lambda(ex: pel.Executor) -> None:
    assert list(ex.map(lambda x: x * x, range(20))) == [x * x for x in range(20)]


@pytest.mark.parametrize("chunksize", [2, "auto"])
def test_map_reads_a_generator_lazily(ex: pel.Executor, chunksize: int | str) -> None:
    items = Counted(range(5000))
    out = ex.map(identity, items, chunksize=chunksize)
    # Nothing consumed yet: only the first window of chunks was read.
    assert items.taken < (100 if chunksize == 2 else 1000)
    assert next(out) == 0
    assert list(out) == list(range(1, 5000))
    assert items.taken == 5000


def test_map_endless_input_with_islice(ex: pel.Executor) -> None:
    items = Counted(itertools.count())
    out = ex.map(add, items, itertools.repeat(1), chunksize=4)
    assert list(itertools.islice(out, 50)) == list(range(1, 51))
    out.close()  # type: ignore[attr-defined]
    # The read-ahead is a few chunks per worker, not the whole input.
    assert items.taken < 50 + 200


def test_map_endless_input_auto_chunks_stay_bounded(ex: pel.Executor) -> None:
    items = Counted(itertools.count())
    out = ex.map(identity, items)
    assert list(itertools.islice(out, 1000)) == list(range(1000))
    out.close()  # type: ignore[attr-defined]
    # Chunks grow for fast items, but the read-ahead stays a bounded window.
    assert items.taken < 1_000_000


def test_a_closed_map_is_not_drained_at_shutdown(make_executor: Any) -> None:
    """shutdown() submits the rest of every map still open; a closed one is
    not open (over an endless input, draining it ran out of memory)."""
    items = Counted(itertools.islice(itertools.count(), 3_000_000))  # ends if drained
    ex = make_executor(2)
    out = ex.map(identity, items)
    assert next(out) == 0
    out.close()
    ex.shutdown()
    assert items.taken < 1_000_000


@pytest.mark.parametrize("chunksize", CHUNKSIZES)
def test_map_raises_the_function_error_at_its_position_then_goes_on(
    ex: pel.Executor, chunksize: int | str
) -> None:
    out = ex.map(fail_at, range(50), itertools.repeat(17), chunksize=chunksize)
    got = []
    with pytest.raises(ValueError, match="bad item 17") as info:
        for value in out:
            got.append(value)
    assert got == list(range(17))
    assert "raised for input item 17 of Executor.map" in info.value.__notes__
    # The iterator stays usable: it goes on with the next items.
    assert list(out) == list(range(18, 50))
    if ex.backend == "processes":
        assert isinstance(info.value.__cause__, pel.RemoteTraceback)
        assert "in fail_at" in str(info.value.__cause__)


def test_map_unordered_raises_the_function_error(ex: pel.Executor) -> None:
    got = []
    with pytest.raises(ValueError, match="bad item 5"):
        for value in ex.map(fail_at, range(10), itertools.repeat(5), ordered=False, chunksize=1):
            got.append(value)
    assert 5 not in got
    assert set(got) <= set(range(10))


@pytest.mark.parametrize("chunksize", CHUNKSIZES)
@pytest.mark.parametrize("ordered", [True, False])
def test_map_input_error_comes_after_the_items_before_it(
    ex: pel.Executor, chunksize: int | str, ordered: bool
) -> None:
    error = InputBroke("input broke")
    out = ex.map(identity, breaks_after(40, error), chunksize=chunksize, ordered=ordered)
    got = []
    with pytest.raises(InputBroke) as info:
        for value in out:
            got.append(value)
    assert info.value is error
    assert sorted(got) == list(range(40))
    if ordered:
        assert got == list(range(40))


def test_map_input_error_at_the_start_is_raised_on_iteration(ex: pel.Executor) -> None:
    error = InputBroke("nothing to read")
    out = ex.map(identity, breaks_after(0, error))  # map itself does not raise
    with pytest.raises(InputBroke) as info:
        next(out)
    assert info.value is error


@pytest.mark.parametrize("ordered", [True, False])
def test_map_timeout(ex: pel.Executor, tmp_path: Path, ordered: bool) -> None:
    release = tmp_path / "release"
    if ex.backend == "inline":
        # Inline computes the results inside map(); waiting for a result that
        # is already there never times out, even with timeout=0.
        assert list(ex.map(add, range(5), range(5), timeout=0, ordered=ordered)) == [
            0,
            2,
            4,
            6,
            8,
        ]
        return
    out = ex.map(wait_for_file, [str(release)] * 2, chunksize=1, timeout=0.1, ordered=ordered)
    with pytest.raises(concurrent.futures.TimeoutError):
        next(out)
    release.touch()


def test_map_timeout_not_reached(ex: pel.Executor) -> None:
    assert list(ex.map(add, range(100), range(100), timeout=30)) == [2 * i for i in range(100)]


def test_map_many_items(ex: pel.Executor) -> None:
    assert sum(ex.map(add, range(20_000), range(20_000))) == 2 * sum(range(20_000))


def test_map_bad_options(ex: pel.Executor) -> None:
    with pytest.raises(pel.OptionError):
        ex.map(identity, range(3), chunksize=0)
    with pytest.raises(ValueError):
        ex.map(identity, range(3), timeout=-1)
    with pytest.raises(TypeError):
        ex.map(identity)


def test_closing_a_map_never_iterated_cancels_its_queued_chunks(ex: pel.Executor) -> None:
    out = ex.map(identity, range(1000), chunksize=1)
    out.close()  # type: ignore[attr-defined]
    assert list(out) == []
    assert ex.submit(identity, 5).result(timeout=30) == 5


def test_map_results_can_be_read_after_the_with_block(make_executor: Any) -> None:
    """concurrent.futures submits a whole map at the call; pel's lazy map is
    drained at shutdown so this common pattern still works."""
    with make_executor(2) as ex:
        out = ex.map(identity, range(5000))
    assert sum(out) == sum(range(5000))


def test_map_items_that_are_object_refs_arrive_as_their_objects(ex: pel.Executor) -> None:
    ref = ex.put([1, 2, 3])
    assert list(ex.map(len, [ref] * 3)) == [3, 3, 3]
    assert list(ex.map(add, [ref, ref], [[4], [5]])) == [[1, 2, 3, 4], [1, 2, 3, 5]]
