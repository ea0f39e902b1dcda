"""Bad input: each mistake gets pel's error type and a message that names it.

Checks that need no executor run once; the rest run on every backend through
the ``make_executor`` fixture, except pickling, which only the processes
backend does.
"""

from __future__ import annotations

import concurrent.futures
import pickle
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import pel
import tasks
from pel.graph import toposort

RESULT_TIMEOUT = 30


@dataclass
class Box:
    """An object pel does not look into for futures."""

    content: Any


# -- not a callable -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fn", "type_name"), [(42, "int"), ("tasks.identity", "str"), (None, "NoneType")]
)
def test_submit_needs_a_callable(
    make_executor: Callable[..., pel.Executor], fn: Any, type_name: str
) -> None:
    ex = make_executor(1)
    with pytest.raises(TypeError, match=type_name):
        ex.submit(fn, 1)
    assert ex.submit(tasks.identity, 1).result(timeout=RESULT_TIMEOUT) == 1


@pytest.mark.parametrize(("fn", "type_name"), [(42, "int"), ([tasks.identity], "list")])
def test_map_needs_a_callable(
    make_executor: Callable[..., pel.Executor], fn: Any, type_name: str
) -> None:
    ex = make_executor(1)
    with pytest.raises(TypeError, match=type_name):
        ex.map(fn, [1, 2])  # at the call, not when the results are read


def test_map_needs_an_iterable(make_executor: Callable[..., pel.Executor]) -> None:
    ex = make_executor(1)
    with pytest.raises(TypeError):
        ex.map(tasks.identity)


# -- options --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, "2", 2.0, True])
def test_bad_max_workers(backend: str, bad: Any) -> None:
    with pytest.raises(pel.OptionError, match="max_workers") as info:
        pel.Executor(bad, backend=backend)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, pel.PelError)
    assert repr(bad) in str(info.value) or str(bad) in str(info.value)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "4", True, "Auto"])
def test_bad_chunksize(make_executor: Callable[..., pel.Executor], bad: Any) -> None:
    ex = make_executor(1)
    with pytest.raises(pel.OptionError, match="chunksize") as info:
        ex.map(tasks.identity, [1, 2, 3], chunksize=bad)
    assert isinstance(info.value, ValueError)
    assert repr(bad) in str(info.value)
    # The executor is unharmed.
    assert list(ex.map(tasks.identity, [1, 2, 3], chunksize=2)) == [1, 2, 3]


@pytest.mark.parametrize("bad", [-1, "1"])
def test_bad_map_timeout(make_executor: Callable[..., pel.Executor], bad: Any) -> None:
    ex = make_executor(1)
    with pytest.raises(pel.OptionError, match="timeout"):
        ex.map(tasks.identity, [1], timeout=bad)


@pytest.mark.parametrize("name", ["gpu", "Processes", "", None])
def test_unknown_backend_lists_the_valid_names(name: Any) -> None:
    with pytest.raises(pel.OptionError) as info:
        pel.Executor(2, backend=name)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert repr(name) in message
    for valid in ("processes", "threads", "inline"):
        assert valid in message


def test_bad_initializer_and_initargs(backend: str) -> None:
    with pytest.raises(pel.OptionError, match="initializer"):
        pel.Executor(1, backend=backend, initializer=42)  # type: ignore[arg-type]
    with pytest.raises(pel.OptionError, match="initargs"):
        pel.Executor(1, backend=backend, initializer=tasks.identity, initargs=[1])  # type: ignore[arg-type]


def test_an_initializer_that_cannot_be_pickled_is_refused_at_construction() -> None:
    """The processes backend sends the initializer to each worker: one that
    cannot be pickled is named at construction, not at the first submit."""
    import threading

    lock = threading.Lock()
    with pytest.raises(pel.OptionError, match="initargs cannot be pickled"):
        pel.Executor(1, initializer=tasks.identity, initargs=(lock,))


@pytest.mark.parametrize("backend", ["threads", "inline"])
def test_mp_context_is_for_processes_only(backend: str) -> None:
    with pytest.raises(pel.OptionError, match="mp_context"):
        pel.Executor(1, backend=backend, mp_context="spawn")


def test_unknown_start_method() -> None:
    with pytest.raises(pel.OptionError, match="mp_context"):
        pel.Executor(1, backend="processes", mp_context="teleport")
    with pytest.raises(pel.OptionError, match="mp_context"):
        pel.Executor(1, backend="processes", mp_context=3.14)


# -- after shutdown ---------------------------------------------------------------------------


