"""pel's fork server (``backends/processes/zygote.py``), the default on Linux.

Each case runs a real program in a subprocess, since what matters is how a
script, a ``python -m`` module and an unguarded script are imported by the
server, and that nothing is left running afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pel
from pel.backends.processes import zygote
from pel.testing import wait_for_exit, wait_until

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="pel's fork server is the default on Linux"
)

RUN_TIMEOUT = 60


def run(args: list[str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("PYTHONSTARTUP", None)
    return subprocess.run(
        [sys.executable, *args],
        input=stdin,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


GUARDED = """
import pel

def square(x):
    return x * x

class Box:
    def __init__(self, value):
        self.value = value

def unbox(box):
    return box.value

if __name__ == "__main__":
    with pel.Executor(2) as ex:
        print(sum(ex.map(square, range(10))), ex.submit(unbox, Box(7)).result())
"""


def test_a_script_s_own_functions_and_classes_reach_the_workers(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text(GUARDED)
    done = run(["prog.py"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["285", "7"]


def test_a_module_run_with_dash_m_is_imported_by_name(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "prog.py").write_text(GUARDED)
    done = run(["-m", "pkg.prog"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["285", "7"]


def test_a_script_read_from_stdin_sends_its_functions_by_value(tmp_path: Path) -> None:
    done = run(["-"], tmp_path, stdin=GUARDED)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["285", "7"]


def test_a_package_s_dunder_main_sends_its_functions_by_value(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(GUARDED)
    done = run(["-m", "pkg"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["285", "7"]


def test_python_dash_c_needs_no_main_module(tmp_path: Path) -> None:
    code = "import pel\nwith pel.Executor(2) as ex: print(ex.submit(abs, -3).result())"
    done = run(["-c", code], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3"


def test_python_dash_c_pickles_by_value_only_what_names_main(tmp_path: Path) -> None:
    """Calls of importable functions on plain data take the C pickler (no
    cloudpickle import); a class defined in the -c program goes by value."""
    code = textwrap.dedent(
        """
        import sys
        import pel

        class Point:
            def __init__(self, x):
                self.x = x

        with pel.Executor(1) as ex:
            print(ex.submit(abs, -3).result(), "cloudpickle" in sys.modules)
            print(ex.submit(getattr, Point(5), "x").result(), "cloudpickle" in sys.modules)
        """
    )
    done = run(["-c", code], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "False", "5", "True"]


def test_an_unguarded_script_fails_fast_with_advice(tmp_path: Path) -> None:
    # The fork server imports the script to find its functions; without the
    # __main__ guard that import would start another executor, and so on.
    (tmp_path / "prog.py").write_text(
        textwrap.dedent(
            """
            import pel
            with pel.Executor(2) as ex:
                print(ex.submit(abs, -1).result())
            """
        )
    )
    done = run(["prog.py"], tmp_path)
    assert done.returncode != 0
    assert "WorkerCrashedError" in done.stderr
    assert "before it could start a worker" in done.stderr
    assert "if __name__ == '__main__':" in done.stderr  # the server's own error


def test_workers_read_no_terminal_input() -> None:
    with pel.Executor(1) as ex:
        assert ex.submit(os.readlink, "/proc/self/fd/0").result() == os.devnull


def server_of(ex: pel.Executor) -> int:
    """The fork server's pid: the parent of the workers."""
    (pid,) = {_parent(worker) for worker in ex.worker_pids()}
    assert pid != os.getpid()
    return pid


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[1])


def test_workers_are_forked_by_a_server_that_shutdown_stops() -> None:
    ex = pel.Executor(2)
    assert ex.submit(abs, -1).result() == 1
    server = server_of(ex)
    assert _parent(server) == os.getpid()
    workers = ex.worker_pids()
    ex.shutdown()
    assert wait_for_exit([server, *workers]) == []


def test_a_killed_server_is_replaced_and_no_task_is_lost() -> None:
    with pel.Executor(2) as ex:
        assert ex.submit(abs, -1).result() == 1
        server = server_of(ex)
        old = set(ex.worker_pids())
        os.kill(server, signal.SIGKILL)  # its workers die with it
        assert wait_until(lambda: not old & set(ex.worker_pids()), timeout=30)
        assert sorted(ex.map(abs, range(-50, 0))) == list(range(1, 51))
        assert server_of(ex) != server


def test_the_server_boots_before_the_rest_of_pel_is_imported(tmp_path: Path) -> None:
    """The first submit starts the fork server first and imports pel's
    machinery while it boots (W8); an executor never used imports none of it."""
    code = textwrap.dedent(
        """
        import sys
        import pel
        from pel.backends.processes import zygote

        booted_with = []
        boot = zygote.Launcher.boot
        def recording_boot(self):
            booted_with.append("pel._runtime" in sys.modules)
            boot(self)
        zygote.Launcher.boot = recording_boot

        ex = pel.Executor(2)
        print("unused imports runtime:", "pel._runtime" in sys.modules)
        assert ex.submit(abs, -1).result() == 1
        ex.shutdown()
        print("runtime imported when booting:", booted_with)
        """
    )
    out = run(["-c", code], tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "unused imports runtime: False",
        "runtime imported when booting: [False]",
    ]


def test_a_start_that_fails_after_the_server_booted_stops_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pel.transport import shm

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("no shared memory here")

    monkeypatch.setattr(shm.Store, "create", broken)
    booted: list[int | None] = []
    real_boot = zygote.Launcher.boot

    def recording_boot(self: zygote.Launcher) -> None:
        real_boot(self)
        booted.append(self._zygote_pid)

    monkeypatch.setattr(zygote.Launcher, "boot", recording_boot)
    ex = pel.Executor(2)
    with pytest.raises(OSError, match="no shared memory"):
        ex.submit(abs, -1)
    (pid,) = booted
    assert pid is not None
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # killed and reaped already
    ex.shutdown()


def test_two_threads_that_submit_first_at_once_start_one_executor() -> None:
    import threading

    with pel.Executor(2) as ex:
        barrier = threading.Barrier(2)
        results: list[int] = []

        def first_submit(x: int) -> None:
            barrier.wait(30)
            results.append(ex.submit(abs, x).result(timeout=60))

        threads = [threading.Thread(target=first_submit, args=(-i,)) for i in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(results) == [1, 2]
        assert len(ex.worker_pids()) == 2
        server = server_of(ex)
    assert wait_for_exit([server]) == []
