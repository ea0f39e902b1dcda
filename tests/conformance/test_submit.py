"""submit(): results, arguments, exceptions, task options, initializers, volume."""

from __future__ import annotations

import concurrent.futures
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import pel
from pel.testing import wait_until
from tasks import (
    TaskError,
    add,
    echo,
    fail,
    high_priority,
    identity,
    init_state,
    pid,
    raise_task_error,
    record_init,
    total,
)

from ._gate import Gate, MakeExecutor


def test_submit_returns_a_pel_future_with_the_result(ex: pel.Executor) -> None:
    fut = ex.submit(add, 1, 2)
    assert isinstance(fut, pel.Future)
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(timeout=30) == 3
    assert fut.done()
    assert not fut.cancelled()
    assert fut.exception() is None
    assert fut.name == "add"


def test_each_future_gets_its_own_key(ex: pel.Executor) -> None:
    futures = [ex.submit(identity, i) for i in range(10)]
    assert len({f.key for f in futures}) == 10
    assert [f.result(timeout=30) for f in futures] == list(range(10))


def test_args_and_kwargs_arrive_as_given(ex: pel.Executor) -> None:
    fut = ex.submit(echo, 1, "two", [3], x=4, y={"five": 5})
    assert fut.result(timeout=30) == ((1, "two", [3]), {"x": 4, "y": {"five": 5}})
    assert ex.submit(add, 1, y=2).result(timeout=30) == 3
    assert ex.submit(add, x=1, y=2).result(timeout=30) == 3
    assert ex.submit(echo).result(timeout=30) == ((), {})


def test_a_keyword_named_fn_goes_to_the_task(ex: pel.Executor) -> None:
    # submit(fn, /, *args, **kwargs): the callable is positional-only.
    assert ex.submit(echo, fn=1).result(timeout=30) == ((), {"fn": 1})


def test_lambdas_and_closures_run(ex: pel.Executor) -> None:
    offset = 10
    assert ex.submit(lambda x: x + offset, 5).result(timeout=30) == 15

    def make_adder(n: int) -> Callable[[int], int]:
        def adder(x: int) -> int:
            return x + n

        return adder

    assert ex.submit(make_adder(3), 4).result(timeout=30) == 7


def test_large_argument_and_result_round_trip(ex: pel.Executor) -> None:
    blob = os.urandom(1 << 22)
    assert ex.submit(identity, blob).result(timeout=30) == blob


def test_exception_keeps_its_type_and_message(ex: pel.Executor) -> None:
    fut = ex.submit(fail, "it broke")
    with pytest.raises(ValueError, match="it broke"):
        fut.result(timeout=30)
    exc = fut.exception()
    assert type(exc) is ValueError
    assert exc.args == ("it broke",)


def test_builtin_exceptions_keep_their_type(ex: pel.Executor) -> None:
    with pytest.raises(ZeroDivisionError):
        ex.submit(lambda x: 1 / x, 0).result(timeout=30)
    with pytest.raises(KeyError, match="missing"):
        ex.submit(lambda: {}["missing"]).result(timeout=30)


def test_custom_exception_keeps_type_and_attributes(ex: pel.Executor) -> None:
    fut = ex.submit(raise_task_error, "custom", detail={"code": 7})
    with pytest.raises(TaskError, match="custom") as info:
        fut.result(timeout=30)
    assert info.value.detail == {"code": 7}  # type: ignore[attr-defined]


def test_processes_error_cause_is_the_remote_traceback(ex: pel.Executor) -> None:
    exc = ex.submit(fail, "remote boom").exception(timeout=30)
    assert isinstance(exc, ValueError)
    if ex.backend != "processes":
        return  # in-process backends raise the task's exception with its own traceback
    cause = exc.__cause__
    assert isinstance(cause, pel.RemoteTraceback)
    text = str(cause)
    assert "Traceback (most recent call last)" in text
    assert "tasks.py" in text
    assert "in fail" in text
    assert "raise ValueError(message)" in text
    assert "ValueError: remote boom" in text


def test_result_timeout_raises_timeout_error(ex: pel.Executor, tmp_path: Path) -> None:
    with Gate(ex, tmp_path) as gate:
        fut = ex.submit(add, gate.future, 1)
        if gate.holds:
            with pytest.raises(concurrent.futures.TimeoutError):
                fut.result(timeout=0.05)
            with pytest.raises(concurrent.futures.TimeoutError):
                fut.exception(timeout=0)
            assert not fut.done()
        else:  # inline: done when submit returns, so no wait can time out
            assert fut.result(timeout=0) == 1
    assert fut.result(timeout=30) == 1


