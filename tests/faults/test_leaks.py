"""No worker process outlives its executor, however the program using it ends.

Each scenario runs a small script in a subprocess: it starts an executor,
prints its worker pids as one JSON line, and (where the test must look at the
processes before the script goes on) waits for a line on stdin. The test then
ends the script the way the scenario says and checks, with a deadline, that
every worker is gone, and with it every other process the script started
(pel's fork server). The /dev/shm check is the autouse fixture of conftest.py.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pel.testing import alive, wait_for_exit, wait_until

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc; workers die with parent on Linux"
)

TESTS_DIR = Path(__file__).resolve().parents[1]

#: How long a script may take to start Python, import pel and start its workers.
START_TIMEOUT = 30
#: How long a process may take to go once it should (generous for a loaded machine).
EXIT_TIMEOUT = 10

PRELUDE = """\
import gc
import json
import os
import signal
import sys

# Ctrl-C must raise here even when the test run itself ignores SIGINT (a
# background job of a non-interactive shell), which children inherit.
signal.signal(signal.SIGINT, signal.default_int_handler)

import pel
import tasks
from pel.testing import alive, wait_until

#: A file no one creates: a task waiting for it runs until its own timeout.
NEVER = os.path.join(os.getcwd(), "never-created")


def report(**fields):
    print(json.dumps(fields), flush=True)


def go():
    # Wait for the test's go-ahead; EOF (the test is gone) counts as one.
    sys.stdin.readline()

"""

MAIN = """

if __name__ == "__main__":
    main()
"""


def children_of(pid: int) -> list[int]:
    """All live descendants of ``pid``, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in parents.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return [p for p in found if alive(p)]


