"""Unlinking what a killed executor's process left in /dev/shm and the spill
directory: a later pel program does it when it creates its first store.

A segment's name starts ``pel-<owner pid>-`` (see :mod:`pel.transport.shm`),
so an owner that is no longer alive is read off the name alone.
"""

from __future__ import annotations

import os

from .shm import PREFIX, default_spill_dir, dir_entries, shm_dir

__all__ = ["sweep_dead_owners"]


def _alive(pid: int) -> bool:
    from ..testing import alive

    return alive(pid)


_swept = False


def sweep_dead_owners(directories: list[str | None] | None = None, force: bool = False) -> int:
    """Unlink segments whose owner process is dead (a killed parent left them).

    Runs once per process, when its first store is created. A pid reused by
    an unrelated process since only delays the cleanup to a later run.
    """
    global _swept
    if _swept and not force:
        return 0
    _swept = True
    removed = 0
    for directory in directories or [shm_dir(), default_spill_dir()]:
        if directory is None:
            continue
        for name in dir_entries(directory):
            if not name.startswith(PREFIX):
                continue
            owner = name[len(PREFIX) :].split("-", 1)[0]
            if not owner.isdigit() or int(owner) == os.getpid() or _alive(int(owner)):
                continue
            try:
                os.unlink(os.path.join(directory, name))
                removed += 1
            except OSError:
                pass  # another user's, or gone meanwhile
    return removed