def test_many_tasks_all_complete(ex: pel.Executor) -> None:
    futures = [ex.submit(add, i, i) for i in range(5000)]
    assert [f.result(timeout=60) for f in futures] == [2 * i for i in range(5000)]


def test_decorated_task_uses_its_name(ex: pel.Executor) -> None:
    fut = ex.submit(high_priority, 42)
    assert fut.name == "high"
    assert fut.result(timeout=30) == 42
    assert high_priority(7) == 7  # calling it runs it here


def test_task_wrapping_an_importable_function(ex: pel.Executor) -> None:
    # pel.task(fn, ...) called on a module-level function, not as a decorator.
    named = pel.task(add, name="adder", priority=3)
    fut = ex.submit(named, 1, 2)
    assert fut.name == "adder"
    assert fut.result(timeout=30) == 3


def test_task_with_options(ex: pel.Executor) -> None:
    renamed = high_priority.with_options(name="higher", priority=20)
    fut = ex.submit(renamed, 5)
    assert fut.name == "higher"
    assert fut.result(timeout=30) == 5


def _stamp(priority: int) -> pel.TaskFunction[..., int]:
    """A task with ``priority`` that returns when it ran (a lambda goes by value)."""
    return pel.task(lambda *_after: time.monotonic_ns(), priority=priority)


def _order_by_start(futures: dict[int, pel.Future[int]]) -> list[int]:
    stamps = {priority: fut.result(timeout=30) for priority, fut in futures.items()}
    return sorted(stamps, key=stamps.__getitem__)


def test_priority_orders_queued_tasks(make_executor: MakeExecutor, tmp_path: Path) -> None:
    # One worker, held busy (its prefetch slots too, on a fresh executor): the
    # tasks submitted meanwhile queue, then run highest priority first.
    ex = make_executor(1)
    priorities = [2, -5, 7, 0, 11, 3]
    with Gate(ex, tmp_path) as gate:
        futures = {p: ex.submit(_stamp(p)) for p in priorities}
        if gate.holds:
            assert not any(f.done() for f in futures.values())
    expected = sorted(priorities, reverse=True) if gate.holds else priorities
    assert _order_by_start(futures) == expected


def test_priority_orders_tasks_that_become_ready_together(
    make_executor: MakeExecutor, tmp_path: Path
) -> None:
    ex = make_executor(1)
    priorities = [1, 4, -2, 9, 0]
    with Gate(ex, tmp_path) as gate:
        futures = {p: ex.submit(_stamp(p), gate.future) for p in priorities}
    expected = sorted(priorities, reverse=True) if gate.holds else priorities
    assert _order_by_start(futures) == expected


def test_initializer_runs_once_in_each_worker(make_executor: MakeExecutor, tmp_path: Path) -> None:
    marks = tmp_path / "init"
    marks.mkdir()
    ex = make_executor(2, initializer=record_init, initargs=(str(marks), "ready"))
    futures = [ex.submit(init_state) for _ in range(20)]
    assert [f.result(timeout=30) for f in futures] == ["ready"] * 20
    expected = ex.max_workers  # 2, but 1 for inline
    assert wait_until(lambda: len(list(marks.iterdir())) >= expected, timeout=30)
    names = sorted(p.name for p in marks.iterdir())
    assert len(names) == expected
    if ex.backend == "processes":
        assert {int(n.split("-")[0]) for n in names} == set(ex.worker_pids())
        assert ex.submit(pid).result(timeout=30) in ex.worker_pids()
    else:
        assert {int(n.split("-")[0]) for n in names} == {os.getpid()}


def test_sum_of_many_submitted_results(ex: pel.Executor) -> None:
    parts = [ex.submit(total, range(i * 100, (i + 1) * 100)) for i in range(50)]
    assert sum(f.result(timeout=30) for f in parts) == sum(range(5000))


def test_a_task_can_submit_more_work(backend: str, ex: pel.Executor) -> None:
    """In-process backends share the executor with their tasks (a processes
    worker cannot receive it: it does not pickle). On inline the inner task
    runs after the outer one, so the outer one must not wait for it."""
    if backend == "processes":
        pytest.skip("an executor cannot be sent to a worker process")
    outer = ex.submit(lambda: ex.submit(add, 1, 2))
    assert outer.result(timeout=30).result(timeout=30) == 3
