"""shutdown(): waiting, cancelling, returning at once; refusing work afterwards."""

from __future__ import annotations

import concurrent.futures
import threading
from pathlib import Path

import pytest

import pel
from pel.testing import wait_for_exit, wait_until
from tasks import add, identity

from ._gate import Gate, MakeExecutor

WAIT = 30


def _is_shut_down(ex: pel.Executor) -> bool:
    return "shut down" in repr(ex)


def test_shutdown_wait_completes_submitted_work(ex: pel.Executor) -> None:
    futures = [ex.submit(add, i, 1) for i in range(200)]
    chain = ex.submit(identity, 0)
    for _ in range(10):
        chain = ex.submit(add, chain, 1)
    ex.shutdown(wait=True)
    assert all(f.done() for f in [*futures, chain])
    assert [f.result() for f in futures] == list(range(1, 201))
    assert chain.result() == 10


def test_shutdown_wait_blocks_until_held_work_is_done(ex: pel.Executor, tmp_path: Path) -> None:
    with Gate(ex, tmp_path) as gate:
        pending = [ex.submit(add, gate.future, i) for i in range(10)]
        stopper = threading.Thread(target=ex.shutdown, kwargs={"wait": True})
        stopper.start()
        assert wait_until(lambda: _is_shut_down(ex))
        if gate.holds:
            assert stopper.is_alive()
            assert not any(f.done() for f in pending)
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert all(f.done() for f in pending)
    assert [f.result() for f in pending] == list(range(10))


@pytest.mark.parametrize("wait", [False, True])
def test_shutdown_cancel_futures_cancels_queued_and_running_tasks(
    ex: pel.Executor, tmp_path: Path, wait: bool
) -> None:
    with Gate(ex, tmp_path) as gate:
        queued = [ex.submit(add, gate.future, i) for i in range(10)]
        # With wait=True this returns although the running tasks would block
        # until the gate opens: they are cancelled too (their workers killed).
        ex.shutdown(wait=wait, cancel_futures=True)
        with pytest.raises(pel.ExecutorShutdownError):
            ex.submit(add, 1, 2)
        _, not_done = concurrent.futures.wait([*queued, gate.future], timeout=WAIT)
        assert not not_done
    if gate.holds:
        assert all(f.cancelled() for f in queued)
        assert gate.future.cancelled()
    else:  # inline: nothing was queued, everything had run
        assert [f.result() for f in queued] == list(range(10))


def test_shutdown_cancel_futures_leaves_nothing_pending(ex: pel.Executor) -> None:
    futures = [ex.submit(add, i, 1) for i in range(300)]
    chain = ex.submit(identity, 0)
    for _ in range(10):
        chain = ex.submit(add, chain, 1)
    ex.shutdown(wait=True, cancel_futures=True)
    futures.append(chain)
    assert all(f.done() for f in futures)
    for i, fut in enumerate(futures[:300]):
        assert fut.cancelled() or fut.result() == i + 1
    assert chain.cancelled() or chain.result() == 10


def test_shutdown_without_wait_returns_and_the_work_completes(
    ex: pel.Executor, tmp_path: Path
) -> None:
    with Gate(ex, tmp_path) as gate:
        pids = ex.worker_pids()
        pending = [ex.submit(add, gate.future, i) for i in range(10)]
        ex.shutdown(wait=False)
        # It returned while the work it leaves behind is still to do.
        assert all(f.done() for f in pending) is not gate.holds
    assert [f.result(timeout=WAIT) for f in pending] == list(range(10))
    # The workers stop in the background once the work is done.
    assert wait_for_exit(pids, timeout=WAIT) == []


def test_shutdown_stops_worker_processes(ex: pel.Executor) -> None:
    assert ex.submit(add, 1, 1).result(timeout=WAIT) == 2
    pids = ex.worker_pids()
    assert len(pids) == (2 if ex.backend == "processes" else 0)
    ex.shutdown(wait=True)
    assert wait_for_exit(pids, timeout=WAIT) == []


def test_submit_after_shutdown_raises(ex: pel.Executor) -> None:
    assert ex.submit(add, 1, 1).result(timeout=WAIT) == 2
    ex.shutdown()
    with pytest.raises(pel.ExecutorShutdownError):
        ex.submit(add, 1, 2)
    with pytest.raises(RuntimeError):  # also a RuntimeError, as in concurrent.futures
        ex.submit(add, 1, 2)
    with pytest.raises(pel.ExecutorShutdownError):
        ex.map(identity, [1, 2, 3])
    ex.shutdown()  # a second shutdown is harmless
    ex.shutdown(wait=False, cancel_futures=True)


def test_submit_after_shutdown_before_any_work(ex: pel.Executor) -> None:
    ex.shutdown()
    with pytest.raises(pel.ExecutorShutdownError):
        ex.submit(add, 1, 2)


def test_context_manager_waits_and_closes(make_executor: MakeExecutor) -> None:
    with make_executor(2) as ex:
        futures = [ex.submit(add, i, i) for i in range(100)]
        pids = ex.worker_pids()
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [2 * i for i in range(100)]
    assert wait_for_exit(pids, timeout=WAIT) == []
    with pytest.raises(pel.ExecutorShutdownError):
        ex.submit(add, 1, 2)


def test_map_in_progress_when_shutdown_is_called(ex: pel.Executor) -> None:
    # As with concurrent.futures (which submits a whole map at the call), the
    # map's work completes: shutdown submits the rest of its input first.
    out = ex.map(identity, range(10_000), chunksize=10)
    first = next(out)
    ex.shutdown(wait=True)
    assert [first, *out] == list(range(10_000))


def test_map_cancelled_by_shutdown_with_cancel_futures(ex: pel.Executor) -> None:
    out = ex.map(identity, range(10_000), chunksize=10)
    next(out)
    ex.shutdown(wait=True, cancel_futures=True)
    got = []
    with pytest.raises((concurrent.futures.CancelledError, pel.ExecutorShutdownError)):
        for value in out:
            got.append(value)
    assert got == list(range(1, len(got) + 1))
