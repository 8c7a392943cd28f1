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
from typing import Dict, Tuple

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

    def filters(self, request_id: str) -> Tuple[pc.Expression, pc.Expression, pc.Expression]:
        """(train, valid, test) row filters on the ``request_id`` column; rows with a null id stay in train."""
        rid = pc.field(request_id)
        held = np.concatenate([self.valid_ids, self.test_ids])
        test = rid.isin(pa.array(self.test_ids, pa.int64()))
        valid = rid.isin(pa.array(self.valid_ids, pa.int64()))
        train = ~rid.isin(pa.array(held, pa.int64())) | rid.is_null()
        return train, valid, test


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
    return PerUserSplit(np.sort(sorted_ids[is_valid]), np.sort(sorted_ids[is_test]), counts, int(n.shape[0]))


def per_user_split(files: Files, spec: FeatureSpec, valid: float, test: float) -> PerUserSplit:
    """``assign_per_user`` over every row of ``files`` (the listing the splits will read), reading only the
    user, request-time and request-id columns of the spec."""
    columns = [spec.user_id, spec.request_time, spec.request_id]
    table = files.dataset().to_table(columns=columns)
    if table.num_rows == 0:
        raise DataError(f"{files}: no rows to split")
    return assign_per_user(table, *columns, valid=valid, test=test)
