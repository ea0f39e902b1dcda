"""``shutdown(cancel_futures=True)`` returns promptly even while a long task runs.

Issue 5: "``shutdown(cancel_futures=True)`` and Ctrl-C return promptly". The
running task would take 60 s; shutdown must kill its worker instead of
waiting for it. The limit is generous (10 s) so a loaded machine does not
fail it; without the kill it would take the task's full 60 s.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import pel
from pel.testing import alive, wait_until

LONG = 60.0  # how long the running task would block (its release file never appears)
PROMPT = 10.0


def start_then_block(started: str, seconds: float) -> None:
    """The long task: says it started, then runs for ``seconds``."""
    Path(started).touch()
    time.sleep(seconds)


@pytest.mark.parametrize("mp_context", [None, "spawn"], ids=["default", "spawn"])
def test_shutdown_cancelling_a_running_long_task_is_prompt(
    tmp_path: Path, mp_context: str | None
) -> None:
    started = tmp_path / "started"
    ex = pel.Executor(1, mp_context=mp_context)
    running = ex.submit(start_then_block, str(started), LONG)
    queued = ex.submit(start_then_block, str(tmp_path / "second"), LONG)
    assert wait_until(started.exists, timeout=60), "the long task started"
    pids = ex.worker_pids()
    begin = time.monotonic()
    ex.shutdown(wait=True, cancel_futures=True)
    took = time.monotonic() - begin
    assert took < PROMPT, f"shutdown took {took:.1f} s with a {LONG:.0f} s task running"
    assert running.cancelled() and queued.cancelled()
    assert wait_until(lambda: not any(alive(p) for p in pids), timeout=PROMPT), pids
