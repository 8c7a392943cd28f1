"""Read-ahead: a background thread runs an iterator (the reader: Parquet decoding, row checks, batch
building) up to ``depth`` items ahead of the consumer (the training step).

A thread, not a process: pyarrow's decoding and the batch builder's numpy work release the GIL, as do
torch's kernels, so on a machine with a core to spare the next batches are built while this one trains.
The order is the iterator's own, so results are bit-identical with and without read-ahead. An exception
in the iterator is raised in the consumer at the position it happened; a consumer that stops early (a
``max_steps`` cut, a stop signal) closes the read-ahead, and the thread ends without reading further.

Example::

    >>> list(prefetch(iter(range(5)), depth=2))
    [0, 1, 2, 3, 4]
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

_DONE = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(items: Iterable[T], depth: int) -> Iterator[T]:
    """``items``, produced by a background thread up to ``depth`` ahead; ``depth=0`` iterates in place."""
    if depth <= 0:
        yield from items
        return
    q: "queue.Queue[object]" = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as e:  # handed to the consumer, raised there
            put(_Failed(e))
            return
        put(_DONE)

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
