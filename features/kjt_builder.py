"""Arrow rows -> ``RankingBatch``: ids hashed into their tables, the history cut into pyramid token bags.

The ``KeyedJaggedTensor`` holds, in this key order:
1. one key per sparse feature of the spec (``user``, ``item``, ``tags``, ...), one bag per row;
2. for each token feature (the sequence id fields, then ``hist_time_gap``) and each pyramid slot, a key
   ``{feature}@L{level}.t{token}`` whose bag holds the ids of the behaviours grouped into that token.

All token features share one bag structure (the lengths), so it is computed once per batch, vectorised. In
position mode a slot's bag in a row is one run of the row's history (the positions the slot covers), so the
KJT order is those runs laid end to end, with no per-behaviour slot or sort; in age mode each behaviour's slot
comes from its age, and a stable sort by ``slot * B + row`` puts the values in KJT order. Everything is numpy
on whole columns; there is no per-row Python.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from pyramid_mixer.features.batch import RankingBatch
from pyramid_mixer.features.schema import oracle_columns
from pyramid_mixer.features.spec import FeatureSpec, TableSpec
from pyramid_mixer.features.tokens import PyramidLayout, slot_of_age, slot_spans, time_gap_bucket

TIME_GAP_FEATURE = "hist_time_gap"
_SPLITMIX_1 = np.uint64(0x9E3779B97F4A7C15)
_SPLITMIX_2 = np.uint64(0xBF58476D1CE4E5B9)
_SPLITMIX_3 = np.uint64(0x94D049BB133111EB)


#: the id space of a managed-collision table: ids reach its module in ``[0, ID_SPACE)`` (``int64`` max is
#: the module's empty-slot marker, so it is excluded)
ID_SPACE = 2**63 - 1


def table_rows(table: TableSpec) -> int:
    """What ``hash_ids`` reduces a table's ids to: its rows, or ``ID_SPACE`` for a managed-collision table
    (whose module maps ids to rows in the model)."""
    return ID_SPACE if table.managed_collision else table.num_embeddings


def hash_ids(ids: np.ndarray, num_embeddings: int, hashing: str) -> np.ndarray:
    """Maps int64 ids to ``[0, num_embeddings)``: ``modulo`` (non-negative ids) or ``hash`` (SplitMix64, any
    id); ``num_embeddings=ID_SPACE`` keeps ids distinct for a managed-collision table."""
    if hashing == "modulo":
        if ids.size == 0 or (ids.min() >= 0 and ids.max() < num_embeddings):
            return ids  # already rows: two cheap passes instead of a division per id
        return np.mod(ids, num_embeddings)
    z = ids.astype(np.int64).view(np.uint64) + _SPLITMIX_1
    z = (z ^ (z >> np.uint64(30))) * _SPLITMIX_2
    z = (z ^ (z >> np.uint64(27))) * _SPLITMIX_3
    z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(num_embeddings)).astype(np.int64)


def token_feature_names(spec: FeatureSpec) -> List[str]:
    """F per-behaviour features of a token, in tower order: sequence fields, then the time gap."""
    return [f.name for f in spec.sequence.fields] + [TIME_GAP_FEATURE]


def token_key(feature: str, slot: str) -> str:
    return f"{feature}@{slot}"


def kjt_keys(spec: FeatureSpec, layout: PyramidLayout) -> List[str]:
    """The KJT key order produced by ``BatchBuilder`` (see module docstring)."""
    slots = layout.slot_names()
    return [f.name for f in spec.sparse] + [token_key(f, s) for f in token_feature_names(spec) for s in slots]


def history_cap(spec: FeatureSpec, layout: PyramidLayout) -> int:
    """Behaviours of a row's history that a batch reads: the spec's ``max_length``, and in position mode no
    more than the layout covers."""
    cap = spec.sequence.max_length
    return min(cap, layout.coverage) if layout.mode == "position" else cap


def _np(arr: pa.ChunkedArray) -> np.ndarray:
    return arr.to_numpy()


def _flat_list(arr: pa.ChunkedArray) -> Tuple[np.ndarray, np.ndarray]:
    """(lengths, flat values) of a list column; ``list_flatten`` respects slices (``.values`` does not)."""
    combined = arr.combine_chunks()
    lengths = pc.list_value_length(combined).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    values = pc.list_flatten(combined).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return lengths, values


class BatchBuilder:
    """Turns a validated Arrow table of B rows into a ``RankingBatch``.

    Args:
        spec: the feature spec.
        layout: the pyramid layout deciding each behaviour's token slot.

    Example::

        >>> from pyramid_mixer.features.spec import default_spec
        >>> builder = BatchBuilder(default_spec(), PyramidLayout())
        >>> builder.keys[:2], len(builder.keys)
        (['user', 'item'], 487)
    """

    def __init__(self, spec: FeatureSpec, layout: PyramidLayout) -> None:
        self.spec = spec
        self.layout = layout
        self.keys = kjt_keys(spec, layout)
        self.tables = {t.name: t for t in spec.tables}
        self.cap = history_cap(spec, layout)

    def build(self, table: pa.Table) -> RankingBatch:
        spec = self.spec
        B = table.num_rows
        values: List[np.ndarray] = []
        lengths: List[np.ndarray] = []
        for f in spec.sparse:
            n = table_rows(self.tables[f.table])
            if f.multi_valued:
                lens, vals = _flat_list(table.column(f.column))
            else:
                vals, lens = _np(table.column(f.column)).astype(np.int64), np.ones(B, dtype=np.int64)
            values.append(hash_ids(vals, n, f.hashing))
            lengths.append(lens)

        # history -> (take, slot_lengths, age): the flat behaviours in KJT order (slot-major, then row, then
        # position), the S*B bag lengths, and each taken behaviour's age
        hist_len, times = _flat_list(table.column(spec.sequence.time_column))
        request_time = _np(table.column(spec.request_time)).astype(np.int64, copy=False)
        if self.layout.mode == "position":
            take, slot_lengths, age = self._position_order(hist_len, times, request_time)
        else:
            take, slot_lengths, age = self._age_order(hist_len, times, request_time)

        # one buffer for every KJT value: each history column is gathered (and reduced) in place, with no
        # concatenation copy of the B X history elements at the end
        n = take.size
        flat = np.empty(sum(v.size for v in values) + n * (len(spec.sequence.fields) + 1), dtype=np.int64)
        o = 0
        for v in values:
            flat[o : o + v.size] = v
            o += v.size
        for f in spec.sequence.fields:
            _, ids = _flat_list(table.column(f.column))
            out = flat[o : o + n]
            np.take(ids, take, out=out)
            reduced = hash_ids(out, table_rows(self.tables[f.table]), f.hashing)
            if reduced is not out:
                out[...] = reduced
            o += n
            lengths.append(slot_lengths)
        gap_rows = self.tables[spec.sequence.time_gap_table].num_embeddings
        flat[o : o + n] = time_gap_bucket(age, gap_rows)
        lengths.append(slot_lengths)

        kjt = KeyedJaggedTensor.from_lengths_sync(
            keys=self.keys,
            values=torch.from_numpy(flat),
            lengths=torch.from_numpy(np.concatenate(lengths)),
        )
        return RankingBatch(
            dense_features=self._dense(table),
            sparse_features=kjt,
            labels=self._labels(table),
            group_ids=torch.from_numpy(_np(table.column(spec.group_key)).astype(np.int64)),
            request_ids=torch.from_numpy(_np(table.column(spec.request_id)).astype(np.int64)),
            oracle=self._oracle(table),
            history_length=torch.from_numpy(np.minimum(hist_len, self.cap)),
            weights=torch.ones(B),
        )

    def _position_order(self, hist_len: np.ndarray, times: np.ndarray,
                        request_time: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Position mode: slot s reads positions ``[first_s, first_s + group_s)`` of every row, so its bag in
        row r is one run of the flat column, ``min(n_r, cap)`` cut to that window; the KJT order is those runs
        laid end to end (S X B of them), built with one ``repeat`` and no per-behaviour slot, key or sort."""
        first, size = slot_spans(self.layout)  # S each
        n = np.minimum(hist_len, self.cap)
        slot_lengths = np.clip(n[None, :] - first[:, None], 0, size[:, None]).ravel()  # S X B, slot-major
        run_start = ((np.cumsum(hist_len) - hist_len)[None, :] + first[:, None]).ravel()  # each run in the column
        out_start = np.cumsum(slot_lengths) - slot_lengths  # each run in KJT order
        total = int(out_start[-1] + slot_lengths[-1]) if slot_lengths.size else 0
        take = np.repeat(run_start - out_start, slot_lengths)
        take += np.arange(total)
        age = np.repeat(np.tile(request_time, first.size), slot_lengths)
        age -= times[take]
        return take, slot_lengths, age

    def _age_order(self, hist_len: np.ndarray, times: np.ndarray,
                   request_time: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Age mode: each behaviour's slot from its age window and rank in it, then a stable sort by
        ``slot * B + row`` (a window's bag is not one run of the column in general)."""
        B = hist_len.size
        row = np.repeat(np.arange(B), hist_len)
        position = np.arange(times.size) - (np.cumsum(hist_len) - hist_len)[row]
        # ``sel``: the flat behaviours that land in a token slot (None: all of them)
        sel: Optional[np.ndarray] = None
        if hist_len.max(initial=0) > self.cap:
            sel = np.flatnonzero(position < self.cap)
            row, position, times = row[sel], position[sel], times[sel]
        age = request_time[row] - times
        slot = slot_of_age(self.layout, row, position, age)
        if slot.size and slot.min() < 0:
            covered = np.flatnonzero(slot >= 0)
            sel = covered if sel is None else sel[covered]
            slot, row, age = slot[covered], row[covered], age[covered]
        key = slot * B + row
        slot_lengths = np.bincount(key, minlength=self.layout.num_slots * B).astype(np.int64)
        order = np.argsort(key, kind="stable")
        return (order if sel is None else sel[order]), slot_lengths, age[order]

    def _dense(self, table: pa.Table) -> torch.Tensor:
        cols = []
        for d in self.spec.dense:
            v = _np(table.column(d.column)).astype(np.float32)
            cols.append(np.log1p(np.maximum(v, 0.0)) if d.transform == "log1p" else v)
        out = np.stack(cols, axis=1) if cols else np.zeros((table.num_rows, 0), dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))

    def _labels(self, table: pa.Table) -> torch.Tensor:
        cols = [_np(table.column(label.column)).astype(np.float32) for label in self.spec.labels]
        return torch.from_numpy(np.stack(cols, axis=1))

    def _oracle(self, table: pa.Table) -> torch.Tensor:
        oracle: Dict[str, str] = oracle_columns(self.spec, table.schema)
        out = np.full((table.num_rows, len(self.spec.labels)), np.nan, dtype=np.float32)
        for j, label in enumerate(self.spec.labels):
            if label.name in oracle:
                out[:, j] = _np(table.column(oracle[label.name])).astype(np.float32)
        return torch.from_numpy(out)
