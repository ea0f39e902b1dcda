"""pel futures as stdlib futures: callbacks, wait, as_completed, asyncio, cancel."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from pathlib import Path
from typing import Any

import pytest

import pel
from pel.testing import wait_until
from tasks import add, fail, identity, sleep_then

from ._gate import Gate

WAIT = 30  # seconds: a bound on waits that should end far sooner


class Calls:
    """A done-callback that records each call and signals the first."""

    def __init__(self) -> None:
        self.futures: list[concurrent.futures.Future[object]] = []
        self.threads: list[int] = []
        self.called = threading.Event()

    def __call__(self, fut: concurrent.futures.Future[object]) -> None:
        self.futures.append(fut)
        self.threads.append(threading.get_ident())
        self.called.set()


def test_callback_fires_once_on_completion(ex: pel.Executor, tmp_path: Path) -> None:
    with Gate(ex, tmp_path) as gate:
        fut = ex.submit(add, gate.future, 1)
        calls = Calls()
        fut.add_done_callback(calls)
        if gate.holds:
            assert calls.futures == []
    assert calls.called.wait(WAIT)
    assert fut.result() == 1
    ex.shutdown(wait=True)  # nothing can call it again after this
    assert calls.futures == [fut]


def test_callback_added_after_completion_fires_at_once(ex: pel.Executor) -> None:
    fut = ex.submit(add, 2, 3)
    assert fut.result(timeout=WAIT) == 5
    calls = Calls()
    fut.add_done_callback(calls)
    assert calls.futures == [fut]
    assert calls.threads == [threading.get_ident()]


def test_callback_fires_for_a_failed_task(ex: pel.Executor) -> None:
    fut = ex.submit(fail, "callback sees this")
    calls = Calls()
    fut.add_done_callback(calls)
    assert calls.called.wait(WAIT)
    ex.shutdown(wait=True)
    assert calls.futures == [fut]
    assert isinstance(fut.exception(), ValueError)


def test_every_callback_fires_once(ex: pel.Executor) -> None:
    futures = [ex.submit(identity, i) for i in range(200)]
    calls = [Calls() for _ in futures]
    for fut, call in zip(futures, calls, strict=True):
        fut.add_done_callback(call)
    for call in calls:
        assert call.called.wait(WAIT)
    ex.shutdown(wait=True)
    assert [call.futures for call in calls] == [[fut] for fut in futures]


def test_callback_fires_once_for_a_cancelled_task(ex: pel.Executor, tmp_path: Path) -> None:
    with Gate(ex, tmp_path) as gate:
        fut = ex.submit(add, gate.future, 1)
        calls = Calls()
        fut.add_done_callback(calls)
        assert fut.cancel() is gate.holds
    assert calls.called.wait(WAIT)
    ex.shutdown(wait=True)
    assert calls.futures == [fut]
    assert fut.cancelled() is gate.holds


def test_wait_all_completed(ex: pel.Executor) -> None:
    futures = [ex.submit(add, i, 1) for i in range(20)] + [ex.submit(fail)]
    done, not_done = concurrent.futures.wait(futures, timeout=WAIT)
    assert done == set(futures)
    assert not not_done
    assert sorted(f.result() for f in futures[:-1]) == list(range(1, 21))


def test_wait_first_completed(ex: pel.Executor, tmp_path: Path) -> None:
    # quick is not waited for before the workers get the gate's long tasks:
    # its result must still come back while they run.
    quick = ex.submit(add, 1, 1)
    with Gate(ex, tmp_path) as gate:
        held = ex.submit(add, gate.future, 2)
        done, not_done = concurrent.futures.wait(
            [held, quick], timeout=10, return_when=concurrent.futures.FIRST_COMPLETED
        )
        if gate.holds:
            assert (done, not_done) == ({quick}, {held})
        else:  # inline: both were done at submit
            assert (done, not_done) == ({quick, held}, set())
    done, not_done = concurrent.futures.wait([held, quick], timeout=WAIT)
    assert (done, not_done) == ({quick, held}, set())
    assert (quick.result(), held.result()) == (2, 2)


def test_wait_first_exception(ex: pel.Executor, tmp_path: Path) -> None:
    failed = ex.submit(fail, "first exception")
    concurrent.futures.wait([failed], timeout=WAIT)
    with Gate(ex, tmp_path) as gate:
        held = ex.submit(add, gate.future, 2)
        done, not_done = concurrent.futures.wait(
            [held, failed], timeout=WAIT, return_when=concurrent.futures.FIRST_EXCEPTION
        )
        assert failed in done
        assert (held in not_done) is gate.holds
    assert held.result(timeout=WAIT) == 2


def test_wait_timeout_returns_what_is_done(ex: pel.Executor, tmp_path: Path) -> None:
    with Gate(ex, tmp_path) as gate:
        held = ex.submit(add, gate.future, 2)
        done, not_done = concurrent.futures.wait([held], timeout=0.05)
        assert (not_done == {held}) is gate.holds
        assert (done == {held}) is not gate.holds
    assert held.result(timeout=WAIT) == 2


def test_as_completed_yields_each_once(ex: pel.Executor) -> None:
    futures = [ex.submit(add, i, i) for i in range(50)]
    seen = list(concurrent.futures.as_completed(futures, timeout=WAIT))
    assert sorted(seen, key=futures.index) == futures
    assert sorted(f.result() for f in seen) == [2 * i for i in range(50)]


def test_as_completed_yields_finished_before_held(ex: pel.Executor, tmp_path: Path) -> None:
    quick = ex.submit(add, 1, 1)
    assert quick.result(timeout=WAIT) == 2
    gate = Gate(ex, tmp_path)
    with gate:
        held = [ex.submit(add, gate.future, i) for i in range(3)]
        order = []
        for fut in concurrent.futures.as_completed([*held, quick], timeout=WAIT):
            order.append(fut)
            gate.release()  # only after the first one came out
    assert order[0] is quick or not gate.holds
    assert set(order) == {quick, *held}
    assert [f.result() for f in held] == [0, 1, 2]


def test_as_completed_timeout(ex: pel.Executor, tmp_path: Path) -> None:
    with Gate(ex, tmp_path) as gate:
        held = ex.submit(add, gate.future, 1)
        if gate.holds:
            with pytest.raises(concurrent.futures.TimeoutError):
                list(concurrent.futures.as_completed([held], timeout=0.05))
        else:
            assert list(concurrent.futures.as_completed([held], timeout=0)) == [held]
    assert held.result(timeout=WAIT) == 1


def test_asyncio_wrap_future(ex: pel.Executor) -> None:
    async def main() -> list[int]:
        futures = [asyncio.wrap_future(ex.submit(add, i, 10)) for i in range(10)]
        return list(await asyncio.gather(*futures))

    assert asyncio.run(main()) == [i + 10 for i in range(10)]


def test_asyncio_wrap_future_raises_the_task_error(ex: pel.Executor) -> None:
    async def main() -> None:
        await asyncio.wrap_future(ex.submit(fail, "awaited"))

    with pytest.raises(ValueError, match="awaited"):
        asyncio.run(main())


def test_asyncio_waits_for_a_held_task(ex: pel.Executor, tmp_path: Path) -> None:
    gate = Gate(ex, tmp_path)

    async def main() -> int:
        with gate:
            wrapped = asyncio.wrap_future(ex.submit(add, gate.future, 7))
            _, pending = await asyncio.wait([wrapped], timeout=0.05)
            assert (pending == {wrapped}) is gate.holds
        return await asyncio.wait_for(wrapped, WAIT)

    assert asyncio.run(main()) == 7


def test_cancel_a_pending_task(ex: pel.Executor, tmp_path: Path) -> None:
    with Gate(ex, tmp_path) as gate:
        fut = ex.submit(add, gate.future, 1)
        if not gate.holds:  # inline: finished at submit, so it cannot be cancelled
            assert fut.cancel() is False
            assert fut.result() == 1
            return
        assert not fut.done()
        assert fut.cancel() is True
        assert fut.cancelled()
        assert fut.done()
        assert fut.cancel() is True  # cancelling again still says it is cancelled
        with pytest.raises(concurrent.futures.CancelledError):
            fut.result(timeout=0)
        with pytest.raises(concurrent.futures.CancelledError):
            fut.exception(timeout=0)
    assert gate.future.result(timeout=WAIT) == 0  # what it waited on still ran
    assert fut.cancelled()


def test_cancel_a_finished_task(ex: pel.Executor) -> None:
    fut = ex.submit(add, 1, 2)
    assert fut.result(timeout=WAIT) == 3
    assert fut.cancel() is False
    assert not fut.cancelled()
    assert fut.result() == 3
    failed = ex.submit(fail)
    concurrent.futures.wait([failed], timeout=WAIT)
    assert failed.cancel() is False
    assert isinstance(failed.exception(), ValueError)


def test_cancel_a_running_task_stops_it(ex: pel.Executor, tmp_path: Path) -> None:
    with Gate(ex, tmp_path) as gate:
        # The first blocker has started (inline: it has even finished).
        assert gate.future.running() is gate.holds
        if not gate.holds:
            assert gate.future.cancel() is False
            return
        pids = set(ex.worker_pids())
        child = ex.submit(add, gate.future, 1)
        assert gate.future.cancel() is True
        assert gate.future.cancelled()
        with pytest.raises(concurrent.futures.CancelledError):
            gate.future.result(timeout=WAIT)
        done, _ = concurrent.futures.wait([child], timeout=WAIT)
        assert done == {child} and child.cancelled()
        if ex.backend == "processes":  # its worker was killed and replaced
            assert wait_until(lambda: len(set(ex.worker_pids()) - pids) == 1, timeout=WAIT)
            assert len(ex.worker_pids()) == ex.max_workers
    assert ex.submit(add, 1, 2).result(timeout=WAIT) == 3


def test_cancelling_a_task_whose_dependency_failed_leaves_the_executor_working(
    ex: pel.Executor,
) -> None:
    failed = ex.submit(fail, "root")
    concurrent.futures.wait([failed], timeout=WAIT)
    child = ex.submit(add, failed, 1)
    child.cancel()  # races the runtime settling it with a DependencyError
    done, _ = concurrent.futures.wait([child], timeout=WAIT)
    assert done == {child}
    assert child.cancelled() or isinstance(child.exception(), pel.DependencyError)
    assert ex.submit(add, 1, 2).result(timeout=WAIT) == 3


def test_shutdown_from_a_done_callback_does_not_hang(make_executor: Any) -> None:
    ex = make_executor(2)
    errors: list[BaseException] = []

    def stop(_: Any) -> None:
        try:
            ex.shutdown(wait=True)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    # Usually still running when the callback is added, so the callback runs
    # on pel's runtime thread (inline: at once, in this thread).
    first = ex.submit(sleep_then, 0.2, 1)
    second = ex.submit(add, 2, 2)
    first.add_done_callback(stop)
    assert second.result(timeout=WAIT) == 4
    assert first.result(timeout=WAIT) == 1
    assert errors == []
