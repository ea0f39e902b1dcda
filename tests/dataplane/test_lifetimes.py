"""When segments are freed, the bound on shared memory, and spilling past it."""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path
from typing import Any

import pytest

import pel
from pel.testing import wait_until
from shm_tasks import MB, backing_file, describe, full, leave_segment_and_die, wait_then_describe
from tasks import pid

from .conftest import segments_of

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/dev/shm")


def data_segments() -> set[str]:
    return {p for p in segments_of() if not p.endswith("-ledger")}


#: The lifetime and crash-cleanup tests run under the default start method and spawn.
start_methods = pytest.mark.parametrize("mp_context", [None, "spawn"], ids=["default", "spawn"])


@start_methods
def test_segments_live_exactly_as_long_as_something_needs_them(
    tmp_path: Path, mp_context: str | None
) -> None:
    flag = str(tmp_path / "go")
    with pel.Executor(1, mp_context=mp_context) as ex:
        array = full(2 * MB, 1.0)
        array.flags.writeable = False  # read-only: stored for as long as it lives
        pending = ex.submit(wait_then_describe, flag, array)
        assert len(data_segments()) == 1, "a pending task holds its argument's segment"
        Path(flag).touch()
        assert pending.result(timeout=60)[2] == array.size
        del pending
        gc.collect()
        assert len(data_segments()) == 1, "kept while the array lives, for the next task"
        size = array.size
        del array
        assert wait_until(lambda: not data_segments()), "freed once the array is gone too"
        array = full(2 * MB, 1.0)
        assert array.size == size

        future = ex.submit(full, 2 * MB, 1.0)
        value = future.result(timeout=60)
        assert len(data_segments()) == 1, "a result in use keeps its segment"
        del future
        gc.collect()
        assert len(data_segments()) == 1, "...while the value lives"
        del value
        assert wait_until(lambda: not data_segments())

        Path(flag).unlink()
        ref = ex.put(array)
        pending = ex.submit(wait_then_describe, flag, ref)
        del ref
        gc.collect()
        assert len(data_segments()) == 1, "a pending task holds the ref's segment"
        Path(flag).touch()
        assert pending.result(timeout=60)[2] == array.size
        del pending
        assert wait_until(lambda: not data_segments()), "freed with the ref and its task"


@start_methods
def test_shutdown_unlinks_everything_and_results_stay_readable(mp_context: str | None) -> None:
    ex = pel.Executor(2, mp_context=mp_context)
    value = ex.submit(full, 4 * MB, 2.0).result(timeout=60)
    ref = ex.put(full(2 * MB, 1.0))
    assert data_segments()
    ex.shutdown()
    assert segments_of() == set(), "shutdown leaves nothing in /dev/shm"
    assert float(value.sum()) == 2.0 * value.size, "a mapping outlives the unlink"
    del ref


@start_methods
def test_terminate_with_tasks_pending_leaves_nothing(
    tmp_path: Path, mp_context: str | None
) -> None:
    ex = pel.Executor(2, mp_context=mp_context)
    never = str(tmp_path / "never")
    held = [ex.submit(wait_then_describe, never, full(2 * MB, i)) for i in range(4)]
    assert len(data_segments()) == 4
    ex.terminate()
    assert all(f.done() for f in held)
    assert segments_of() == set()


@start_methods
def test_a_crashed_worker_s_unreported_segments_are_swept(mp_context: str | None) -> None:
    with pel.Executor(1, mp_context=mp_context) as ex:
        array = full(2 * MB, 1.0)
        array.flags.writeable = False  # read-only: kept for as long as it lives
        worker = ex.submit(pid).result(timeout=60)
        assert ex.worker_pids() == [worker]
        err = ex.submit(pel.task(leave_segment_and_die, retries=0), array).exception(timeout=60)
        assert isinstance(err, pel.WorkerCrashedError), repr(err)
        assert err.exitcode == 7 and f"pid {worker}" in str(err), "it died in that worker"
        # The orphan it wrote (named with its pid) is gone; the argument is kept
        # while the array lives, and reused.
        orphans = lambda: {p for p in data_segments() if f"-{worker}-" in os.path.basename(p)}  # noqa: E731
        assert wait_until(lambda: not orphans()), orphans()
        (kept,) = data_segments()
        assert ex.submit(describe, array).result(timeout=60) == (kept, False, array.size)
        del array
        assert wait_until(lambda: not data_segments()), data_segments()


def test_past_the_limit_data_spills_to_the_spill_directory(tmp_path: Path) -> None:
    with pel.Executor(1, shm_limit=3 * MB, spill_dir=tmp_path) as ex:
        small, large = full(2 * MB, 1.0), full(4 * MB, 1.0)
        path, _, value = ex.submit(describe, large).result(timeout=60)
        assert path is not None and Path(path).parent == tmp_path
        assert value == large.size
        assert ex.submit(describe, small).result(timeout=60)[0].startswith("/dev/shm/")
        result = ex.submit(full, 4 * MB, 1.0).result(timeout=60)
        where = backing_file(result)
        assert where is not None and Path(where).parent == tmp_path, where
        del result
    assert not list(tmp_path.iterdir())


def test_past_the_limit_without_spilling_is_an_error_naming_the_size() -> None:
    with pel.Executor(1, shm_limit=3 * MB, spill_dir=False) as ex:
        with pytest.raises(pel.SharedMemoryError, match=r"4\.0 MiB .*limit is 3\.0 MiB"):
            ex.submit(describe, full(4 * MB, 1.0))
        err = ex.submit(full, 4 * MB, 1.0).exception(timeout=60)
        assert isinstance(err, pel.SharedMemoryError), repr(err)
        assert "4.0 MiB" in str(err)
        # The limit counts what is in use: a ref holds 2 MiB, so 2 more do not fit...
        ref = ex.put(full(2 * MB, 1.0))
        with pytest.raises(pel.SharedMemoryError, match=r"2\.0 MiB are in use"):
            ex.put(full(2 * MB, 1.0))
        # ...until it is dropped.
        del ref
        gc.collect()
        assert ex.submit(describe, full(2 * MB, 3.0)).result(timeout=60)[2] == 3.0 * MB / 8 * 2


def test_a_full_dev_shm_spills_instead_of_crashing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC from the tmpfs (simulated: we cannot fill the real one) spills too."""
    from pel.transport import shm

    real = shm._write_file

    def full_tmpfs(path: str, view: memoryview) -> None:
        if path.startswith("/dev/shm/"):
            raise OSError(28, os.strerror(28))
        real(path, view)

    monkeypatch.setattr(shm, "_write_file", full_tmpfs)
    with pel.Executor(1, spill_dir=tmp_path) as ex:
        path = ex.submit(describe, full(2 * MB, 1.0)).result(timeout=60)[0]
        assert path is not None and Path(path).parent == tmp_path
    with (
        pel.Executor(1, spill_dir=False) as ex,
        pytest.raises(pel.SharedMemoryError, match="is full"),
    ):
        ex.submit(describe, full(2 * MB, 1.0))


@pytest.mark.parametrize("backend", ["threads", "inline"])
def test_put_on_in_process_backends_holds_the_object(backend: str) -> None:
    obj: Any = {"big": full(2 * MB, 1.0)}
    with pel.Executor(2, backend=backend) as ex:
        ref = ex.put(obj)
        assert ex.submit(lambda x: x, ref).result(timeout=60) is obj
        assert ex.submit(lambda xs: xs[0], [ref]).result(timeout=60) is obj
        assert ref.nbytes == 0
