"""The shared-memory ledger stays exact whatever instant a writing worker dies at.

A worker counts a segment in the ledger before writing it. Each case below
runs a real worker-side store in a child process that SIGKILLs itself at one
point of ``Store.write``; the owner then does what the pool does when it reads
that worker's exit (``sweep_creator``) and the ledger must hold exactly what
the owner still owns.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pel.transport import shm

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/dev/shm")

MB = 1 << 20

#: Run in the child: a worker's store, patched to die at the point named by argv[2].
WRITER = textwrap.dedent(
    """
    import json, os, signal, sys
    from pel.transport import shm

    config = shm.StoreConfig(**json.loads(sys.argv[1]))
    point = sys.argv[2]
    store = shm.Store(config, owner=False)
    real_write_file = shm._write_file

    def die() -> None:
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def dying_write_file(path, view):
        if point == "reserved":  # counted in the ledger, no file yet
            die()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        if point == "created":  # an empty file
            die()
        os.write(fd, view[: view.nbytes // 2])
        if point == "half":
            die()
        os.write(fd, view[view.nbytes // 2 :])
        os.close(fd)

    shm._write_file = dying_write_file
    path, nbytes, in_shm = store.write(memoryview(bytearray(4 << 20)))
    print(json.dumps([path, nbytes, in_shm]))  # "reported": the owner may adopt it
    die()  # point "written" or "reported": the segment is complete
    """
)


def run_writer(owner: shm.Store, point: str) -> tuple[int, Any]:
    config = json.dumps(owner.config.as_dict())
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, config, point], stdout=subprocess.PIPE, text=True
    )
    out, _ = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, (child.returncode, out)
    return child.pid, json.loads(out) if out.strip() else None


@pytest.mark.parametrize("point", ["reserved", "created", "half", "written", "reported"])
def test_the_ledger_is_exact_after_a_writer_dies(point: str, tmp_path: Path) -> None:
    owner = shm.Store.create(threshold=1, limit=64 * MB, spill_dir=tmp_path)
    try:
        mine = owner.segment(memoryview(bytes(MB)))  # the owner's own, counted throughout
        assert owner.used() == MB
        pid, written = run_writer(owner, point)
        assert owner.used() > MB, "the writer counted its segment before it died"
        adopted = None
        if point == "reported":  # the pool read its result before its exit
            path, nbytes, in_shm = written
            adopted = owner.adopt(path, nbytes, in_shm)
        owner.sweep_creator(pid)
        assert owner.used() == MB + (4 * MB if adopted is not None else 0)
        leftovers = [n for n in os.listdir("/dev/shm") if n.startswith(f"pel-{os.getpid()}-")]
        expected = {"ledger", os.path.basename(mine.path)}
        if adopted is not None:
            expected.add(os.path.basename(adopted.path))
        assert {n if not n.endswith("-ledger") else "ledger" for n in leftovers} == expected
        del adopted
        assert owner.used() == MB, "freeing what was adopted gives its bytes back"
        del mine
        assert owner.used() == 0
    finally:
        owner.close()


def test_a_dead_worker_s_record_is_reused(tmp_path: Path) -> None:
    """Records of dead writers do not pile up in the ledger file."""
    owner = shm.Store.create(threshold=1, limit=64 * MB, spill_dir=tmp_path)
    try:
        for _ in range(3):
            pid, _ = run_writer(owner, "half")
            owner.sweep_creator(pid)
        assert owner.used() == 0
        assert owner.config.ledger_path is not None
        assert os.path.getsize(owner.config.ledger_path) == 16, "one record, reused"
    finally:
        owner.close()
