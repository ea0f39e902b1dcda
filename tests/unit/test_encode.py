"""What a call becomes for the processes backend: the two short cuts give the
bytes the general path gives, and only where they apply."""

from __future__ import annotations

import enum
import pickle
from collections.abc import Iterator
from typing import Any

import pytest

import pel
from pel import _arguments, _encode
from pel._futures import Future
from pel.transport import serialize


@pytest.fixture
def ex() -> Iterator[pel.Executor]:
    executor = pel.Executor(1)  # no submit: no worker starts
    yield executor
    executor.shutdown()


def encode(ex: pel.Executor, *args: Any) -> tuple[Any, list[Any]]:
    payload, deps = _encode.encode_call(ex._backend, ex._runtime, "t", args, {})
    return payload, list(deps)


def general(ex: pel.Executor, *args: Any) -> bytes | Any:
    """The payload the general path makes (place, then dumps_oob)."""
    placed = _arguments.place(args, {}, Future)
    assert placed is not None
    new_args, places, _ = placed
    if not places:
        return serialize.dumps_oob((args, {}), ex._backend.store)
    return serialize.dumps_oob((new_args, {}, places), ex._backend.store)


def futures(ex: pel.Executor, n: int) -> list[Future[Any]]:
    return [Future(ex._runtime, 10_000 + i, "dep") for i in range(n)]


@pytest.mark.parametrize("n", [1, 2, 3, 20])
def test_distinct_futures_get_the_payload_place_would_make(ex: pel.Executor, n: int) -> None:
    deps = futures(ex, n)
    assert encode(ex, *deps) == (general(ex, *deps), deps)
    assert (n in _encode._FUTURES_ONLY) == (n <= _encode._FUTURES_ONLY_KEPT)


def test_a_future_passed_twice_is_one_dependency(ex: pel.Executor) -> None:
    a, b = futures(ex, 2)
    for args in [(a, a), (a, b, a)]:
        assert _encode.futures_only(args) is None
        payload, deps = encode(ex, *args)
        assert payload == general(ex, *args)
        assert deps == [a, b][: len(set(map(id, args)))]


def test_a_future_of_another_executor_is_refused(ex: pel.Executor) -> None:
    with pel.Executor(1) as other:
        (foreign,) = futures(other, 1)
        with pytest.raises(pel.ForeignFutureError, match="another executor"):
            encode(ex, foreign)


class Colour(enum.IntEnum):
    RED = 1


class Name(str):
    pass


@pytest.mark.parametrize(
    "args",
    [(1, 2.5, "x", True, None), ("s" * (3 << 20),), (), (Colour.RED,), (Name("n"),), (b"b",)],
    ids=["scalars", "long-str", "none", "int-enum", "str-subclass", "bytes"],
)
def test_plain_arguments_pickle_as_the_general_path_would(
    ex: pel.Executor, args: tuple[Any, ...]
) -> None:
    payload, deps = encode(ex, *args)
    assert deps == []
    assert payload == serialize.dumps_oob((args, {}), ex._backend.store)
    assert pickle.loads(payload) == (args, {})
