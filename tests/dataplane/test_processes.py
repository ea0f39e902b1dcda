"""The data plane through the processes backend, under forkserver and spawn.

Zero-copy is checked where it is decided: the reader's array must lie inside
a mapping of a pel segment file (``/proc/self/maps``), not in private memory.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pel
from pel.backends.processes import pool
from pel.testing import wait_until
from shm_tasks import (
    MB,
    backing_file,
    describe,
    describe_all,
    full,
    size_and_type,
    total,
    write_first,
    write_to_copy,
)
from tasks import identity

from .conftest import segments_of

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/self/maps and /dev/shm"
)


@pytest.fixture(params=["forkserver", "spawn"])
def ex(request: pytest.FixtureRequest) -> Iterator[pel.Executor]:
    executor = pel.Executor(2, mp_context=request.param)
    yield executor
    executor.shutdown(cancel_futures=True)


def in_segment(path: str | None) -> bool:
    return path is not None and os.path.basename(path).startswith(f"pel-{os.getpid()}-")


def data_segments() -> set[str]:
    return {p for p in segments_of() if not p.endswith("-ledger")}


def test_an_argument_is_mapped_zero_copy_and_read_only(ex: pel.Executor) -> None:
    array = full(4 * MB, 2.0)
    path, writeable, value = ex.submit(describe, array).result(timeout=60)
    assert in_segment(path) and path is not None and path.startswith("/dev/shm/"), path
    assert writeable is False
    assert value == 2.0 * array.size


def test_writing_to_an_argument_raises_and_a_copy_is_writable(ex: pel.Executor) -> None:
    array = full(2 * MB, 1.0)
    with pytest.raises(ValueError, match="read-only"):
        ex.submit(write_first, array).result(timeout=60)
    assert ex.submit(write_to_copy, array).result(timeout=60) == 1.0


def test_a_result_is_mapped_in_the_parent_and_passed_on_by_name(ex: pel.Executor) -> None:
    future = ex.submit(full, 4 * MB, 3.0)
    value = future.result(timeout=60)
    here = backing_file(value)
    assert in_segment(here), here
    assert not value.flags.writeable
    # A dependent maps the very segment the worker wrote: the bytes never
    # crossed the parent, and the parent's view is that same file.
    there, _, total_value = ex.submit(describe, future).result(timeout=60)
    assert there == here
    assert total_value == 3.0 * value.size
    # Passing the result on by value costs a name too, not a new copy.
    assert ex.submit(describe, value).result(timeout=60)[0] == here
    assert ex.submit(describe, value[1000:]).result(timeout=60)[0] == here


ORDER_SCRIPT = """
import numpy as np
import pel

def firsts(a, make, b):
    return float(a[0]), make(), float(b[0])

if __name__ == "__main__":
    first, second = np.full(1 << 18, 1.0), np.full(1 << 18, 2.0)  # 2 MiB each
    with pel.Executor(1) as ex:
        print(ex.submit(firsts, first, lambda: "lam", second).result(timeout=60))
"""


def test_arrays_around_an_argument_only_cloudpickle_takes_keep_their_order(
    tmp_path: Path,
) -> None:
    """The C pickler meets the first array, then refuses the lambda; cloudpickle
    starts again, and only the buffers it reports may be sent (the task once
    received the first array twice: a silent wrong value). A script, so that
    ``__main__`` is importable and the C pickler goes first."""
    script = tmp_path / "order.py"
    script.write_text(ORDER_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(1.0, 'lam', 2.0)"


def test_the_same_array_to_many_tasks_is_stored_once(ex: pel.Executor) -> None:
    array = full(4 * MB, 1.0)
    twin = array.copy()
    futures = [ex.submit(describe, array) for _ in range(6)] + [ex.submit(describe, twin)]
    paths = [f.result(timeout=60)[0] for f in futures]
    assert len(set(paths[:6])) == 1, "one object, one segment"
    assert paths[6] != paths[0], "an equal but distinct object is stored on its own"
    # Also inside a list, and twice in one call.
    assert len({p for p, _, _ in ex.submit(describe_all, [array, array]).result(60)}) == 1


def test_a_read_only_array_is_written_once_for_as_long_as_it_lives(
    ex: pel.Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sequential submits of one read-only array: one write, though no task
    holds it between them."""
    from pel.transport import shm

    writes: list[str] = []
    real = shm._write_file

    def counting(path: str, view: memoryview) -> None:
        writes.append(path)
        real(path, view)

    monkeypatch.setattr(shm, "_write_file", counting)  # the parent writes arguments
    array = full(4 * MB, 1.0)
    array.flags.writeable = False
    paths = {ex.submit(describe, array).result(timeout=60)[0] for _ in range(5)}
    assert len(writes) == 1 and paths == {writes[0]}, (writes, paths)
    assert data_segments() == {writes[0]}
    del array
    gc.collect()
    assert wait_until(lambda: not data_segments()), "freed with the array"


