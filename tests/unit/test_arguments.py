"""Unit tests for pel._arguments: finding futures in call arguments."""

from __future__ import annotations

import dataclasses
import pickle
import time
from collections import namedtuple
from typing import Any

import numpy as np

from pel import _arguments
from pel._arguments import Dep, extract, substitute


class Fut:
    """A stand-in future: extract takes the future type as a parameter."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Fut({self.name})"


def index_of(obj: Any) -> int:
    assert type(obj) is Dep, obj
    return obj.index


Pair = namedtuple("Pair", "left right")


class MyList(list):  # type: ignore[type-arg]
    pass


@dataclasses.dataclass
class Box:
    value: Any


# -- where futures are found ------------------------------------------------------


def test_no_futures_returns_the_call_unchanged() -> None:
    args = (1, "a", 2.5, None)
    kwargs = {"x": 1}
    new_args, new_kwargs, found = extract(args, kwargs, Fut)
    assert new_args is args
    assert new_kwargs is kwargs
    assert found == []


def test_top_level_args_and_kwargs() -> None:
    f1, f2 = Fut("1"), Fut("2")
    args = (1, f1, "x")
    kwargs = {"k": f2, "j": 3}
    new_args, new_kwargs, found = extract(args, kwargs, Fut)
    assert found == [f1, f2]
    assert new_args[0] == 1
    assert index_of(new_args[1]) == 0
    assert new_args[2] == "x"
    assert index_of(new_kwargs["k"]) == 1
    assert new_kwargs["j"] == 3
    assert list(new_kwargs) == ["k", "j"]
    # the caller's objects are not modified
    assert args == (1, f1, "x")
    assert kwargs == {"k": f2, "j": 3}


def test_nested_at_depth_in_every_builtin_container() -> None:
    fs = [Fut(str(i)) for i in range(6)]
    deep = [1, (2, {"a": [3, (fs[0],)]})]
    args = (deep, {fs[1]}, frozenset({fs[2]}))
    kwargs = {"d": {"x": {"y": {"z": [fs[3]]}}}, "t": ((((fs[4],),),),), "l": [[[[[fs[5]]]]]]}
    new_args, new_kwargs, found = extract(args, kwargs, Fut)
    assert found == fs
    assert index_of(new_args[0][1][1]["a"][1][0]) == 0
    assert type(new_args[0]) is list
    assert type(new_args[0][1]) is tuple
    assert type(new_args[0][1][1]) is dict
    (dep1,) = new_args[1]
    assert type(new_args[1]) is set
    assert index_of(dep1) == 1
    (dep2,) = new_args[2]
    assert type(new_args[2]) is frozenset
    assert index_of(dep2) == 2
    assert index_of(new_kwargs["d"]["x"]["y"]["z"][0]) == 3
    assert index_of(new_kwargs["t"][0][0][0][0]) == 4
    assert index_of(new_kwargs["l"][0][0][0][0][0]) == 5
    # the originals still hold the futures
    assert deep[1][1]["a"][1][0] is fs[0]


def test_order_of_discovery_args_then_kwargs() -> None:
    a, b, c = Fut("a"), Fut("b"), Fut("c")
    _, _, found = extract(([c, a],), {"k": b}, Fut)
    assert found == [c, a, b]


def test_same_future_twice_is_one_dependency() -> None:
    f, g = Fut("f"), Fut("g")
    new_args, new_kwargs, found = extract((f, [f, g], (f,)), {"again": f, "g": g}, Fut)
    assert found == [f, g]
    assert index_of(new_args[0]) == 0
    assert index_of(new_args[1][0]) == 0
    assert index_of(new_args[1][1]) == 1
    assert index_of(new_args[2][0]) == 0
    assert index_of(new_kwargs["again"]) == 0
    assert index_of(new_kwargs["g"]) == 1


def test_equal_but_distinct_futures_are_two_dependencies() -> None:
    class EqFut(Fut):
        __slots__ = ()

        def __eq__(self, other: object) -> bool:
            return True

        def __hash__(self) -> int:
            return 0

    f, g = EqFut("f"), EqFut("g")
    _, _, found = extract((f, g), {}, EqFut)
    assert len(found) == 2
    assert found[0] is f
    assert found[1] is g


# -- what is not looked into -----------------------------------------------------------


def test_dict_keys_are_not_looked_into() -> None:
    key, value = Fut("key"), Fut("value")
    only_key = {key: 1}
    new_args, _, found = extract((only_key,), {}, Fut)
    assert found == []
    assert new_args[0] is only_key

    new_args, _, found = extract(({key: value},), {}, Fut)
    assert found == [value]
    ((k, v),) = new_args[0].items()
    assert k is key
    assert index_of(v) == 0


def test_namedtuple_is_opaque() -> None:
    f = Fut("f")
    pair = Pair(f, [f])
    new_args, new_kwargs, found = extract((pair,), {"p": pair}, Fut)
    assert found == []
    assert new_args[0] is pair
    assert new_kwargs["p"] is pair


def test_list_subclass_is_opaque() -> None:
    f = Fut("f")
    mine = MyList([f, [f]])
    new_args, _, found = extract((mine, [mine]), {}, Fut)
    assert found == []
    assert new_args[0] is mine
    assert new_args[1][0] is mine


def test_dataclass_attributes_are_opaque() -> None:
    f = Fut("f")
    box = Box([f])
    new_args, _, found = extract((box,), {"b": Box(f)}, Fut)
    assert found == []
    assert new_args[0] is box
    assert box.value[0] is f


def test_numpy_array_is_opaque() -> None:
    f = Fut("f")
    arr = np.empty(3, dtype=object)
    arr[:] = [f, 1, [f]]
    nums = np.arange(10)
    new_args, new_kwargs, found = extract((arr, [nums]), {"n": nums}, Fut)
    assert found == []
    assert new_args[0] is arr
    assert new_args[1][0] is nums
    assert new_kwargs["n"] is nums


def test_subclass_of_future_type_is_not_a_future_of_that_type() -> None:
    class Other:
        pass

    o = Other()
    new_args, _, found = extract((o, [o]), {}, Fut)
    assert found == []
    assert new_args[0] is o


# -- no copies where there is nothing to replace ------------------------------------------


def test_flat_containers_without_futures_are_the_same_objects() -> None:
    items = [1, 2, 3]
    tup = (1, "a")
    st = {1, 2}
    fz = frozenset({3})
    dct = {"a": 1}
    args = (items, tup, st, fz, dct)
    new_args, new_kwargs, found = extract(args, {"items": items, "dct": dct}, Fut)
    assert found == []
    for new, old in zip(new_args, args, strict=True):
        assert new is old
    assert new_kwargs["items"] is items
    assert new_kwargs["dct"] is dct


def test_nested_containers_without_futures_are_the_same_objects() -> None:
    nested = [[1, 2], [3, [4]]]
    table = {"rows": [(1, 2), (3, 4)], "meta": {"n": 2}}
    new_args, new_kwargs, found = extract((nested,), {"table": table}, Fut)
    assert found == []
    assert new_args[0] is nested
    assert new_kwargs["table"] is table


def test_containers_without_futures_beside_ones_with_futures_are_kept() -> None:
    f = Fut("f")
    flat = [1, 2]
    nested = [[1], {"a": (2,)}]
    args = ([f, flat, nested],)
    new_args, _, found = extract(args, {}, Fut)
    assert found == [f]
    outer = new_args[0]
    assert outer is not args[0]  # this one had to be rebuilt
    assert index_of(outer[0]) == 0
    assert outer[1] is flat
    assert outer[2] is nested


def test_large_flat_list_is_fast_and_not_copied() -> None:
    big = list(range(1_000_000))
    start = time.perf_counter()
    new_args, new_kwargs, found = extract((big,), {"big": big}, Fut)
    elapsed = time.perf_counter() - start
    assert found == []
    assert new_args[0] is big
    assert new_kwargs["big"] is big
    assert elapsed < 1.0, elapsed


# -- substitute ---------------------------------------------------------------------------


def test_substitute_puts_values_back_in_place() -> None:
    f, g = Fut("f"), Fut("g")
    args = (f, [1, (g, {"k": {f}})], frozenset({g}))
    kwargs = {"x": {"y": [g, f]}, "plain": 5}
    dep_args, dep_kwargs, found = extract(args, kwargs, Fut)
    values = ["F", "G"]
    assert found == [f, g]
    new_args, new_kwargs = substitute(dep_args, dep_kwargs, values)
    assert new_args == ("F", [1, ("G", {"k": {"F"}})], frozenset({"G"}))
    assert new_kwargs == {"x": {"y": ["G", "F"]}, "plain": 5}
    assert type(new_args[1][1]) is tuple
    assert type(new_args[2]) is frozenset


def test_substitute_without_placeholders_is_identity() -> None:
    args = ([1, 2], {"a": 1}, 3)
    kwargs = {"k": [3], "n": 4}
    new_args, new_kwargs = substitute(args, kwargs, [])
    assert new_args == args
    assert new_kwargs == kwargs
    assert new_args[0] is args[0]
    assert new_args[1] is args[1]
    assert new_kwargs["k"] is kwargs["k"]
    flat_args = (1, "two")
    flat_kwargs = {"x": 3}
    new_args, new_kwargs = substitute(flat_args, flat_kwargs, [])
    assert new_args is flat_args
    assert new_kwargs is flat_kwargs


def test_dep_pickles_into_the_value_in_a_worker() -> None:
    f = Fut("f")
    dep_args, _, _ = extract(([f, 2],), {}, Fut)
    payload = pickle.dumps(dep_args)
    try:
        _arguments.set_dep_values(["value"])
        assert pickle.loads(payload) == (["value", 2],)
    finally:
        _arguments.set_dep_values(())
    assert repr(Dep(3)) == "Dep(3)"
