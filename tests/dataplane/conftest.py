"""Every data-plane test also checks that nothing is left in /dev/shm or the spill directory."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pel.testing import wait_until
from pel.transport import shm


def pel_files() -> set[str]:
    found = set()
    for directory in (shm.shm_dir(), shm.default_spill_dir()):
        if directory is None or not os.path.isdir(directory):
            continue
        found |= {os.path.join(directory, n) for n in os.listdir(directory) if n.startswith("pel-")}
    return found


def segments_of(pid: int | None = None) -> set[str]:
    """This process's segments (and ledgers) in /dev/shm and the default spill directory."""
    prefix = f"pel-{os.getpid() if pid is None else pid}-"
    return {p for p in pel_files() if os.path.basename(p).startswith(prefix)}


@pytest.fixture(autouse=True)
def nothing_left_behind() -> Iterator[None]:
    before = pel_files()
    yield
    # Segments are unlinked by the runtime thread as tasks settle; allow it a moment.
    wait_until(lambda: not (pel_files() - before), timeout=5)
    new = pel_files() - before
    assert not new, f"data-plane files left behind: {sorted(new)}"