def test_a_writable_array_changed_between_submits_is_sent_as_it_is_now(
    ex: pel.Executor,
) -> None:
    """A buffer reused in a loop: each task sees the values it was given."""
    array = full(4 * MB, 0.0)
    seen = []
    for value in (1.0, 2.0, 3.0):
        array[:] = value
        seen.append(ex.submit(describe, array).result(timeout=60)[2])
    assert seen == [value * array.size for value in (1.0, 2.0, 3.0)]


def test_small_buffers_stay_in_the_pickle(ex: pel.Executor) -> None:
    small = full(64 * 1024, 1.0)
    path, writeable, _ = ex.submit(describe, small).result(timeout=60)
    assert not in_segment(path)
    assert writeable, "below the threshold an array arrives as before: a private, writable copy"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"x" * (2 * MB), ("bytes", 2 * MB, True)),
        (bytearray(2 * MB), ("bytearray", 2 * MB, False)),
        (memoryview(bytes(2 * MB)), ("memoryview", 2 * MB, True)),
        (memoryview(b"small"), ("memoryview", 5, True)),
    ],
    ids=["bytes", "bytearray", "memoryview", "small-memoryview"],
)
def test_bytes_bytearray_and_memoryview(ex: pel.Executor, value: Any, expected: Any) -> None:
    assert ex.submit(size_and_type, value).result(timeout=60) == expected
    back = ex.submit(identity, [value]).result(timeout=60)[0]
    assert type(back) is type(value)
    assert bytes(back) == bytes(value)


