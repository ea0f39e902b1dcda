"""Task graphs: futures passed as arguments are dependencies."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest

import pel
from tasks import add, echo, fail, failing_root, identity, total

from ._gate import Gate, MakeExecutor

WAIT = 30


def test_chain(ex: pel.Executor) -> None:
    a = ex.submit(add, 1, 1)
    b = ex.submit(add, a, 1)
    c = ex.submit(add, b, 1)
    assert c.result(timeout=WAIT) == 4
    assert (a.result(), b.result()) == (2, 3)


def test_long_chain(ex: pel.Executor) -> None:
    fut = ex.submit(identity, 0)
    for _ in range(100):
        fut = ex.submit(add, fut, 1)
    assert fut.result(timeout=WAIT) == 100


def test_diamond(ex: pel.Executor) -> None:
    top = ex.submit(add, 1, 1)
    left = ex.submit(add, top, 10)
    right = ex.submit(add, top, 100)
    bottom = ex.submit(add, left, right)
    assert bottom.result(timeout=WAIT) == 12 + 102


def test_fan_in_via_a_list(ex: pel.Executor) -> None:
    parts = [ex.submit(add, i, i) for i in range(100)]
    assert ex.submit(total, parts).result(timeout=WAIT) == sum(2 * i for i in range(100))


def test_fan_out_and_in(ex: pel.Executor) -> None:
    root = ex.submit(identity, 3)
    middle = [ex.submit(add, root, i) for i in range(20)]
    assert ex.submit(total, middle).result(timeout=WAIT) == sum(3 + i for i in range(20))


def test_futures_in_tuples_dicts_sets_and_nesting(ex: pel.Executor) -> None:
    one, two, three = (ex.submit(identity, v) for v in (1, 2, 3))
    call = ex.submit(
        echo,
        (one, "plain"),
        {"two": two, "nested": [three, (one, {"deep": two})]},
        {one, two},
        frozenset({three}),
        key={"k": three},
    )
    args, kwargs = call.result(timeout=WAIT)
    assert args == (
        (1, "plain"),
        {"two": 2, "nested": [3, (1, {"deep": 2})]},
        {1, 2},
        frozenset({3}),
    )
    assert type(args[3]) is frozenset
    assert kwargs == {"key": {"k": 3}}


def test_future_as_keyword_argument(ex: pel.Executor) -> None:
    x = ex.submit(identity, 5)
    y = ex.submit(identity, 7)
    assert ex.submit(add, x=x, y=y).result(timeout=WAIT) == 12


def test_same_future_twice(ex: pel.Executor) -> None:
    fut = ex.submit(add, 2, 3)
    assert ex.submit(add, fut, fut).result(timeout=WAIT) == 10
    assert ex.submit(total, [fut, fut, fut]).result(timeout=WAIT) == 15
    assert ex.submit(echo, fut, fut=fut, again=[fut]).result(timeout=WAIT) == (
        (5,),
        {"fut": 5, "again": [5]},
    )


def test_dependency_already_finished_at_submit(ex: pel.Executor) -> None:
    fut = ex.submit(add, 20, 1)
    assert fut.result(timeout=WAIT) == 21
    assert ex.submit(add, fut, 21).result(timeout=WAIT) == 42


def test_dependency_still_pending_at_submit(ex: pel.Executor, tmp_path: Path) -> None:
    with Gate(ex, tmp_path) as gate:
        after = ex.submit(add, gate.future, 5)
        assert after.done() is not gate.holds
    assert after.result(timeout=WAIT) == 5


def test_failed_dependency_fails_the_dependent(ex: pel.Executor) -> None:
    root = ex.submit(failing_root, "root broke")
    child = ex.submit(add, root, 1)
    with pytest.raises(pel.DependencyError, match="failing-root") as info:
        child.result(timeout=WAIT)
    err = info.value
    assert isinstance(err, pel.PelError)
    assert err.dependency == "failing-root"
    assert isinstance(err.__cause__, ValueError)
    assert str(err.__cause__) == "root broke"
    assert err.__cause__ is root.exception()


def _check_names_root(fut: pel.Future[object], root: pel.Future[object]) -> None:
    err = fut.exception(timeout=WAIT)
    assert isinstance(err, pel.DependencyError)
    assert "failing-root" in str(err)
    assert err.dependency == "failing-root"
    # The original error, not the DependencyError of the task in between.
    assert isinstance(err.__cause__, ValueError)
    assert str(err.__cause__) == "root broke"


def test_dependency_error_through_two_levels(ex: pel.Executor, tmp_path: Path) -> None:
    # Everything is submitted before the root fails (except on inline).
    with Gate(ex, tmp_path) as gate:
        root = ex.submit(failing_root, "root broke", gate.future)
        middle = ex.submit(add, root, 1)
        leaf = ex.submit(add, middle, 1)
        sibling = ex.submit(add, gate.future, 1)
    _check_names_root(middle, root)
    _check_names_root(leaf, root)
    assert sibling.result(timeout=WAIT) == 1  # unrelated work is unaffected


def test_dependency_error_through_two_levels_after_the_failure(ex: pel.Executor) -> None:
    # The same graph, each task submitted only after its dependency failed:
    # the error must not depend on that timing.
    root = ex.submit(failing_root, "root broke")
    concurrent.futures.wait([root], timeout=WAIT)
    middle = ex.submit(add, root, 1)
    concurrent.futures.wait([middle], timeout=WAIT)
    leaf = ex.submit(add, middle, 1)
    _check_names_root(middle, root)
    _check_names_root(leaf, root)


def test_fan_in_with_one_failed_dependency(ex: pel.Executor) -> None:
    parts = [ex.submit(identity, i) for i in range(5)]
    parts.append(ex.submit(fail, "one part broke"))
    combined = ex.submit(total, parts)
    with pytest.raises(pel.DependencyError, match="fail") as info:
        combined.result(timeout=WAIT)
    assert info.value.dependency == "fail"
    assert str(info.value.__cause__) == "one part broke"
    assert [p.result() for p in parts[:5]] == list(range(5))


def test_cancelling_a_pending_task_cancels_its_dependents(ex: pel.Executor, tmp_path: Path) -> None:
    with Gate(ex, tmp_path) as gate:
        pending = ex.submit(add, gate.future, 1)
        child = ex.submit(add, pending, 1)
        grandchild = ex.submit(add, child, 1)
        fan_in = ex.submit(total, [pending, gate.future])
        sibling = ex.submit(add, gate.future, 2)
        dependents = [child, grandchild, fan_in]
        if not gate.holds:  # inline: all finished at submit, nothing to cancel
            assert pending.cancel() is False
            assert [f.result() for f in dependents] == [2, 3, 1]
            return
        assert pending.cancel() is True
    _, not_done = concurrent.futures.wait(dependents, timeout=WAIT)
    assert not not_done
    assert all(f.cancelled() for f in dependents)
    assert sibling.result(timeout=WAIT) == 2


def test_dependency_already_cancelled_at_submit(ex: pel.Executor, tmp_path: Path) -> None:
    with Gate(ex, tmp_path) as gate:
        pending = ex.submit(add, gate.future, 1)
        if not gate.holds:
            assert pending.cancel() is False
            assert ex.submit(add, pending, 1).result() == 2
            return
        assert pending.cancel() is True
        child = ex.submit(add, pending, 1)
        concurrent.futures.wait([child], timeout=WAIT)
        assert child.cancelled()


def test_future_of_another_executor_is_refused(
    ex: pel.Executor,
    make_executor: MakeExecutor,
) -> None:
    other = make_executor(1)
    foreign = other.submit(add, 1, 2)
    assert foreign.result(timeout=WAIT) == 3
    with pytest.raises(pel.ForeignFutureError):
        ex.submit(add, foreign, 1)
    with pytest.raises(ValueError):  # ForeignFutureError is a ValueError
        ex.submit(total, [1, foreign])
    with pytest.raises(pel.ForeignFutureError):
        ex.submit(echo, key={"nested": (foreign,)})
    assert ex.submit(add, foreign.result(), 1).result(timeout=WAIT) == 4
