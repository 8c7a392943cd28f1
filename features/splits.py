"""The per-user temporal split ranking teams evaluate on: each user's own latest events are held out.

Each user's rows are ordered by ``(request_time, request_id)``; the last ``test`` of them are the test set,
the ``valid`` before those the valid set, and the rest train. A share in ``(0, 1)`` holds out that share of
the user's rows, rounded up (so every user with a row has a test row); a whole number ``>= 1`` holds out that
many rows. A user with too few rows gives test its rows first, then valid; train keeps what is left.

A split by global time (the last days held out) mixes two things in its UAUC: users whose whole history is
in training and users who appear only at the end. Here every user is in every split, so UAUC measures how
well the model ranks each user's own next items.

The split is computed once per job from three columns (user, time, request id) and becomes row filters on
the request id (``pyarrow.dataset`` expressions), so every split reads the same files as the reader does.
Rows whose user, time or request id is null are kept in train, where the reader rejects and counts them:
no row leaves the accounting.

Each held-out row's logged history holds the user's earlier held-out rows, with their labels. UAUC compares
those rows with each other, so a score that rises with the user's recent feedback ranks them backwards:
of two rows with different labels, the later one's history holds the earlier one's label, which is the
opposite of its own. ``HistoryCutoff`` (``data.freeze_history``) scores every held-out row with the history
the user had when the row's window (valid or test) began, as a feed ranks one request's candidates: one
moment, one history.

Example::

    >>> import pyarrow as pa
    >>> table = pa.table({"user_id": [1, 1, 1, 1, 2, 2, 3], "request_time": [4, 1, 3, 2, 9, 8, 5],
    ...                   "request_id": [10, 11, 12, 13, 14, 15, 16]})
    >>> split = assign_per_user(table, "user_id", "request_time", "request_id", valid=1, test=0.25)
    >>> split.test_ids.tolist(), split.valid_ids.tolist(), split.counts
    ([10, 14, 16], [12, 15], {'train': 2, 'valid': 2, 'test': 3})
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pyramid_mixer.features.files import Files
from pyramid_mixer.features.schema import DataError
from pyramid_mixer.features.spec import FeatureSpec


def held_out(n: np.ndarray, share: float) -> np.ndarray:
    """Rows held out of users with ``n`` rows each: ``ceil(share * n)`` for a share in (0, 1), else ``share``
    rows (a whole number); never more than ``n``."""
    if 0 < share < 1:
        return np.minimum(np.ceil(share * n - 1e-9).astype(np.int64), n)
    return np.minimum(np.int64(share), n)


def check_share(name: str, share: float) -> None:
    """A share in [0, 1) or a whole count >= 1; anything else is a ``ValueError`` naming ``name``."""
    if share < 0 or (share >= 1 and share != int(share)):
        raise ValueError(f"{name}={share:g}: use a share of each user's rows in (0, 1) or a whole count >= 1 "
                         "(0: none)")


@dataclass(frozen=True)
class PerUserSplit:
    """The request ids of the held-out rows and the rows of each split."""

    valid_ids: np.ndarray
    test_ids: np.ndarray
    counts: Dict[str, int]
    users: int
    valid_first: Optional[np.ndarray] = None  # per valid id: the id of its user's first valid row
    test_first: Optional[np.ndarray] = None  # per test id: the id of its user's first test row

    def filters(self, request_id: str) -> Tuple[pc.Expression, pc.Expression, pc.Expression]:
        """(train, valid, test) row filters on the ``request_id`` column; rows with a null id stay in train."""
        rid = pc.field(request_id)
        held = np.concatenate([self.valid_ids, self.test_ids])
        test = rid.isin(pa.array(self.test_ids, pa.int64()))
        valid = rid.isin(pa.array(self.valid_ids, pa.int64()))
        train = ~rid.isin(pa.array(held, pa.int64())) | rid.is_null()
        return train, valid, test


@dataclass(frozen=True)
class HistoryCutoff:
    """Rows (by request id) whose history is cut where another row's began.

    Row ``ids[i]`` (``ids`` sorted) keeps the behaviours logged before ``times[i]`` and the ``ties[i]`` oldest
    of those logged at exactly ``times[i]``: what the row whose history it takes (its window's first row, at
    ``times[i]``) held of that second. Rows not listed keep their history. Every sequence column of a row keeps
    the same behaviours, so the row stays well-formed.

    Example::

        >>> import pyarrow as pa
        >>> from pyramid_mixer.features.spec import default_spec
        >>> spec = default_spec()
        >>> behaviours = {f.column: [[4, 3, 2, 1], [3, 2]] for f in spec.sequence.fields}
        >>> table = pa.table({spec.request_id: [7, 8], spec.sequence.time_column: [[30, 20, 20, 10], [30, 20]],
        ...                   **behaviours})
        >>> cut = HistoryCutoff(np.array([7]), np.array([20]), np.array([1])).apply(table, spec)
        >>> cut.column(spec.sequence.fields[0].column).to_pylist()
        [[2, 1], [3, 2]]
    """

    ids: np.ndarray
    times: np.ndarray
    ties: np.ndarray

    def apply(self, table: pa.Table, spec: FeatureSpec) -> pa.Table:
        """``table`` with each listed row's history cut (every sequence column: the spec's sequence fields and
        its time column, most recent first); the rows themselves all stay."""
        n = table.num_rows
        if n == 0 or self.ids.shape[0] == 0:
            return table
        ids = pc.fill_null(table.column(spec.request_id), -1).to_numpy().astype(np.int64, copy=False)
        at = np.minimum(np.searchsorted(self.ids, ids), self.ids.shape[0] - 1)
        listed = self.ids[at] == ids
        cutoff = np.where(listed, self.times[at], np.iinfo(np.int64).max)
        ties = np.where(listed, self.ties[at], 0)
        times = table.column(spec.sequence.time_column).combine_chunks()
        parents = pc.list_parent_indices(times).to_numpy()
        values = times.flatten().to_numpy(zero_copy_only=False)
        tied = values == cutoff[parents]
        tied_after = np.bincount(parents[tied], minlength=n)[parents] - _count_within(tied, parents, n)
        keep = (values < cutoff[parents]) | (tied & (tied_after < ties[parents]))  # the oldest ties[i] of them
        if keep.all():
            return table
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(parents[keep], minlength=n), out=offsets[1:])
        mask = pa.array(keep)
        for column in dict.fromkeys([f.column for f in spec.sequence.fields] + [spec.sequence.time_column]):
            lists = table.column(column).combine_chunks()
            rebuilt = type(lists).from_arrays(pa.array(offsets, lists.offsets.type), lists.flatten().filter(mask),
                                              type=lists.type)
            table = table.set_column(table.schema.get_field_index(column), column, rebuilt)
        return table


def _count_within(flags: np.ndarray, parents: np.ndarray, n: int) -> np.ndarray:
    """For each flattened list element, how many flagged elements of its row come before it or are it."""
    inclusive = np.cumsum(flags)
    before_row = np.zeros(n, dtype=np.int64)
    row_start = np.flatnonzero(np.r_[True, parents[1:] != parents[:-1]]) if parents.shape[0] else parents
    before_row[parents[row_start]] = inclusive[row_start] - flags[row_start]
    return inclusive - before_row[parents]


def history_cutoffs(files: Files, spec: FeatureSpec, split: PerUserSplit) -> Tuple[HistoryCutoff, HistoryCutoff]:
    """(valid, test) cutoffs that give each held-out row the history of its user's first row in its window,
    read from those first rows (their request time and the behaviours of that second they hold)."""
    assert split.valid_first is not None and split.test_first is not None
    first = np.unique(np.concatenate([split.valid_first, split.test_first]))
    columns = [spec.request_id, spec.request_time, spec.sequence.time_column]
    rows = files.dataset().to_table(columns=columns, filter=pc.field(spec.request_id).isin(pa.array(first, pa.int64())))
    rid = rows.column(spec.request_id).to_numpy()
    order = np.argsort(rid)
    rid, time = rid[order], rows.column(spec.request_time).to_numpy()[order]
    hist = rows.column(spec.sequence.time_column).combine_chunks().take(pa.array(order))
    parents = pc.list_parent_indices(hist).to_numpy()
    in_its_second = hist.flatten().to_numpy(zero_copy_only=False) == time[parents]
    same_second = np.bincount(parents[in_its_second], minlength=len(rid))

    def cutoff(ids: np.ndarray, firsts: np.ndarray) -> HistoryCutoff:
        at = np.searchsorted(rid, firsts)
        return HistoryCutoff(ids, time[at], same_second[at])

    return cutoff(split.valid_ids, split.valid_first), cutoff(split.test_ids, split.test_first)


def assign_per_user(table: pa.Table, user: str, time: str, request_id: str, valid: float,
                    test: float) -> PerUserSplit:
    """The per-user split of ``table``'s rows (see the module docstring).

    Args:
        table: the ``user``, ``time`` and ``request_id`` columns of every row.
        valid, test: the share or count held out per user (``held_out``).

    Raises:
        DataError: two rows share a request id (the split names rows by it).
    """
    check_share("valid", valid)
    check_share("test", test)
    keyed = pc.and_(pc.and_(pc.is_valid(table[user]), pc.is_valid(table[time])), pc.is_valid(table[request_id]))
    t = table.filter(keyed)
    ids = t[request_id].to_numpy().astype(np.int64, copy=False)
    if np.unique(ids).shape[0] != ids.shape[0]:
        raise DataError(f"data.split=per_user names held-out rows by {request_id!r}, and some request ids occur "
                        "more than once; give every row its own id (or split with data.train/valid/test)")
    u = t[user].to_numpy().astype(np.int64, copy=False)
    order = np.lexsort((ids, t[time].to_numpy(), u))  # by user, then time, then request id
    u_sorted = u[order]
    first = np.ones(u_sorted.shape[0], dtype=bool)
    first[1:] = u_sorted[1:] != u_sorted[:-1]
    starts = np.flatnonzero(first)
    n = np.diff(np.append(starts, u_sorted.shape[0]))  # rows per user
    n_test = held_out(n, test)
    n_valid = np.minimum(held_out(n, valid), n - n_test)
    after = np.repeat(starts + n, n) - 1 - np.arange(u_sorted.shape[0])  # the user's rows after each row
    owner_test = np.repeat(n_test, n)
    owner_valid = np.repeat(n_valid, n)
    is_test = after < owner_test
    is_valid = ~is_test & (after < owner_test + owner_valid)
    sorted_ids = ids[order]
    counts = {"train": int(table.num_rows - is_test.sum() - is_valid.sum()), "valid": int(is_valid.sum()),
              "test": int(is_test.sum())}
    valid_ids, valid_first = _with_window_first(sorted_ids, u_sorted, is_valid)
    test_ids, test_first = _with_window_first(sorted_ids, u_sorted, is_test)
    return PerUserSplit(valid_ids, test_ids, counts, int(n.shape[0]), valid_first, test_first)


def _with_window_first(ids: np.ndarray, users: np.ndarray, window: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The ids of a window's rows (sorted) and, for each, the id of its user's first row in the window; the
    arrays are in (user, time, id) order."""
    rows = np.flatnonzero(window)
    first = np.ones(rows.shape[0], dtype=bool)
    first[1:] = users[rows[1:]] != users[rows[:-1]]  # a user's window rows are its last ones: one run each
    firsts = ids[rows[np.maximum.accumulate(np.where(first, np.arange(rows.shape[0]), 0))]]
    by_id = np.argsort(ids[rows])
    return ids[rows][by_id], firsts[by_id]


def per_user_split(files: Files, spec: FeatureSpec, valid: float, test: float) -> PerUserSplit:
    """``assign_per_user`` over every row of ``files`` (the listing the splits will read), reading only the
    user, request-time and request-id columns of the spec."""
    columns = [spec.user_id, spec.request_time, spec.request_id]
    table = files.dataset().to_table(columns=columns)
    if table.num_rows == 0:
        raise DataError(f"{files}: no rows to split")
    return assign_per_user(table, *columns, valid=valid, test=test)
