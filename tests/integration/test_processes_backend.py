"""Properties of the processes backend that the conformance suite cannot see."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import pel
from pel.backends.processes import channel, pool
from pel.backends.processes.channel import RUN
from pel.transport import serialize
from tasks import add, identity


def test_each_function_is_pickled_once_and_sent_once_per_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pickled: list[Any] = []
    shipped: list[tuple[int, int]] = []  # (worker, fn_id) pairs sent
    real_dumps_function = serialize.dumps_function
    real_post = pool.ProcessesBackend._post

    def counting_dumps_function(fn: Any) -> bytes:
        pickled.append(fn)
        return real_dumps_function(fn)

    def counting_post(self: Any, handle: Any, message: tuple[Any, ...]) -> None:
        if message[0] == RUN:
            shipped.extend((handle.id, fn_id) for fn_id, _ in message[1])
        real_post(self, handle, message)

    monkeypatch.setattr(serialize, "dumps_function", counting_dumps_function)
    monkeypatch.setattr(pool.ProcessesBackend, "_post", counting_post)
    with pel.Executor(2) as ex:
        futures = [ex.submit(add, i, 1) for i in range(300)]
        futures += [ex.submit(identity, i) for i in range(300)]
        assert [f.result(timeout=60) for f in futures] == [*range(1, 301), *range(300)]
    assert pickled == [add, identity]
    assert len(shipped) == len(set(shipped)) <= 4


def test_results_of_a_dead_worker_written_before_it_died_are_delivered() -> None:
    from tasks import exit_process, sleep_then

    with pel.Executor(1) as ex:
        first = ex.submit(sleep_then, 0.05, "kept")
        crash = ex.submit(exit_process, 3)
        assert first.result(timeout=60) == "kept"
        with pytest.raises(pel.WorkerCrashedError, match="code 3"):
            crash.result(timeout=60)


def test_a_worker_never_forgets_a_function_a_queued_call_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Distinct callables (a partial per item) overflow the per-worker cache."""
    import functools

    monkeypatch.setattr(pool, "FUNCTIONS_PER_WORKER", 4)
    with pel.Executor(1) as ex:
        partials = [functools.partial(add, i) for i in range(24)]
        for _ in range(3):
            futures = [ex.submit(p, 1) for p in partials]
            assert [f.result(timeout=60) for f in futures] == [i + 1 for i in range(24)]


linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="F_GETPIPE_SZ is Linux's"
)


@linux_only
@pytest.mark.parametrize("mp_context", [None, "spawn"])
def test_the_pipes_to_a_worker_are_widened_and_given_back(mp_context: str | None) -> None:
    import fcntl

    before = channel._widened
    with pel.Executor(1, mp_context=mp_context) as ex:
        assert ex.submit(identity, 1).result(timeout=60) == 1
        (handle,) = ex._backend._workers.values()  # type: ignore[attr-defined]
        for fd in (handle.fd_out, handle.fd_in):
            assert fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ) >= channel.PIPE_BYTES
        assert channel._widened == before + 2
    assert channel._widened == before


@pytest.fixture
def pipes() -> Iterator[list[int]]:
    made = [os.pipe() for _ in range(3)]
    yield [w for _, w in made]
    for r, w in made:
        os.close(r)
        os.close(w)


