"""Shared fixtures: every executor a test makes is checked for leaks after it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import pel
from pel.testing import BACKENDS, wait_for_exit

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_executor(backend: str) -> Iterator[object]:
    """``make_executor(**kw)`` builds an executor of the test's backend; after the
    test every one is shut down and none of its worker processes may be left."""
    made: list[pel.Executor] = []
    pids: set[int] = set()

    def make(*args: object, **kwargs: object) -> pel.Executor:
        kwargs.setdefault("backend", backend)
        ex = pel.Executor(*args, **kwargs)  # type: ignore[arg-type]
        made.append(ex)
        return ex

    def remember() -> None:
        for ex in made:
            pids.update(ex.worker_pids())

    make.remember_pids = remember  # type: ignore[attr-defined]
    yield make
    for ex in made:
        pids.update(ex.worker_pids())
        ex.shutdown(wait=True, cancel_futures=True)
    left = wait_for_exit(pids, timeout=10)
    assert not left, f"worker processes left behind: {left}"


@pytest.fixture
def ex(make_executor: object) -> pel.Executor:
    """A 2-worker executor of the test's backend."""
    return make_executor(2)  # type: ignore[operator,no-any-return]
