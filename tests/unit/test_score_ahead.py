"""The arrow engine computes the next record batch of predictions in a thread while the writer
encodes the last one (`yws.scoring.arrow.ahead`): nothing lost, reordered or left running."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from yws.scoring.arrow import ahead


def workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "yws-score-ahead"]


def test_every_item_in_order_and_no_thread_left():
    assert list(ahead(iter(range(1000)))) == list(range(1000))
    assert list(ahead(iter([]))) == []
    assert workers() == []


def test_the_producer_stays_at_most_depth_plus_one_ahead():
    made: list[int] = []

    def items() -> Iterator[int]:
        for i in range(50):
            made.append(i)
            yield i

    stream = ahead(items(), depth=1)
    assert next(stream) == 0
    # item 0 read, item 1 waits in the queue, item 2 is made and waits to be put
    deadline = time.monotonic() + 10
    while len(made) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # and it goes no further
    assert len(made) == 3
    stream.close()
    assert workers() == []


def test_an_error_reaches_the_reader_as_raised_after_the_items_before_it():
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise MemoryError("out of memory on the third batch")

    got: list[int] = []
    with pytest.raises(MemoryError, match="third batch") as raised:
        for item in ahead(items()):
            got.append(item)
    assert got == [1, 2]
    assert any(frame.name == "items" for frame in raised.traceback)  # where it happened
    assert workers() == []


def test_a_reader_that_stops_early_stops_the_producer_and_closes_the_items():
    closed = threading.Event()
    made: list[int] = []

    def items() -> Iterator[int]:
        try:
            for i in range(10_000):
                made.append(i)
                yield i
        finally:
            closed.set()

    stream = ahead(items())
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()  # what a failed write does to the stream it was reading
    assert closed.is_set()
    assert workers() == []
    assert len(made) < 10  # it stopped, it did not run on to the end


def test_a_reader_stopped_by_its_own_error_leaves_no_thread():
    def items() -> Iterator[int]:
        yield from range(100)

    with pytest.raises(RuntimeError, match="the writer failed"):
        for item in ahead(items()):
            if item == 5:
                raise RuntimeError("the writer failed")
    assert workers() == []