def is_ours(pid: int) -> bool:
    """Still a worker or pel's fork server (so pid reuse cannot fool a cleanup)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        return b"pel.backends.processes.zygote" in cmdline or b"multiprocessing" in cmdline
    except OSError:
        return False


class Script:
    """A script run in a subprocess, its stdout read line by line with deadlines."""

    def __init__(self, directory: Path, body: str) -> None:
        path = directory / "script.py"
        path.write_text(PRELUDE + textwrap.dedent(body) + MAIN)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(TESTS_DIR), *filter(None, [env.get("PYTHONPATH")])]
        )
        env.pop("PYTHONSTARTUP", None)
        self.proc = subprocess.Popen(
            [sys.executable, str(path)],
            cwd=directory,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, for Ctrl-C to the group
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        #: Every process the script was seen to have started, for the final check.
        self.seen: set[int] = set()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def read(self, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        """The next JSON line the script prints."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"the script printed nothing for {timeout} s; stderr:\n{self.stderr}")
        if line is None:
            self.proc.wait(EXIT_TIMEOUT)
            pytest.fail(
                f"the script ended (code {self.proc.returncode}) before printing; "
                f"stderr:\n{self.stderr}"
            )
        result: dict[str, Any] = json.loads(line)
        return result

    def read_pids(self, count: int) -> list[int]:
        """The worker pids line; records the script's whole process tree meanwhile."""
        pids: list[int] = self.read()["pids"]
        assert len(pids) == count, pids
        assert all(alive(p) for p in pids), "the workers should be running"
        self.seen.update(pids)
        self.seen.update(children_of(self.proc.pid))
        return pids

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def wait(self, timeout: float = EXIT_TIMEOUT) -> int:
        """Wait for the script to end; fail (and kill it) past ``timeout``."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the script did not end within {timeout} s; stderr:\n{self.stderr}")
        for reader in self._readers:
            # Ends at once unless a leftover process still holds the script's stdout.
            reader.join(2)
        return code

    def wait_running(self, directory: Path, pids: list[int]) -> None:
        """Wait until each worker runs a task (tasks.announce_then_wait says so)."""
        marks = [directory / f"started-{pid}" for pid in pids]
        assert wait_until(lambda: all(m.exists() for m in marks), START_TIMEOUT), (
            f"the workers did not start their tasks; stderr:\n{self.stderr}"
        )

    def rest(self) -> list[str]:
        """What the script printed and no one read yet (call after it ended)."""
        lines = []
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return lines
            if line is not None:
                lines.append(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        # Whatever a failed test left behind must not outlive it.
        for pid in self.seen:
            if alive(pid) and is_ours(pid):
                os.kill(pid, signal.SIGKILL)
        wait_for_exit(self.seen, EXIT_TIMEOUT)
        for reader in self._readers:
            reader.join(EXIT_TIMEOUT)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def script(tmp_path: Path) -> Iterator[Callable[[str], Script]]:
    started: list[Script] = []

    def start(body: str) -> Script:
        started.append(Script(tmp_path, body))
        return started[-1]

    yield start
    for s in started:
        s.close()


def assert_all_gone(s: Script, timeout: float = EXIT_TIMEOUT) -> None:
    left = wait_for_exit(s.seen, timeout)
    assert not left, f"processes left behind: {left}; script stderr:\n{s.stderr}"


# -- the scenarios -------------------------------------------------------------------------------


def test_shutdown_stops_the_workers(script: Callable[[str], Script]) -> None:
    s = script(
        """
        def main():
            ex = pel.Executor(2)
            assert ex.submit(tasks.identity, 1).result(timeout=30) == 1
            pids = ex.worker_pids()
            report(pids=pids)
            go()
            ex.shutdown()
            report(left=[p for p in pids if alive(p)], now=ex.worker_pids())
        """
    )
    s.read_pids(2)
    s.go()
    after = s.read()
    assert after == {"left": [], "now": []}, "shutdown() returned before its workers ended"
    assert s.wait() == 0, s.stderr
    assert_all_gone(s)


def test_shutdown_after_a_worker_crash(script: Callable[[str], Script]) -> None:
    s = script(
        """
        def main():
            ex = pel.Executor(2)
            assert ex.submit(tasks.identity, 1).result(timeout=30) == 1
            first = ex.worker_pids()
            err = ex.submit(tasks.kill_self).exception(timeout=30)
            assert isinstance(err, pel.WorkerCrashedError), repr(err)
            assert ex.submit(tasks.identity, 2).result(timeout=30) == 2
            pids = sorted(set(first) | set(ex.worker_pids()))
            report(pids=[p for p in pids if alive(p)], crashed=err.exitcode)
            go()
            ex.shutdown()
            report(left=[p for p in pids if alive(p)])
        """
    )
    s.read_pids(2)
    s.go()
    assert s.read() == {"left": []}
    assert s.wait() == 0, s.stderr
    assert_all_gone(s)


@pytest.mark.parametrize("group", [False, True], ids=["parent", "process-group"])
def test_ctrl_c_in_the_parent(script: Callable[[str], Script], tmp_path: Path, group: bool) -> None:
    """SIGINT to the script alone, or to its whole process group as a terminal sends it."""
    s = script(
        """
        def main():
            with pel.Executor(2) as ex:
                cwd = os.getcwd()
                held = [ex.submit(tasks.announce_then_wait, cwd, NEVER, 60) for _ in range(2)]
                report(pids=ex.worker_pids())
                held[0].result(timeout=60)
            report(unreachable=True)
        """
    )
    s.wait_running(tmp_path, s.read_pids(2))
    interrupted = time.monotonic()
    if group:
        os.killpg(s.proc.pid, signal.SIGINT)
    else:
        os.kill(s.proc.pid, signal.SIGINT)
    code = s.wait()
    assert time.monotonic() - interrupted < EXIT_TIMEOUT
    assert code != 0
    assert "KeyboardInterrupt" in s.stderr
    assert s.rest() == [], "the with block went on after Ctrl-C"
    assert_all_gone(s)


def test_garbage_collected_without_shutdown(script: Callable[[str], Script]) -> None:
    s = script(
        """
        def main():
            ex = pel.Executor(2)
            assert ex.submit(tasks.identity, 1).result(timeout=30) == 1
            pids = ex.worker_pids()
            report(pids=pids)
            go()
            del ex
            gc.collect()
            gone = wait_until(lambda: not any(alive(p) for p in pids), timeout=10)
            report(gone=gone, left=[p for p in pids if alive(p)])
            go()  # stays alive until the test has looked
        """
    )
    pids = s.read_pids(2)
    s.go()
    assert s.read() == {"gone": True, "left": []}
    assert s.proc.poll() is None, "the script should still be running"
    assert not any(alive(p) for p in pids)
    s.go()
    assert s.wait() == 0, s.stderr
    assert_all_gone(s)


def test_garbage_collected_with_work_queued(script: Callable[[str], Script]) -> None:
    """It finishes the queued work first, then stops its workers."""
    s = script(
        """
        def main():
            ex = pel.Executor(2)
            assert ex.submit(tasks.identity, 1).result(timeout=30) == 1
            pids = ex.worker_pids()
            report(pids=pids)
            go()
            futures = [ex.submit(tasks.sleep_then, 0.05, i) for i in range(6)]
            del ex
            gc.collect()
            values = [f.result(timeout=30) for f in futures]
            gone = wait_until(lambda: not any(alive(p) for p in pids), timeout=10)
            report(values=values, gone=gone)
            go()
        """
    )
    pids = s.read_pids(2)
    s.go()
    assert s.read() == {"values": list(range(6)), "gone": True}
    assert s.proc.poll() is None
    assert not any(alive(p) for p in pids)
    s.go()
    assert s.wait() == 0, s.stderr
    assert_all_gone(s)


def test_interpreter_exit_without_shutdown(script: Callable[[str], Script]) -> None:
    s = script(
        """
        EXECUTOR = None


        def main():
            global EXECUTOR
            EXECUTOR = pel.Executor(2)
            assert EXECUTOR.submit(tasks.identity, 1).result(timeout=30) == 1
            report(pids=EXECUTOR.worker_pids())
            go()
            EXECUTOR.submit(tasks.sleep_then, 0.05)  # still queued when the script ends
        """
    )
    s.read_pids(2)
    s.go()
    told = time.monotonic()
    assert s.wait() == 0, s.stderr
    assert time.monotonic() - told < EXIT_TIMEOUT
    assert "Traceback" not in s.stderr, s.stderr
    assert_all_gone(s)


def test_interpreter_exit_with_a_local_executor(script: Callable[[str], Script]) -> None:
    """The executor dies with main()'s frame: the finalizer and exit both run."""
    s = script(
        """
        def main():
            ex = pel.Executor(2)
            assert ex.submit(tasks.identity, 1).result(timeout=30) == 1
            report(pids=ex.worker_pids())
            go()
            ex.submit(tasks.sleep_then, 0.05)
        """
    )
    s.read_pids(2)
    s.go()
    assert s.wait() == 0, s.stderr
    assert "Traceback" not in s.stderr, s.stderr
    assert_all_gone(s)