@linux_only
def test_a_refused_widening_keeps_the_pipe_as_it_was(
    monkeypatch: pytest.MonkeyPatch, pipes: list[int]
) -> None:
    import fcntl

    real_fcntl = fcntl.fcntl
    size = real_fcntl(pipes[0], fcntl.F_GETPIPE_SZ)

    def refusing(fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == fcntl.F_SETPIPE_SZ:
            raise PermissionError(1, "Operation not permitted")
        return real_fcntl(fd, cmd, arg)

    monkeypatch.setattr(fcntl, "fcntl", refusing)
    before = channel._widened
    assert not channel.widen_pipe(pipes[0])
    assert real_fcntl(pipes[0], fcntl.F_GETPIPE_SZ) == size
    assert channel._widened == before


@linux_only
def test_pipes_are_widened_only_within_the_process_share(
    monkeypatch: pytest.MonkeyPatch, pipes: list[int]
) -> None:
    monkeypatch.setattr(channel, "_widened", 0)
    monkeypatch.setattr(channel, "_budget", 2 * channel.PIPE_BYTES)
    assert [channel.widen_pipe(fd) for fd in pipes] == [True, True, False]
    channel.release_pipes(2)
    assert channel.widen_pipe(pipes[2])


def test_a_small_result_is_forwarded_as_the_worker_pickled_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A task submitted after its dependency finished (and the scheduler let
    go of it) takes the worker's pickle kept on the future, if the result is
    small and immutable; a large one, or a mutable one, is pickled again,
    from the value (so a change made in place reaches the dependent)."""
    repickled: list[Any] = []
    real_dumps_oob = serialize.dumps_oob

    def counting_dumps_oob(obj: Any, store: Any, dedup: bool = True) -> Any:
        repickled.append(obj)
        return real_dumps_oob(obj, store, dedup)

    with pel.Executor(1) as ex:
        small = ex.submit(identity, "small")
        large = ex.submit(identity, "x" * 4000)
        mutable = ex.submit(identity, [1, 2])
        assert small.result(timeout=60) == "small"
        assert large.result(timeout=60) == "x" * 4000
        mutable.result(timeout=60).append(3)
        monkeypatch.setattr(serialize, "dumps_oob", counting_dumps_oob)
        assert ex.submit(identity, small).result(timeout=60) == "small"
        assert ex.submit(len, large).result(timeout=60) == 4000
        assert ex.submit(identity, mutable).result(timeout=60) == [1, 2, 3]
    assert repickled == ["x" * 4000, [1, 2, 3]]


def test_frames_to_a_worker_arrive_whole_when_writes_come_up_short(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The parent's writes to a worker are non-blocking: a frame may go in
    part, the rest queued until the pipe has room. Every write here takes at
    most 1,000 bytes (a header, too, may be cut); every call still arrives."""
    real_writev = os.writev
    short: list[int] = []

    def short_writev(fd: int, views: list[Any]) -> int:
        data = b"".join(bytes(v) for v in views)
        if len(data) > 1000:
            short.append(len(data))
        return real_writev(fd, [data[:1000]])

    with pel.Executor(2) as ex:
        ex.submit(identity, 0).result(timeout=60)  # workers up before the patch
        monkeypatch.setattr(os, "writev", short_writev)
        big = [ex.submit(identity, bytes([i]) * 20_000) for i in range(10)]
        mapped = list(ex.map(identity, range(30_000)))
        assert [f.result(timeout=60) for f in big] == [bytes([i]) * 20_000 for i in range(10)]
    assert mapped == list(range(30_000))
    assert short  # the writes were cut


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/task")
def test_the_runtime_polls_briefly_then_blocks_while_a_task_runs() -> None:
    """With one call in flight the runtime thread polls for its result for
    SPIN_SECONDS, then blocks: a task of 0.3 s costs it next to no CPU."""
    import threading

    from tasks import sleep_then

    def thread_cpu(tid: int) -> float:
        with open(f"/proc/self/task/{tid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9

    with pel.Executor(2) as ex:
        assert [ex.submit(identity, i).result(timeout=60) for i in range(50)] == list(range(50))
        runtime = next(t for t in threading.enumerate() if t.name == "pel-runtime")
        assert runtime.native_id is not None
        before = thread_cpu(runtime.native_id)
        assert ex.submit(sleep_then, 0.3, "done").result(timeout=60) == "done"
        spent = thread_cpu(runtime.native_id) - before
    assert spent < 0.05, f"the runtime thread used {spent:.3f} s of CPU during a 0.3 s task"