def test_submit_and_map_after_shutdown(make_executor: Callable[..., pel.Executor]) -> None:
    ex = make_executor(2)
    assert ex.submit(tasks.identity, 1).result(timeout=RESULT_TIMEOUT) == 1
    ex.shutdown()
    with pytest.raises(pel.ExecutorShutdownError) as info:
        ex.submit(tasks.identity, 2)
    assert isinstance(info.value, RuntimeError)
    with pytest.raises(pel.ExecutorShutdownError):
        ex.map(tasks.identity, [1, 2])
    ex.shutdown()  # twice is fine


def test_submit_after_the_with_block(make_executor: Callable[..., pel.Executor]) -> None:
    with make_executor(1) as ex:
        pass  # never used: shutdown before any worker started
    with pytest.raises(pel.ExecutorShutdownError):
        ex.submit(tasks.identity, 1)


def test_submit_after_shutdown_without_wait(make_executor: Callable[..., pel.Executor]) -> None:
    ex = make_executor(1)
    running = ex.submit(tasks.sleep_then, 0.05, "done")
    ex.shutdown(wait=False)
    with pytest.raises(pel.ExecutorShutdownError):
        ex.submit(tasks.identity, 1)
    assert running.result(timeout=RESULT_TIMEOUT) == "done"


# -- futures where they do not belong ---------------------------------------------------------


def test_a_future_of_another_executor(make_executor: Callable[..., pel.Executor]) -> None:
    first, second = make_executor(1), make_executor(1)
    foreign = first.submit(tasks.identity, 1)
    with pytest.raises(pel.ForeignFutureError) as info:
        second.submit(tasks.identity, foreign)
    assert isinstance(info.value, ValueError)
    assert "identity" in str(info.value)
    assert foreign.result(timeout=RESULT_TIMEOUT) == 1


# -- pickling (processes only) -----------------------------------------------------------------


class TestPickling:
    """Only the processes backend pickles calls and results."""

    @pytest.fixture
    def backend(self) -> str:
        return "processes"

    @pytest.fixture
    def processes(self, ex: pel.Executor) -> pel.Executor:
        return ex

    def test_unpicklable_positional_argument(self, processes: pel.Executor) -> None:
        with pytest.raises(pel.SerializationError) as info:
            processes.submit(tasks.add, 1, threading.Lock())
        message = str(info.value)
        assert isinstance(info.value, pickle.PicklingError)
        assert "argument 1" in message
        assert "'add'" in message
        assert "lock" in message.lower()
        # Nothing was sent; the executor works.
        assert processes.submit(tasks.add, 1, 2).result(timeout=RESULT_TIMEOUT) == 3

    def test_unpicklable_keyword_argument(self, processes: pel.Executor) -> None:
        with pytest.raises(pel.SerializationError) as info:
            processes.submit(tasks.add, 1, lock=threading.Lock())
        message = str(info.value)
        assert "keyword argument 'lock'" in message
        assert "'add'" in message

    def test_unpicklable_argument_next_to_a_future(self, processes: pel.Executor) -> None:
        """The slow path (the call holds a dependency) names the culprit too."""
        dep = processes.submit(tasks.identity, 1)
        with pytest.raises(pel.SerializationError) as info:
            processes.submit(tasks.add, dep, threading.Lock())
        assert "argument 1" in str(info.value)
        assert "'add'" in str(info.value)
        assert dep.result(timeout=RESULT_TIMEOUT) == 1

    def test_unpicklable_result(self, processes: pel.Executor) -> None:
        future = processes.submit(tasks.unpicklable_result)
        exc = future.exception(timeout=RESULT_TIMEOUT)
        assert isinstance(exc, pel.SerializationError), repr(exc)
        assert "result" in str(exc)
        assert "lock" in str(exc).lower()
        # The worker survived it.
        assert processes.submit(tasks.identity, 7).result(timeout=RESULT_TIMEOUT) == 7

    def test_dependent_of_an_unpicklable_result(self, processes: pel.Executor) -> None:
        bad = processes.submit(tasks.unpicklable_result)
        child = processes.submit(tasks.identity, bad)
        exc = child.exception(timeout=RESULT_TIMEOUT)
        assert isinstance(exc, pel.DependencyError), repr(exc)
        assert isinstance(exc.__cause__, pel.SerializationError)

    def test_a_future_nested_in_an_object(self, processes: pel.Executor) -> None:
        dep = processes.submit(tasks.identity, 1)
        with pytest.raises(pel.SerializationError) as info:
            processes.submit(tasks.identity, Box(dep))
        message = str(info.value)
        assert "'identity'" in message
        assert "nested" in message
        # It says where pel does look for futures.
        for where in ("argument", "lists", "tuples", "dict"):
            assert where in message
        assert dep.result(timeout=RESULT_TIMEOUT) == 1

    @pytest.mark.parametrize("chunksize", [1, 4, "auto"])
    def test_unpicklable_map_item_is_named_by_index(
        self, processes: pel.Executor, chunksize: Any
    ) -> None:
        items: list[Any] = list(range(12))
        items[9] = threading.Lock()
        got = []
        with pytest.raises(pel.SerializationError, match=r"item 9\b") as info:
            got.extend(processes.map(tasks.identity, items, chunksize=chunksize))
        assert "lock" in str(info.value).lower()
        assert got == list(range(len(got)))  # what came first came right
        assert processes.submit(tasks.identity, 1).result(timeout=RESULT_TIMEOUT) == 1

    def test_a_future_as_map_item(self, processes: pel.Executor) -> None:
        dep = processes.submit(tasks.identity, 1)
        with pytest.raises(pel.SerializationError, match=r"item 1\b"):
            list(processes.map(tasks.identity, [0, dep, 2], chunksize=1))
        assert dep.result(timeout=RESULT_TIMEOUT) == 1
        assert processes.submit(tasks.identity, 2).result(timeout=RESULT_TIMEOUT) == 2


