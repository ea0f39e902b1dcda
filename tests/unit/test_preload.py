"""Naming the modules a payload needs before its large buffers are written."""

from __future__ import annotations

import collections
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

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
