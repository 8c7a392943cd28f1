"""The one history gatherer of the generator and every converter: each event's history as a range of a flat
array, gathered without per-row Python, and written as ``list<int64>`` columns.

``HistoryIndex`` builds the ranges for logged events (the user's events before each one); the generator
keeps its own ranges (each impression's last behaviour and history length) and gathers them with the same
``gather_ranges``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import pyarrow as pa

__all__ = ["HistoryIndex", "events_after", "gather_ranges", "list_column"]


@dataclass(frozen=True)
class HistoryIndex:
    """Each event's history as a range of a flat array: no per-row Python, built once for all events.

    Events are ordered by (user, time, input row). An event's history is the *kept* events of the same user
    strictly before it in that order, most recent first, at most ``max_history`` of them.

    Args:
        kept_rows: K input rows of the kept events, in (user, time, input row) order.
        last: N per event (input order): position in ``kept_rows`` of its most recent history event.
        length: N per event: history length (capped).

    Example::

        >>> user, time_ = np.array([1, 1, 2, 1]), np.array([5, 3, 4, 5])
        >>> offsets, rows = HistoryIndex.build(user, time_, np.ones(4, bool), max_history=8).gather(0, 4)
        >>> offsets.tolist(), rows.tolist()  # row 3 ties row 0 in time and comes later: it sees row 0
        ([0, 1, 1, 1, 3], [1, 0, 1])
    """

    kept_rows: np.ndarray
    last: np.ndarray
    length: np.ndarray

    @classmethod
    def build(cls, user: np.ndarray, time_: np.ndarray, keep: np.ndarray, max_history: int,
              uncapped: Optional[np.ndarray] = None) -> "HistoryIndex":
        """Args:
            user, time_: N int64 per event, in input order.
            keep: N bool: which events may appear in a history (all of them, or e.g. the clicked ones).
            max_history: the cap on a history's length (>= 0).
            uncapped: N bool, events whose history is never capped (next-item data: the held-out last
                events, whose whole history is the mask of items already seen); None: every event is capped.

        Returns:
            the index; ``gather(lo, hi)`` gives the history rows of events ``lo .. hi - 1``.
        """
        if max_history < 0:
            raise ValueError(f"max_history must be >= 0, got {max_history}")
        n = user.shape[0]
        order = np.lexsort((np.arange(n), time_, user))  # N: sorted position -> input row
        kept = keep[order]
        before = np.cumsum(kept) - kept  # N: kept events strictly before each sorted position (all users)
        new_user = np.ones(n, dtype=bool)
        new_user[1:] = user[order][1:] != user[order][:-1]
        first = np.maximum.accumulate(np.where(new_user, np.arange(n), 0))  # N: the user's first position
        length_sorted = before - before[first]
        capped = np.ones(n, dtype=bool) if uncapped is None else ~uncapped[order]
        length_sorted = np.where(capped, np.minimum(length_sorted, max_history), length_sorted)
        last = np.empty(n, dtype=np.int64)
        length = np.empty(n, dtype=np.int64)
        last[order] = before - 1
        length[order] = length_sorted
        return cls(kept_rows=order[kept], last=last, length=length)

    def gather(self, lo: int, hi: int) -> Tuple[np.ndarray, np.ndarray]:
        """(offsets int32 ``hi - lo + 1``, input rows of the history events, most recent first per event)."""
        offsets, positions = gather_ranges(self.last[lo:hi], self.length[lo:hi], step=-1)
        return offsets, self.kept_rows[positions]


def events_after(user: np.ndarray, time_: np.ndarray) -> np.ndarray:
    """N int64 per event (input order): the same user's events after it in (time, input row) order, the order
    ``HistoryIndex`` uses (0: the user's last event).

    Example::

        >>> events_after(np.array([1, 2, 1, 1]), np.array([5, 4, 3, 5])).tolist()
        [1, 0, 2, 0]
    """
    n = user.shape[0]
    order = np.lexsort((np.arange(n), time_, user))
    sorted_user = user[order]
    last = np.ones(n, dtype=bool)
    last[:-1] = sorted_user[1:] != sorted_user[:-1]
    end = np.minimum.accumulate(np.where(last, np.arange(n), n)[::-1])[::-1]  # the user's last position
    out = np.empty(n, dtype=np.int64)
    out[order] = end - np.arange(n)
    return out


def gather_ranges(start: np.ndarray, length: np.ndarray, step: int) -> Tuple[np.ndarray, np.ndarray]:
    """Flat positions of R ranges ``start[r], start[r] + step, ...`` (``length[r]`` each).

    Args:
        start: R first positions.
        length: R range lengths.
        step: +1 walks forward, -1 backward.

    Returns:
        (offsets int32 R + 1, positions int64 sum(length)).
    """
    offsets = np.zeros(length.shape[0] + 1, dtype=np.int64)
    np.cumsum(length, out=offsets[1:])
    owner = np.repeat(np.arange(length.shape[0]), length)
    positions = start[owner] + step * (np.arange(offsets[-1]) - offsets[owner])
    return offsets.astype(np.int32), positions.astype(np.int64)


def list_column(offsets: np.ndarray, values: np.ndarray) -> pa.ListArray:
    """A ``list<int64>`` column from int32 offsets and flat values."""
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values, pa.int64()))