def test_large_data_does_not_go_through_the_pipes(
    ex: pel.Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight 4 MiB results summed by a ninth task: the pipes carry names only."""
    sent: list[int] = []
    received: list[int] = []
    real_header, real_read = pool.header, pool.FrameReader.read

    def counting_header(size: int) -> bytes:
        sent.append(size)
        return real_header(size)

    def counting_read(self: Any, fd: int) -> list[bytearray] | None:
        frames = real_read(self, fd)
        received.extend(len(f) for f in frames or ())
        return frames

    monkeypatch.setattr(pool, "header", counting_header)
    monkeypatch.setattr(pool.FrameReader, "read", counting_read)
    array = full(4 * MB, 1.0)
    parts = [ex.submit(full, 4 * MB, float(i)) for i in range(8)]
    assert ex.submit(total, parts).result(timeout=60) == sum(range(8)) * (4 * MB // 8)
    assert ex.submit(describe, array).result(timeout=60)[2] == array.size
    # The counters saw the traffic (10 calls out, 10 results back), so the
    # bounds below cannot pass by counting nothing.
    assert len(sent) >= 1 and sum(sent) > 10 * 100, sent
    assert len(received) >= 1 and sum(received) > 10 * 50, received
    assert sum(sent) < 64 * 1024, sent
    assert sum(received) < 64 * 1024, received


def test_put_stores_once_and_resolves_to_the_object(ex: pel.Executor) -> None:
    array = full(4 * MB, 5.0)
    ref = ex.put(array)
    assert isinstance(ref, pel.ObjectRef)
    assert ref.nbytes == array.nbytes
    array[:] = 0.0  # put took a snapshot
    results = [f.result(timeout=60) for f in [ex.submit(describe, ref) for _ in range(4)]]
    assert len({path for path, _, _ in results}) == 1
    assert all(in_segment(path) and not w and s == 5.0 * array.size for path, w, s in results)
    nested = ex.submit(describe_all, [ref, {"x": ref}["x"]]).result(timeout=60)
    assert nested[0] == results[0]
    # Small objects and large pickles of small objects are refs too.
    assert ex.submit(identity, ex.put({"a": 1})).result(timeout=60) == {"a": 1}
    many = list(range(300_000))
    assert ex.submit(len, ex.put(many)).result(timeout=60) == len(many)


def test_a_task_gets_no_unpicklable_surprise_from_a_ref_in_map(ex: pel.Executor) -> None:
    ref = ex.put(full(2 * MB, 1.0))
    assert [s for _, _, s in ex.map(describe, [ref, ref])] == [2 * MB // 8] * 2


def test_the_data_plane_options_are_validated(tmp_path: Any) -> None:
    bad: list[dict[str, Any]] = [
        {"shm_threshold": 0},
        {"shm_threshold": "1MB"},
        {"shm_limit": -1},
        {"shm_limit": 1.5},
        {"spill_dir": 3},
    ]
    for options in bad:
        name = next(iter(options))
        with pytest.raises(pel.OptionError, match=name):
            pel.Executor(1, **options)
    afile = tmp_path / "file"
    afile.write_text("")
    with pytest.raises(pel.OptionError, match="spill_dir"):
        pel.Executor(1, spill_dir=afile)


def test_results_are_numpy_arrays_equal_to_the_task_s(ex: pel.Executor) -> None:
    value = ex.submit(np.arange, 1_000_000, dtype=np.int64).result(timeout=60)
    assert value.dtype == np.int64 and int(value[-1]) == 999_999
    wait_until(lambda: len(data_segments()) == 1)
    del value
    assert wait_until(lambda: not data_segments()), data_segments()


def test_a_worker_imports_a_large_payload_s_modules_while_it_is_written() -> None:
    from preload_probe import Blob
    from shm_tasks import imported_by_hint

    with pel.Executor(1) as ex:
        assert ex.submit(identity, 1).result() == 1  # the worker is up and idle
        # The hint reaches it at once; the call, after 64 MB are written.
        assert ex.submit(imported_by_hint, Blob(bytes(64 * MB))).result() is True


def test_a_small_payload_s_modules_are_imported_as_it_is_unpickled() -> None:
    from preload_probe import Blob
    from shm_tasks import imported_by_hint

    with pel.Executor(1) as ex:
        assert ex.submit(imported_by_hint, Blob(bytes(2 * MB))).result() is False


def test_an_import_ahead_never_holds_a_finished_result_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hinted import blocks until `gate` exists; the result of the call
    # that ran before it must reach the parent meanwhile.
    from preload_probe import Blob
    from shm_tasks import imported_by_hint
    from tasks import hold

    started, release, gate = (str(tmp_path / n) for n in ("started", "release", "gate"))
    monkeypatch.setenv("PEL_TEST_IMPORT_GATE", gate)
    with pel.Executor(1) as ex:
        first = ex.submit(hold, started, release, "first")
        assert wait_until(lambda: os.path.exists(started), timeout=30)
        second = ex.submit(imported_by_hint, Blob(bytes(8 * MB)))  # announced to a busy worker
        Path(release).touch()
        assert first.result(timeout=30) == "first"  # while the import waits on the gate
        Path(gate).touch()
        assert second.result(timeout=30) is True


def test_a_worker_started_later_is_not_asked_to_import_ahead() -> None:
    from preload_probe import Blob
    from shm_tasks import has_module, imported_by_hint
    from tasks import pid

    with pel.Executor(1, max_tasks_per_worker=1) as ex:
        first = ex.submit(pid).result()
        # Its replacement is up (and idle) when the large payload is announced.
        assert wait_until(lambda: any(p != first for p in ex.worker_pids()), timeout=30)
        assert ex.submit(imported_by_hint, Blob(bytes(64 * MB))).result() is True
        # Each call has a new worker: none of them heard of the module.
        assert ex.submit(has_module, "preload_probe").result() is False
