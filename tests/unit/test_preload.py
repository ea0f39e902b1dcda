"""Naming the modules a payload needs before its large buffers are written."""

from __future__ import annotations

import collections
import os
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pel.backends.processes.channel import PRELOAD, RUN, frame
from pel.backends.processes.worker import _Worker
from pel.transport import preload, serialize, shm

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/dev/shm")


def test_the_modules_of_a_numpy_array_are_named() -> None:
    data = pickle.dumps(np.arange(4.0), 5, buffer_callback=lambda _: False)
    names = preload.modules_named(data)
    assert names and all(name.split(".")[0] == "numpy" for name in names)


def test_a_class_s_module_is_named_once() -> None:
    data = pickle.dumps([collections.OrderedDict(), collections.OrderedDict(a=1)], 5)
    assert preload.modules_named(data) == ("collections",)


def test_strings_that_are_data_are_never_named() -> None:
    assert preload.modules_named(pickle.dumps(["numpy", "os", ("json", "loads")], 5)) == ()


def test_builtins_and_main_are_left_out() -> None:
    data = pickle.dumps([len, print], 5)
    assert preload.modules_named(data) == ()
    assert preload.modules_named(data.replace(b"builtins", b"__main__")) == ()


@pytest.mark.parametrize(
    "data",
    [
        b"not a pickle",
        pickle.dumps(collections.OrderedDict(), 2),  # explicit memo indices
        pickle.dumps([collections.OrderedDict(), "x" * (1 << 17)], 5),  # too long to scan
    ],
    ids=["garbage", "protocol-2", "too-long"],
)
def test_what_is_not_understood_names_nothing(data: bytes) -> None:
    assert preload.modules_named(data) == ()


def test_only_a_large_write_is_announced_and_only_once(tmp_path: Path) -> None:
    store = shm.Store.create(threshold=1 << 20, limit=1 << 30, spill_dir=tmp_path)
    heard: list[tuple[str, ...]] = []
    store.announce = heard.append
    try:
        small = np.ones(preload.PRELOAD_BYTES // 16)  # half the bytes
        large = np.ones(preload.PRELOAD_BYTES // 8)
        kept = [serialize.dumps_oob(small, store)]
        assert heard == []
        kept.append(serialize.dumps_oob(large, store))
        assert len(heard) == 1 and heard[0][-1] == "numpy"
        kept.append(serialize.dumps_oob(large, store))  # written already: nothing to hide
        assert len(heard) == 1
    finally:
        del kept
        store.close()


@pytest.mark.parametrize(
    "body", ["raise SystemExit(3)", "raise ImportError('no')", "import not_a_module_here"]
)
def test_an_import_ahead_that_fails_is_left_for_the_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str
) -> None:
    (tmp_path / "breaks_on_import.py").write_text(body + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    preload.import_quietly(("breaks_on_import", "collections"))  # returns, raising nothing
    assert "breaks_on_import" not in sys.modules


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> str:
    (tmp_path / f"{name}.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


@pytest.fixture
def pipe() -> Iterator[tuple[int, int, int]]:
    """(read end, write end, a sink for what the worker sends), closed after."""
    read_fd, write_fd = os.pipe()
    sink = os.open(os.devnull, os.O_WRONLY)
    yield read_fd, write_fd, sink
    for fd in (read_fd, write_fd, sink):
        os.close(fd)


def test_an_idle_worker_imports_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pipe: tuple[int, int, int]
) -> None:
    name = _module(tmp_path, monkeypatch, "ahead_idle")
    read_fd, write_fd, sink = pipe
    worker = _Worker(read_fd, sink)
    os.write(write_fd, frame(pickle.dumps((PRELOAD, (name,)), 5)))
    worker.read(block=True)
    assert name in sys.modules and not worker.queue


def test_a_worker_with_calls_at_hand_leaves_the_imports_to_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pipe: tuple[int, int, int]
) -> None:
    # The hint and a call arrive in one read: the call imports what it needs
    # as it unpickles; importing first would only delay it.
    name = _module(tmp_path, monkeypatch, "ahead_busy")
    read_fd, write_fd, sink = pipe
    worker = _Worker(read_fd, sink)
    call = (1, 0, b"", [], False, 0)
    os.write(
        write_fd,
        frame(pickle.dumps((PRELOAD, (name,)), 5)) + frame(pickle.dumps((RUN, [], [], [call]), 5)),
    )
    worker.read(block=True)
    assert name not in sys.modules and len(worker.queue) == 1
