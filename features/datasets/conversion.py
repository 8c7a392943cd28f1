"""What the public-dataset converters share: per-user histories by index arithmetic, k-core filtering, dense
ids of string tokens, list columns, Parquet parts, and the summary of a conversion."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pyramid_mixer.features.schema import DataError

__all__ = [
    "ConvertSummary",
    "HistoryIndex",
    "chunk_bounds",
    "dense_ids",
    "events_after",
    "gather_ranges",
    "k_core_mask",
    "list_column",
    "parse_floats",
    "parse_ints",
    "split_tokens",
    "to_table",
    "token_vocabulary",
    "write_parts",
]

_LIST = pa.list_(pa.int64())


@dataclass(frozen=True)
class ConvertSummary:
    """What a conversion wrote.

    Args:
        rows: rows written (one per event).
        users, items: distinct users and items among the events.
        click_rate: mean of the ``click`` label.
        mean_history: mean history length per row (after the cap).
        files: the Parquet files written.
        seconds: wall time of the conversion.
    """

    rows: int
    users: int
    items: int
    click_rate: float
    mean_history: float
    files: Tuple[str, ...]
    seconds: float


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


def k_core_mask(user: np.ndarray, item: np.ndarray, k: int) -> np.ndarray:
    """N bool per event: kept by k-core filtering. Users and items with fewer than ``k`` events are dropped,
    with their events, again and again until every user and item left has at least ``k`` events (k <= 1:
    everything is kept). Events are counted, not distinct items: a repeated rating counts twice.

    Args:
        user, item: N ids per event (any integer ids).
        k: the least number of events of a user and of an item.

    Example::

        >>> k_core_mask(np.array([1, 1, 2, 2, 3, 3]), np.array([7, 8, 7, 8, 7, 9]), 2).tolist()  # item 9, then user 3
        [True, True, True, True, False, False]
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    keep = np.ones(user.shape[0], dtype=bool)
    if k <= 1 or user.shape[0] == 0:
        return keep
    _, u = np.unique(user, return_inverse=True)
    _, i = np.unique(item, return_inverse=True)
    u, i = u.reshape(-1), i.reshape(-1)
    while True:
        user_events = np.bincount(u[keep], minlength=u.max() + 1)
        item_events = np.bincount(i[keep], minlength=i.max() + 1)
        kept = keep & (user_events[u] >= k) & (item_events[i] >= k)
        if np.array_equal(kept, keep):
            return keep
        keep = kept


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


def write_parts(out: Path, schema: pa.Schema, chunks: Iterator[pa.Table], rows_per_file: int) -> List[str]:
    """Writes each chunk as one row group of ``out/part-NNNNN.parquet``; a new file after ``rows_per_file``.

    Existing ``part-*.parquet`` files in ``out`` are removed first, so stale parts never mix with new ones.

    Returns:
        the files written.
    """
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("part-*.parquet"):
        stale.unlink()
    files: List[str] = []
    writer = None
    rows_in_file = 0
    try:
        for table in chunks:
            if writer is None or rows_in_file >= rows_per_file:
                if writer is not None:
                    writer.close()
                files.append(str(out / f"part-{len(files):05d}.parquet"))
                writer = pq.ParquetWriter(files[-1], schema, compression="snappy")
                rows_in_file = 0
            writer.write_table(table.cast(schema), row_group_size=max(table.num_rows, 1))
            rows_in_file += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    return files


def to_table(columns: Dict[str, Union[np.ndarray, pa.Array]], schema: pa.Schema) -> pa.Table:
    """The table of ``schema`` from numpy columns (cast to the field's type) and ready arrow list columns."""
    arrays = []
    for f in schema:
        column = columns[f.name]
        arrays.append(column if isinstance(column, pa.Array) else pa.array(column, f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def chunk_bounds(n: int, rows: int) -> List[Tuple[int, int]]:
    """``[(0, rows), (rows, 2 rows), ...]`` covering ``n`` rows."""
    return [(lo, min(lo + rows, n)) for lo in range(0, n, rows)]


def split_tokens(column: pa.Array, separator: str) -> Tuple[np.ndarray, pa.Array]:
    """Splits each string on ``separator`` (nulls and empty pieces dropped).

    Returns:
        (R pieces per row, the flat non-empty pieces as strings).
    """
    lists = pc.split_pattern(pc.fill_null(column, ""), separator)
    flat = pc.utf8_trim_whitespace(pc.list_flatten(lists))
    parent = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    nonempty = pc.not_equal(flat, "").to_numpy(zero_copy_only=False)
    counts = np.bincount(parent[nonempty], minlength=len(column)).astype(np.int64)
    return counts, flat.filter(pa.array(nonempty))


def token_vocabulary(*columns: pa.Array) -> pa.Array:
    """The distinct tokens of the columns, sorted numerically when all are integers, else as strings."""
    unique = pc.unique(pa.chunked_array([c for c in columns if len(c)], pa.string()).combine_chunks())
    unique = unique.filter(pc.not_equal(unique, ""))
    try:
        keys = pc.cast(unique, pa.int64())
    except pa.ArrowInvalid:
        keys = unique
    return unique.take(pc.sort_indices(keys))


def dense_ids(tokens: pa.Array, vocabulary: pa.Array) -> np.ndarray:
    """int64 ids from 1 (position in ``vocabulary`` + 1); 0 for tokens not in it."""
    index = pc.fill_null(pc.index_in(tokens, value_set=vocabulary), -1)
    return index.to_numpy(zero_copy_only=False).astype(np.int64) + 1


def parse_ints(column: pa.Array) -> np.ndarray:
    """int64 of strings that are plain non-negative integers; 0 for anything else (``unknown``, ``V``, '')."""
    plain = pc.fill_null(pc.match_substring_regex(column, r"^\s*\d{1,18}\s*$"), False)
    values = pc.cast(pc.utf8_trim_whitespace(pc.if_else(plain, column, "0")), pa.int64())
    return values.to_numpy(zero_copy_only=False)


def parse_floats(column: pa.Array, path: Path, name: str) -> np.ndarray:
    """float64 of a string column; a value that is not a number is a ``DataError`` naming file and column."""
    try:
        return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid as e:
        raise DataError(f"{path}: column {name!r} must hold numbers: {e}") from e
