"""Fault tests: every test here also checks that pel left nothing in /dev/shm."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

SHM = "/dev/shm"
SHM_PREFIXES = ("pel", "psm_")


def shm_entries() -> set[str]:
    """Shared-memory entries that pel (or multiprocessing.shared_memory) would create."""
    try:
        names = os.listdir(SHM)
    except FileNotFoundError:  # pragma: no cover - no /dev/shm on this platform
        return set()
    return {name for name in names if name.startswith(SHM_PREFIXES)}


@pytest.fixture(autouse=True)
def no_shm_left_behind() -> Iterator[None]:
    before = shm_entries()
    yield
    new = shm_entries() - before
    assert not new, f"shared-memory entries left behind in {SHM}: {sorted(new)}"
