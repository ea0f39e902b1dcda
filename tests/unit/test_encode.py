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
    # Its backend and runtime, made without a submit: no worker starts, and
    # with spawn (pel's fork server is started by a first submit) no process.
    executor = pel.Executor(1, mp_context="spawn")
    executor._start()
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
    with pel.Executor(1, mp_context="spawn") as other:
        other._start()
        (foreign,) = futures(other, 1)
        with pytest.raises(pel.ForeignFutureError, match="another executor"):
            encode(ex, foreign)


class Colour(enum.IntEnum):
    RED = 1


class Name(str):
    pass


@pytest.mark.parametrize(
    ("args", "short_cut"),
    [
        ((1, 2.5, "x", True, None), True),
        (("s" * (3 << 20),), True),
        ((), True),
        ((Colour.RED,), False),
        ((Name("n"),), False),
        ((b"b",), False),
    ],
    ids=["scalars", "long-str", "none", "int-enum", "str-subclass", "bytes"],
)
def test_only_exact_scalars_take_the_short_cut(
    ex: pel.Executor, monkeypatch: pytest.MonkeyPatch, args: tuple[Any, ...], short_cut: bool
) -> None:
    general_path: list[Any] = []
    dumps_oob = serialize.dumps_oob
    monkeypatch.setattr(
        serialize, "dumps_oob", lambda *a, **k: general_path.append(a) or dumps_oob(*a, **k)
    )
    payload, deps = encode(ex, *args)
    assert deps == []
    assert (not general_path) == short_cut
    assert payload == dumps_oob((args, {}), ex._backend.store)
    assert pickle.loads(payload) == (args, {})


class Tagged(str):
    """A str that carries more than its characters."""


def test_what_a_scalar_subclass_or_bytes_carries_still_goes_out_of_band(
    ex: pel.Executor,
) -> None:
    big = bytes(2 * ex._backend.store.config.threshold)
    tagged = Tagged("t")
    tagged.blob = pickle.PickleBuffer(bytearray(big))  # type: ignore[attr-defined]
    for arg in (tagged, big):
        payload, _ = encode(ex, arg)
        assert isinstance(payload, serialize.Packed), type(arg)  # the buffer went to a segment
        del payload
