"""What the public-dataset converters share besides histories (``histories.py``) and Parquet parts
(``parts.py``): k-core filtering, dense ids of string tokens, number parsing, tables from columns, and the
summary of a conversion."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pyramid_mixer.features.schema import DataError

__all__ = [
    "ConvertSummary",
    "chunk_bounds",
    "dense_ids",
    "k_core_mask",
    "parse_floats",
    "parse_ints",
    "split_tokens",
    "to_table",
    "token_vocabulary",
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
