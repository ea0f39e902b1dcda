"""Workers cap the thread pools of native libraries (BLAS, OpenMP, numexpr)."""

from __future__ import annotations

import sys

import pytest

import pel
from pel.backends.base import usable_cores
from pel.backends.processes.native_threads import VARIABLES, worker_environment
from shm_tasks import initial_environment, native_threads

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/task")


def test_by_default_each_worker_gets_its_share_of_the_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with pel.Executor(2) as ex:
        seen, _ = ex.submit(native_threads).result()
    assert seen == dict.fromkeys(VARIABLES, str(max(1, usable_cores() // 2)))


def test_the_fork_server_starts_with_the_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    # In its environment from the start (not only set by the worker later):
    # a numpy the user's script imports at the top loads in the fork server.
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with pel.Executor(2, inner_threads=1) as ex:
        environ = ex.submit(initial_environment).result()
    assert {name: environ.get(name) for name in VARIABLES} == dict.fromkeys(VARIABLES, "1")


def test_the_caps_are_read_when_the_first_worker_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    ex = pel.Executor(1)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")  # after the executor, before its workers
    with ex:
        seen, _ = ex.submit(native_threads).result()
    assert seen["MKL_NUM_THREADS"] == "3"


def test_a_put_before_the_first_submit_does_not_fix_the_workers_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A put makes the executor's store, not its fork server: the workers
    still get the environment of the first submit."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with pel.Executor(1) as ex:
        ref = ex.put(b"x")
        monkeypatch.setenv("MKL_NUM_THREADS", "3")
        seen, _ = ex.submit(native_threads).result()
        assert seen["MKL_NUM_THREADS"] == "3"
        del ref


def test_a_variable_the_user_set_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    with pel.Executor(1, mp_context="spawn") as ex:
        seen, _ = ex.submit(native_threads).result()
    assert seen["OMP_NUM_THREADS"] == "7"
    assert seen["OPENBLAS_NUM_THREADS"] == str(usable_cores())


def test_inner_threads_sets_every_variable_and_caps_numpy_s_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "5")
    counts = {}
    for inner in (1, 2):
        with pel.Executor(1, inner_threads=inner) as ex:
            seen, counts[inner] = ex.submit(native_threads).result()
        assert seen == dict.fromkeys(VARIABLES, str(inner))
    # OpenBLAS (numpy's wheels) starts inner - 1 threads besides the caller's,
    # up to the cores it sees.
    if usable_cores() >= 2:
        assert counts[1] < counts[2]


def test_the_default_never_drops_below_one() -> None:
    assert worker_environment(None, 8, 2, {}) == dict.fromkeys(VARIABLES, "1")
    assert worker_environment(None, 2, 16, {"MKL_NUM_THREADS": "3"})["OMP_NUM_THREADS"] == "8"
    assert "MKL_NUM_THREADS" not in worker_environment(None, 2, 16, {"MKL_NUM_THREADS": "3"})


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_a_bad_inner_threads_is_refused_naming_it(bad: object) -> None:
    with pytest.raises(pel.OptionError, match="inner_threads"):
        pel.Executor(1, inner_threads=bad)  # type: ignore[arg-type]


def test_inner_threads_belongs_to_the_processes_backend() -> None:
    with pytest.raises(pel.OptionError, match="inner_threads only applies to the processes"):
        pel.Executor(1, backend="threads", inner_threads=1)
