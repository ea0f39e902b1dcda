"""FrameReader, write_frame and consume over a real pipe, fed in awkward pieces."""

from __future__ import annotations

import bisect
import itertools
import os
import random
from collections.abc import Iterator

import pytest

from pel.backends.processes.channel import (
    READ_BUFFER,
    FrameReader,
    consume,
    frame,
    write_frame,
)


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    os.set_blocking(r, False)
    yield r, w
    os.close(r)
    os.close(w)


def _read_all(reader: FrameReader, fd: int) -> list[bytes]:
    frames: list[bytes] = []
    while True:
        try:
            got = reader.read(fd)
        except BlockingIOError:
            return frames
        assert got is not None
        frames.extend(bytes(f) for f in got)


def _payloads(large: bool) -> list[bytes]:
    """Frames of all sizes: around the header's and the read buffer's."""
    rng = random.Random(7)
    sizes = [0, 1, 7, 8, 9, 100]
    if large:  # (a byte at a time, these would take seconds)
        sizes += [READ_BUFFER - 8, READ_BUFFER - 9, READ_BUFFER, 3 * READ_BUFFER + 5]
    sizes += [rng.randrange(1, 5000) for _ in range(40 if large else 5)]
    return [bytes([i % 251]) * size for i, size in enumerate(sizes)]


@pytest.mark.parametrize("piece", [1, 3, 8, 4096, 60_000])
def test_frames_come_back_whole_and_in_order_whatever_the_pieces(
    pipe: tuple[int, int], piece: int
) -> None:
    r, w = pipe
    payloads = _payloads(large=piece > 8)
    stream = b"".join(frame(p) for p in payloads)
    ends = list(itertools.accumulate(len(frame(p)) for p in payloads))
    reader = FrameReader()
    got: list[bytes] = []
    for start in range(0, len(stream), piece):
        written = min(start + piece, len(stream))
        os.write(w, stream[start:written])
        got += _read_all(reader, r)
        # Every frame ending here is out; what is pending is the frame cut.
        done = bisect.bisect_right(ends, written)
        assert got == payloads[:done]
        assert reader.pending() == written - (ends[done - 1] if done else 0)
    assert got == payloads
    assert reader.pending() == 0


def test_a_frame_cut_at_its_header_waits_for_the_rest(pipe: tuple[int, int]) -> None:
    r, w = pipe
    reader = FrameReader()
    data = frame(b"hello")
    os.write(w, data[:3])
    assert _read_all(reader, r) == []
    assert reader.pending() == 3
    os.write(w, data[3:])
    assert _read_all(reader, r) == [b"hello"]


def test_the_end_of_the_stream_is_none() -> None:
    r, w = os.pipe()
    try:
        reader = FrameReader()
        os.write(w, frame(b"last"))
        os.close(w)
        assert reader.read(r) == [bytearray(b"last")]
        assert reader.read(r) is None
    finally:
        os.close(r)


def test_write_frame_finishes_a_frame_after_short_writes(
    pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write may take fewer bytes than given (a signal, a full pipe):
    write_frame goes on from where it stopped, header and payload alike."""
    r, w = pipe
    real_writev = os.writev
    sizes = itertools.cycle([3, 1, 5000, 7])

    def short_writev(fd: int, views: list[memoryview]) -> int:
        return real_writev(fd, [b"".join(bytes(v) for v in views)[: next(sizes)]])

    monkeypatch.setattr(os, "writev", short_writev)
    reader = FrameReader()
    for payload in [b"", b"x", bytes(range(256)) * 40]:
        write_frame(w, payload)
        assert _read_all(reader, r) == [payload]


def test_consume_drops_what_was_written() -> None:
    pieces = [b"abc", b"", b"defg", b"h"]
    stream = b"".join(pieces)
    for written in range(len(stream) + 1):
        views = [memoryview(p) for p in pieces]
        consume(views, written)
        assert b"".join(bytes(v) for v in views) == stream[written:]
        assert not views or len(views[0]) > 0  # no empty piece left to write first
