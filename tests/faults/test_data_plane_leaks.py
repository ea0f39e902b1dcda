"""Nothing of the data plane outlives its program, however the program ends.

Each script holds segments of every kind (a pending task's argument, a result
in use, an ObjectRef) when it is ended. The autouse fixture of conftest.py
checks /dev/shm after each test; the tests also name what they expect.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pel.testing import wait_until

from .test_leaks import EXIT_TIMEOUT, Script, assert_all_gone, script

__all__ = ["script"]  # the fixture, imported so that pytest finds it here

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/dev/shm")

HOLD = """
import shm_tasks


def hold(ex):
    # An argument of a task still pending, a result in use, and a ref.
    array = shm_tasks.full(2 * shm_tasks.MB, 1.0)
    pending = ex.submit(shm_tasks.wait_then_describe, NEVER, array)
    value = ex.submit(shm_tasks.full, 2 * shm_tasks.MB, 2.0).result(timeout=60)
    ref = ex.put(shm_tasks.full(2 * shm_tasks.MB, 3.0))
    mine = sorted(n for n in os.listdir("/dev/shm") if n.startswith(f"pel-{os.getpid()}-"))
    return [pending, value, ref], mine

"""


#: The crash-cleanup tests run under the default start method and spawn.
start_methods = pytest.mark.parametrize("mp_context", [None, "spawn"], ids=["default", "spawn"])


def files_of(pid: int) -> list[str]:
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith(f"pel-{pid}-"))


@start_methods
def test_a_killed_parent_s_segments_are_swept_by_the_next_run(
    script: Callable[[str], Script], mp_context: str | None
) -> None:
    s = script(
        HOLD
        + f"""
def main():
    ex = pel.Executor(2, mp_context={mp_context!r})
    held, mine = hold(ex)
    report(pids=ex.worker_pids(), files=mine)
    go()
"""
    )
    first = s.read()
    s.seen.update(first["pids"])
    assert len([f for f in first["files"] if not f.endswith("-ledger")]) == 3, first
    os.kill(s.proc.pid, signal.SIGKILL)
    assert s.wait() == -signal.SIGKILL
    assert_all_gone(s)
    # Nothing in the killed process could run: its files are still there...
    assert files_of(s.proc.pid) == first["files"]
    # ...until the next program that starts an executor (at its first
    # submit: an executor never used starts nothing), which sweeps them.
    later = script(
        "def main():\n    with pel.Executor(1) as ex:\n        ex.submit(abs, -1).result()\n"
        "    report(ok=True)\n"
    )
    assert later.read() == {"ok": True}
    assert later.wait() == 0, later.stderr
    assert files_of(s.proc.pid) == []


@start_methods
def test_ctrl_c_in_the_with_block_leaves_no_segment(
    script: Callable[[str], Script], tmp_path: Path, mp_context: str | None
) -> None:
    s = script(
        HOLD
        + f"""
def main():
    with pel.Executor(2, mp_context={mp_context!r}) as ex:
        held, mine = hold(ex)
        report(pids=ex.worker_pids(), files=mine)
        held[0].result(timeout=60)
"""
    )
    first = s.read()
    s.seen.update(first["pids"])
    assert first["files"]
    os.kill(s.proc.pid, signal.SIGINT)
    code = s.wait()
    assert code != 0 and "KeyboardInterrupt" in s.stderr
    assert_all_gone(s)
    assert files_of(s.proc.pid) == []


@pytest.mark.parametrize("how", ["exit", "terminate", "garbage-collected"])
def test_the_end_of_the_program_leaves_no_segment(
    script: Callable[[str], Script], how: str
) -> None:
    """Interpreter exit with the executor still open and segments in use, or
    terminate(), or an executor dropped without shutdown."""
    end = {
        # Exit finishes queued work first: let the pending task end.
        "exit": "    global KEEP\n    KEEP = (ex, held)\n    open(NEVER, 'w').close()\n",
        "terminate": "    ex.terminate()\n    report(after=files())\n",
        "garbage-collected": (
            "    open(NEVER, 'w').close()\n    del ex, held\n    gc.collect()\n"
            "    wait_until(lambda: not files(), timeout=10)\n    report(after=files())\n"
        ),
    }[how]
    s = script(
        HOLD
        + f"""
KEEP = None


def files():
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith(f"pel-{{os.getpid()}}-"))


def main():
    ex = pel.Executor(2)
    held, mine = hold(ex)
    report(pids=ex.worker_pids(), files=mine)
{end}"""
    )
    first = s.read()
    s.seen.update(first["pids"])
    assert first["files"]
    if how != "exit":
        assert s.read(timeout=EXIT_TIMEOUT) == {"after": []}
    assert s.wait() == 0, s.stderr
    assert "Traceback" not in s.stderr, s.stderr
    assert_all_gone(s)
    assert wait_until(lambda: files_of(s.proc.pid) == [], timeout=EXIT_TIMEOUT)