@pytest.mark.parametrize("backend", ["threads", "inline"])
def test_threads_and_inline_do_not_pickle(make_executor: Callable[..., pel.Executor]) -> None:
    ex = make_executor(1)
    lock = threading.Lock()
    assert ex.submit(tasks.identity, lock).result(timeout=RESULT_TIMEOUT) is lock
    assert isinstance(
        ex.submit(tasks.unpicklable_result).result(timeout=RESULT_TIMEOUT), type(lock)
    )


# -- task graphs given whole ----------------------------------------------------------------------


def test_toposort_names_the_cycle() -> None:
    graph = {"load": [], "a": ["load", "c"], "b": ["a"], "c": ["b"], "d": ["c"]}
    with pytest.raises(pel.CycleError) as info:
        toposort(graph)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "cycle" in message
    for key in ("'a'", "'b'", "'c'"):
        assert key in message
    assert "'load'" not in message
    assert "'d'" not in message
    # The loop is written as a path that comes back to where it started.
    path = message.split(":", 1)[1].strip().split(" -> ")
    assert path[0] == path[-1]
    assert set(path) == {"'a'", "'b'", "'c'"}


def test_toposort_self_loop() -> None:
    with pytest.raises(pel.CycleError, match="'x' -> 'x'"):
        toposort({"x": ["x"]})


def test_toposort_missing_dependency() -> None:
    with pytest.raises(KeyError, match="'ghost'"):
        toposort({"a": ["ghost"]})


# -- an input that fails part way ---------------------------------------------------------------


class InputBroke(Exception):
    pass


def breaking_input(count: int) -> Iterator[int]:
    yield from range(count)
    raise InputBroke(f"input broke after {count}")


@pytest.mark.parametrize("chunksize", [1, 3, "auto"])
@pytest.mark.parametrize("count", [0, 1, 10, 100])
def test_input_raising_in_the_middle_of_map(
    make_executor: Callable[..., pel.Executor], chunksize: Any, count: int
) -> None:
    ex = make_executor(2)
    got = []
    with pytest.raises(InputBroke, match=f"after {count}"):
        for value in ex.map(tasks.add, breaking_input(count), range(1000), chunksize=chunksize):
            got.append(value)
    assert got == [2 * i for i in range(count)]
    assert ex.submit(tasks.identity, 1).result(timeout=RESULT_TIMEOUT) == 1


def test_input_raising_in_unordered_map(make_executor: Callable[..., pel.Executor]) -> None:
    ex = make_executor(2)
    got = []
    with pytest.raises(InputBroke):
        for value in ex.map(tasks.identity, breaking_input(30), chunksize=2, ordered=False):
            got.append(value)
    assert sorted(got) == list(range(30))


def test_task_error_in_map_after_the_results_before_it(
    make_executor: Callable[..., pel.Executor],
) -> None:
    ex = make_executor(2)
    got = []
    with pytest.raises(ZeroDivisionError):
        for value in ex.map(divmod, [10] * 20, [1] * 7 + [0] + [1] * 12, chunksize=3):
            got.append(value)
    assert got == [(10, 0)] * 7


def test_map_errors_are_not_wrapped(make_executor: Callable[..., pel.Executor]) -> None:
    """A task's own exception keeps its type (concurrent.futures semantics)."""
    ex = make_executor(1)
    future = ex.submit(tasks.fail, "bad value")
    with pytest.raises(ValueError, match="bad value"):
        future.result(timeout=RESULT_TIMEOUT)
    assert not isinstance(future.exception(), pel.PelError)
    assert not isinstance(future.exception(), concurrent.futures.BrokenExecutor)
