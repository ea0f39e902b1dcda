"""How a worker's end is put in words, likely cause included (no processes)."""

from __future__ import annotations

import os

import pytest

from pel import _errors as pel_errors
from pel.backends import base
from pel.backends.base import describe_exit

GIB = 2**30


def test_exit_codes_and_signals() -> None:
    assert describe_exit(None) == "ended for an unknown reason"
    assert describe_exit(3) == "exited with code 3"
    assert "sys.exit(0)" in describe_exit(0)
    assert describe_exit(-11).startswith("was killed by SIGSEGV (a segmentation fault")
    assert describe_exit(-99) == "was killed by signal 99"


def test_sigkill_after_high_memory_use_is_probably_the_oom_killer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(base, "_total_memory", lambda: 16 * GIB)
    text = describe_exit(-9, peak_rss=6 * GIB)
    assert "probably the out-of-memory killer" in text
    assert "6.00 GiB of this machine's 16.00 GiB" in text
    # a small peak: kill -9 or the OOM killer, the peak is reported
    text = describe_exit(-9, peak_rss=GIB // 4)
    assert "killed: often the out-of-memory killer, or kill -9" in text
    assert "peak memory seen 0.25 GiB" in text


def test_pels_own_reason_replaces_the_guess() -> None:
    text = describe_exit(-9, peak_rss=8 * GIB, cause="pel killed it: past the memory limit")
    assert text == "was killed by SIGKILL; pel killed it: past the memory limit"


@pytest.mark.skipif(not hasattr(os, "sysconf"), reason="needs sysconf")
def test_total_memory_is_known_here() -> None:
    total = base._total_memory()
    assert total is not None and total > 0


def test_a_probable_oom_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "_total_memory", lambda: 16 * GIB)
    text = describe_exit(-9, peak_rss=6 * GIB)
    assert "less memory per task" in text
    assert "max_workers=" in text and "worker_memory_limit=" in text


def test_worker_crashed_error_says_what_happened_and_what_to_do() -> None:
    from pel._settle import lost_error
    from pel.backends.base import Exited
    from pel.scheduler import Lost

    err = lost_error("step", Lost(0, 1, False, 4), None, 3, 0, Exited(0, 7, pid=123))
    assert isinstance(err, pel_errors.WorkerCrashedError) and err.exitcode == 7
    text = str(err)
    # What happened...
    assert "took its worker process down on 4 attempts" in text
    assert "pid 123, exited with code 7" in text and "retries=3 are used up" in text
    # ...and what to do: where the worker's last words went, and how to allow more attempts.
    assert "stderr" in text
    assert "pel.Executor(retries=...)" in text and "@pel.task(retries=...)" in text
