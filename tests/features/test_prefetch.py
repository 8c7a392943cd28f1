"""Read-ahead keeps the order, raises the producer's errors where they happened, and stops when closed."""

from __future__ import annotations

import threading
import time
from typing import Iterator, List

import pytest

from pyramid_mixer.features.prefetch import prefetch


def counted(n: int, seen: List[int], fail_at: int = -1) -> Iterator[int]:
    for i in range(n):
        if i == fail_at:
            raise ValueError(f"bad item {i}")
        seen.append(i)
        yield i


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_order_and_every_item(depth: int) -> None:
    assert list(prefetch(counted(50, []), depth)) == list(range(50))


def test_an_error_in_the_producer_is_raised_after_the_items_before_it() -> None:
    got: List[int] = []
    with pytest.raises(ValueError, match="bad item 7"):
        for x in prefetch(counted(20, [], fail_at=7), depth=3):
            got.append(x)
    assert got == list(range(7))


def test_closing_early_stops_the_thread_without_reading_the_rest() -> None:
    seen: List[int] = []
    before = threading.active_count()
    ahead = prefetch(counted(10_000, seen), depth=2)
    assert [next(ahead) for _ in range(3)] == [0, 1, 2]
    time.sleep(0.2)  # let the producer fill its queue
    ahead.close()
    assert threading.active_count() == before
    assert len(seen) <= 3 + 2 + 1  # taken + queued + the one waiting to be queued


def test_depth_zero_runs_in_the_calling_thread() -> None:
    threads: List[str] = []

    def items() -> Iterator[int]:
        threads.append(threading.current_thread().name)
        yield 1

    assert list(prefetch(items(), 0)) == [1] and threads == [threading.current_thread().name]
    threads.clear()
    assert list(prefetch(items(), 2)) == [1] and threads == ["prefetch"]