def test_parent_killed(script: Callable[[str], Script], tmp_path: Path) -> None:
    """The workers ask the kernel to kill them when their parent dies (PR_SET_PDEATHSIG)."""
    s = script(
        """
        def main():
            ex = pel.Executor(2)
            cwd = os.getcwd()
            held = [ex.submit(tasks.announce_then_wait, cwd, NEVER, 60) for _ in range(2)]
            report(pids=ex.worker_pids())
            held[0].result(timeout=60)
        """
    )
    pids = s.read_pids(2)
    s.wait_running(tmp_path, pids)
    os.kill(s.proc.pid, signal.SIGKILL)
    assert s.wait() == -signal.SIGKILL
    left = wait_for_exit(pids, EXIT_TIMEOUT)
    assert not left, f"workers outlived their killed parent: {left}"
    assert_all_gone(s)


def test_shutdown_cancelling_queued_work(script: Callable[[str], Script]) -> None:
    """shutdown(cancel_futures=True) with tasks still queued ends, and so do the workers."""
    s = script(
        """
        def main():
            ex = pel.Executor(1)
            # A fresh worker takes two tasks at first: the rest wait in pel's queue.
            futures = [ex.submit(tasks.sleep_then, 0.05, i) for i in range(20)]
            pids = ex.worker_pids()
            report(pids=pids)
            ex.shutdown(cancel_futures=True)
            done = [f.result(timeout=0) for f in futures if not f.cancelled()]
            report(
                cancelled=sum(f.cancelled() for f in futures),
                done=done,
                left=[p for p in pids if alive(p)],
            )
        """
    )
    s.read_pids(1)
    after = s.read(timeout=EXIT_TIMEOUT)
    assert after["left"] == []
    assert after["cancelled"] > 0
    assert after["cancelled"] + len(after["done"]) == 20
    assert after["done"] == list(range(len(after["done"])))
    assert s.wait() == 0, s.stderr
    assert_all_gone(s)


def test_an_unused_executor_starts_no_process(script: Callable[[str], Script]) -> None:
    """Workers start with the first task: an executor never used has none to leak."""
    s = script(
        """
        def main():
            ex = pel.Executor(2)
            report(pids=ex.worker_pids())
            go()
            ex.shutdown()
            with pel.Executor(2):
                pass
        """
    )
    assert s.read() == {"pids": []}
    assert children_of(s.proc.pid) == []
    s.go()
    assert s.wait() == 0, s.stderr
