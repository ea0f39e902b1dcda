"""The object store and out-of-band pickling, in one process."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pel
from pel.transport import mapping, serialize, shm, sweep

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/dev/shm")

MB = 1 << 20


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = shm.Store.create(threshold=64 * 1024, limit=8 * MB, spill_dir=tmp_path)
    yield s
    s.close()
    assert s.owned_paths() == []


def test_a_segment_is_unlinked_when_its_last_holder_goes(store: Any) -> None:
    seg = store.segment(memoryview(b"x" * MB))
    path = seg.path
    assert os.path.exists(path) and store.used() == MB
    view = mapping.map_view(path, 0, MB, seg)
    del seg
    gc.collect()
    assert os.path.exists(path), "a mapping in the owner holds its segment"
    assert bytes(view[:3]) == b"xxx" and view.readonly
    del view
    gc.collect()
    assert not os.path.exists(path)
    assert store.used() == 0


def test_pickles_without_large_buffers_are_the_plain_bytes(store: Any) -> None:
    obj = ([1, 2, "three"], {"k": np.arange(10)})
    out = serialize.dumps_oob(obj, store)
    assert type(out) is bytes
    assert out == serialize.dumps(obj)


def test_large_buffers_go_out_of_band_and_come_back_read_only(store: Any) -> None:
    array = np.arange(MB // 8, dtype=np.float64)
    packed = serialize.dumps_oob({"a": array, "small": np.ones(3)}, store)
    assert isinstance(packed, serialize.Packed)
    assert len(packed.data or b"") < 1024 and len(packed.buffers) == 1
    back = serialize.loads(packed)
    assert np.array_equal(back["a"], array) and not back["a"].flags.writeable
    assert back["small"].flags.writeable
    # The wire form is the descriptor only.
    assert len(serialize.dumps(packed)) < 1024


def test_a_read_only_array_is_written_once_while_it_lives(store: Any) -> None:
    array = np.zeros(MB // 8)
    array.flags.writeable = False
    first = serialize.dumps_oob(array, store)
    second = serialize.dumps_oob([array, array], store)
    assert isinstance(first, serialize.Packed) and isinstance(second, serialize.Packed)
    assert first.buffers[0][0] == second.buffers[0][0]
    other = serialize.dumps_oob(array.copy(), store)
    assert isinstance(other, serialize.Packed)
    assert other.buffers[0][0] != first.buffers[0][0]
    path = first.buffers[0][0]
    del first, second, other
    gc.collect()
    assert os.path.exists(path), "kept while the array lives, though no pickle holds it"
    third = serialize.dumps_oob(array, store)
    assert isinstance(third, serialize.Packed) and third.buffers[0][0] == path
    del third, array
    gc.collect()
    assert not os.path.exists(path), "freed with the array"
    assert store.used() == 0


def test_a_writable_array_is_written_once_only_while_in_use(store: Any) -> None:
    """It may change once no task holds it: the next use writes it again."""
    array = np.zeros(MB // 8)
    first = serialize.dumps_oob(array, store)
    second = serialize.dumps_oob(array, store)
    assert isinstance(first, serialize.Packed) and isinstance(second, serialize.Packed)
    assert first.buffers[0][0] == second.buffers[0][0], "shared while in use"
    path = first.buffers[0][0]
    del first, second
    gc.collect()
    assert not os.path.exists(path), "not kept once no pickle holds it"
    assert store.used() == 0


def test_bytes_are_written_once_only_while_in_use(store: Any) -> None:
    """bytes allow no weak reference: pel cannot see them die, so it keeps nothing."""
    blob = b"z" * MB
    first = serialize.dumps_oob([blob], store)
    second = serialize.dumps_oob([blob], store)
    assert isinstance(first, serialize.Packed) and isinstance(second, serialize.Packed)
    path = first.buffers[0][0]
    assert second.buffers[0][0] == path
    del first, second
    gc.collect()
    assert not os.path.exists(path)
    third = serialize.dumps_oob([blob], store)
    assert isinstance(third, serialize.Packed) and third.buffers[0][0] != path


def test_segments_kept_for_live_objects_go_first_when_the_limit_is_hit(
    store: Any, tmp_path: Path
) -> None:
    """The limit is 8 MiB: two 3 MiB arrays are kept; a third write frees the older."""
    arrays = [np.full(3 * MB // 8, float(i)) for i in range(3)]
    for array in arrays:
        array.flags.writeable = False
    packs = [serialize.dumps_oob(a, store) for a in arrays[:2]]
    paths = [p.buffers[0][0] for p in packs if isinstance(p, serialize.Packed)]
    del packs
    gc.collect()
    assert store.used() == 6 * MB and all(os.path.exists(p) for p in paths)
    third = serialize.dumps_oob(arrays[2], store)
    assert isinstance(third, serialize.Packed)
    assert third.buffers[0][0].startswith("/dev/shm/"), "not spilled: a kept segment made room"
    assert not os.path.exists(paths[0]), "the least recently used kept segment went"
    assert os.path.exists(paths[1])
    assert not list(tmp_path.iterdir())
    # A kept segment still in use is not freed: it stays shared while it is used.
    held = serialize.dumps_oob(arrays[1], store)
    assert isinstance(held, serialize.Packed) and held.buffers[0][0] == paths[1]
    big = serialize.dumps_oob(np.zeros(4 * MB // 8), store)
    assert isinstance(big, serialize.Packed)
    assert Path(big.buffers[0][0]).parent == tmp_path, "nothing kept could be freed: spilled"
    assert os.path.exists(paths[1])
    del third, held, big
    gc.collect()
    assert store.used() == 0


def test_large_bytes_and_memoryviews_go_out_of_band(store: Any) -> None:
    blob = b"y" * MB
    packed = serialize.dumps_oob((blob, [bytearray(blob)], memoryview(blob)), store)
    assert isinstance(packed, serialize.Packed) and len(packed.data or b"") < 1024
    b, (ba,), mv = serialize.loads(packed)
    assert (type(b), type(ba), type(mv)) == (bytes, bytearray, memoryview)
    assert b == blob and ba == blob and mv.readonly and bytes(mv) == blob


def test_past_the_limit_it_spills_and_without_spill_it_names_the_size(
    store: Any, tmp_path: Path
) -> None:
    held = [store.segment(memoryview(bytes(3 * MB))) for _ in range(2)]
    spilled = store.segment(memoryview(bytes(3 * MB)))
    assert Path(spilled.path).parent == tmp_path and store.used() == 6 * MB
    strict = shm.Store.create(threshold=1024, limit=MB, spill_dir=False)
    try:
        with pytest.raises(pel.SharedMemoryError, match=r"2\.0 MiB \(2097152 bytes\)"):
            strict.segment(memoryview(bytes(2 * MB)))
    finally:
        strict.close()
    del held, spilled


def test_segments_of_a_dead_owner_are_swept(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    orphan = tmp_path / f"pel-{pid}-abc123-{pid}-0"
    mine = tmp_path / f"pel-{os.getpid()}-abc123-{os.getpid()}-0"
    orphan.write_bytes(b"x")
    mine.write_bytes(b"x")
    assert sweep.sweep_dead_owners([str(tmp_path)], force=True) == 1
    assert not orphan.exists() and mine.exists()


def test_a_result_named_again_is_not_written_again(store: Any) -> None:
    array = np.arange(MB // 8, dtype=np.float64)
    packed = serialize.dumps_oob(array, store)
    assert isinstance(packed, serialize.Packed)
    value = serialize.loads(packed)
    again = serialize.dumps_oob(value[10:], store)
    assert isinstance(again, serialize.Packed)
    assert again.buffers == ((packed.buffers[0][0], 80, MB - 80),)
