"""Next-item batches: the user's rows with no candidate, then the items they are scored against.

In next-item mode a row is a user at one moment: its history (the behaviours before the row's item, most
recent first) and, as the label, the item itself (the spec's first ``target`` feature). The model must not
see that item, so every ``target`` feature's bag is emptied in the user's rows. The items a batch's users are
scored against (the *candidates*: the whole catalogue, or a sample of it) are appended to the same
``KeyedJaggedTensor`` as ``N`` more rows after the ``B`` user rows, each holding one item id in the item
feature and nothing else, or, with ``NextItemInputs.features``, the item's bags of the other candidate
features too (its attributes: Beauty's categories and brand). The item embeddings therefore come out of the
same sharded table, through the same lookup (and its fused optimizer), as the history's items: there is no
second copy of the table.

``NextItemInputs`` says what a batch carries; ``NextItemBuilder`` builds ``NextItemBatch`` es from Arrow rows
(the reader uses it when its ``ReadOptions.next_item`` is set).

Candidates per batch (``NextItemInputs.negatives``):
- ``0``: the whole catalogue (full softmax in training; full ranking in evaluation);
- ``M > 0``: the batch's own targets (in-batch negatives for each other) plus ``M`` items drawn uniformly from
  the catalogue, distinct and sorted, with each candidate's log inclusion probability ``log_q`` for the
  sampled-softmax correction: ``q_i = 1 - (1 - p_i)^B * (1 - M / N)``, ``p_i`` the item's share of the
  training targets (``item_counts``), the probability that item ``i`` is among ``B`` targets drawn by
  popularity or ``M`` drawn uniformly (independence assumed; exact for either source alone).

Every row also gets one uniform negative (``negatives_per_row``, a candidate other than its target) for the
BPR loss, and, when ``seen`` is set, the catalogue positions of the items of its history other than its
target (masked in full ranking).

Example::

    >>> import numpy as np
    >>> inputs = NextItemInputs(catalogue=np.array([3, 5, 9]))
    >>> inputs.positions(np.array([9, 3])).tolist()
    [2, 0]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from pyramid_mixer.features.batch import RankingBatch
from pyramid_mixer.features.kjt_builder import BatchBuilder, _flat_list, hash_ids, table_rows
from pyramid_mixer.features.schema import DataError
from pyramid_mixer.features.spec import FeatureSpec
from pyramid_mixer.features.tokens import PyramidLayout


@dataclass(frozen=True)
class NextItemInputs:
    """What a next-item batch carries beside its rows (see the module docstring).

    Args:
        catalogue: ``N`` sorted distinct rows of the item table (ids after hashing): the items ranked.
        negatives: 0: every batch carries the whole catalogue; ``M > 0``: the batch's targets plus ``M``
            uniform draws (sampled softmax).
        item_counts: ``N`` training-target counts per catalogue item (the log-Q correction; None: uniform).
        seen: give each row its history's catalogue positions (for full ranking's mask).
        seed: the negative draws of a batch come from ``(seed, the batch's first request id, its size)``:
            the same batch draws the same negatives, in a resumed run too.
        features: the candidate rows' bags of the candidate features after the item id
            (``catalogue_features``): per feature name, ``(lengths N, values)`` in catalogue order. None: the
            candidate rows hold the item id alone.
    """

    catalogue: np.ndarray
    negatives: int = 0
    item_counts: Optional[np.ndarray] = field(default=None, compare=False)
    seen: bool = False
    seed: int = 0
    features: Optional[Dict[str, Tuple[np.ndarray, np.ndarray]]] = field(default=None, compare=False)

    def __post_init__(self) -> None:
        c = self.catalogue
        if c.ndim != 1 or c.size == 0 or (c.size > 1 and not (np.diff(c) > 0).all()):
            raise ValueError("the catalogue must be a non-empty sorted array of distinct item rows")
        if self.negatives < 0:
            raise ValueError(f"negatives must be >= 0 (0: the whole catalogue), got {self.negatives}")

    @property
    def size(self) -> int:
        return int(self.catalogue.size)

    def lookup(self, rows: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(catalogue positions, found) of item rows; a row not in the catalogue has found False."""
        pos = np.minimum(np.searchsorted(self.catalogue, rows), self.catalogue.size - 1)
        return pos, self.catalogue[pos] == rows

    def positions(self, rows: np.ndarray) -> np.ndarray:
        """Catalogue positions of item rows; an item not in the catalogue is a ``DataError``."""
        pos, found = self.lookup(rows)
        if not found.all():
            raise DataError(f"item rows {np.unique(rows[~found])[:5].tolist()} are not in the catalogue of "
                            f"{self.catalogue.size} items (built from every split of the data)")
        return pos


@dataclass
class NextItemBatch(RankingBatch):
    """A ``RankingBatch`` whose KJT has ``B + N`` rows (users, then candidates; see the module docstring).

    Shapes: ``targets``/``row_negatives``/``seen_lengths`` ``B`` (positions among the candidates, the
    row's one BPR negative, the length of its seen list), ``candidates``/``log_q`` ``N`` (catalogue
    positions of the candidate rows, their log inclusion probability: 0 when the batch holds the whole
    catalogue), ``seen_values`` (catalogue positions of each row's seen items, concatenated).
    """

    targets: torch.Tensor
    candidates: torch.Tensor
    log_q: torch.Tensor
    row_negatives: torch.Tensor
    seen_lengths: torch.Tensor
    seen_values: torch.Tensor

    @property
    def num_candidates(self) -> int:
        return int(self.candidates.shape[0])

    def seen_mask(self, num_items: int) -> torch.Tensor:
        """``B X num_items`` bool: the catalogue items each row has seen (not its target)."""
        B = self.batch_size
        mask = torch.zeros(B, num_items, dtype=torch.bool, device=self.seen_values.device)
        rows = torch.repeat_interleave(torch.arange(B, device=self.seen_values.device), self.seen_lengths)
        mask[rows, self.seen_values] = True
        return mask


def take_bags(lengths: np.ndarray, values: np.ndarray, index: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The bags ``index`` of a jagged ``(lengths, values)``, in that order."""
    starts = np.cumsum(lengths) - lengths
    out_lengths = lengths[index]
    take = np.repeat(starts[index] - (np.cumsum(out_lengths) - out_lengths), out_lengths)
    take += np.arange(take.size)
    return out_lengths, values[take]


def catalogue_features(table: pa.Table, spec: FeatureSpec, catalogue: np.ndarray
                       ) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Each catalogue item's bag of every candidate feature after the item id (``spec.target[1:]``), hashed
    as the batches hash them, from the first row of ``table`` whose target it is; an item with no row there
    gets empty bags. Returns ``(lengths N, values)`` per feature name (``NextItemInputs.features``)."""
    item = spec.sparse_feature(spec.target[0])
    rows = hash_ids(table.column(item.column).to_numpy().astype(np.int64), table_rows(spec.table(item.table)),
                    item.hashing)
    pos, found = NextItemInputs(catalogue).lookup(rows)
    first = np.full(catalogue.size, -1, dtype=np.int64)
    at = np.flatnonzero(found)[::-1]  # the last write wins: reversed, the first row of each item
    first[pos[at]] = at
    has = first >= 0
    out: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
    for name in spec.target[1:]:
        f = spec.sparse_feature(name)
        if f.multi_valued:
            lengths, values = _flat_list(table.column(f.column))
        else:
            values = table.column(f.column).to_numpy().astype(np.int64)
            lengths = np.ones(values.size, dtype=np.int64)
        values = hash_ids(values, table_rows(spec.table(f.table)), f.hashing)
        got_lengths, got_values = take_bags(lengths, values, first[has])
        all_lengths = np.zeros(catalogue.size, dtype=np.int64)
        all_lengths[has] = got_lengths
        out[name] = (all_lengths, got_values)
    return out


def with_candidates(kjt: KeyedJaggedTensor, blank: Sequence[str], item_key: str, rows: np.ndarray,
                    features: Optional[Dict[str, Tuple[np.ndarray, np.ndarray]]] = None) -> KeyedJaggedTensor:
    """``kjt`` (``B`` rows) with the ``blank`` keys' bags emptied and ``len(rows)`` more rows appended: one
    id of ``rows`` each in ``item_key``, the bags of ``features`` (per key, ``(lengths, values)`` of the
    ``len(rows)`` candidates) in theirs, nothing in any other key."""
    features = features or {}
    keys = kjt.keys()
    B, K, N = kjt.stride(), len(keys), int(rows.size)
    lengths = kjt.lengths().view(K, B).numpy()
    values = kjt.values().numpy()
    ends = np.cumsum(lengths.sum(1))
    starts = ends - lengths.sum(1)
    out_lengths = np.zeros((K, B + N), dtype=np.int64)
    out_lengths[:, :B] = lengths
    parts: List[np.ndarray] = []
    for k, key in enumerate(keys):
        if key in blank:
            out_lengths[k, :B] = 0
        else:
            parts.append(values[starts[k] : ends[k]])
        if key == item_key:
            out_lengths[k, B:] = 1
            parts.append(rows.astype(np.int64, copy=False))
        elif key in features:
            out_lengths[k, B:] = features[key][0]
            parts.append(features[key][1].astype(np.int64, copy=False))
    return KeyedJaggedTensor.from_lengths_sync(
        keys=keys, values=torch.from_numpy(np.concatenate(parts)), lengths=torch.from_numpy(out_lengths.reshape(-1))
    )


class NextItemBuilder(BatchBuilder):
    """Arrow rows -> ``NextItemBatch`` (see the module docstring).

    Args:
        spec, layout: as for ``BatchBuilder``; the item is ``spec.target[0]``, its history the first sequence
            field (they share a table).
        inputs: the catalogue and what each batch carries.
    """

    def __init__(self, spec: FeatureSpec, layout: PyramidLayout, inputs: NextItemInputs) -> None:
        super().__init__(spec, layout)
        self.inputs = inputs
        self.item = spec.sparse_feature(spec.target[0])
        self.history = spec.sequence.fields[0]
        self.item_rows = table_rows(self.tables[self.item.table])
        counts = inputs.item_counts
        self.p = None if counts is None else counts / max(float(counts.sum()), 1.0)

    def _rows(self, table: pa.Table, column: str, hashing: str) -> np.ndarray:
        return hash_ids(table.column(column).to_numpy().astype(np.int64), self.item_rows, hashing)

    def build(self, table: pa.Table) -> NextItemBatch:
        base = super().build(table)
        inputs, B = self.inputs, table.num_rows
        target_pos = inputs.positions(self._rows(table, self.item.column, self.item.hashing))
        rng = np.random.default_rng([inputs.seed, int(base.request_ids[0]) if B else 0, B])
        if inputs.negatives:
            drawn = rng.integers(0, inputs.size, size=inputs.negatives)
            candidates = np.unique(np.concatenate([target_pos, drawn]))
            p = self.p[candidates] if self.p is not None else np.full(candidates.size, 1.0 / inputs.size)
            q = 1.0 - (1.0 - p) ** B * (1.0 - inputs.negatives / inputs.size)
            log_q = np.log(np.clip(q, 1e-12, 1.0))
        else:
            candidates = np.arange(inputs.size)
            log_q = np.zeros(inputs.size)
        targets = np.searchsorted(candidates, target_pos)
        # one BPR negative per row: a uniform candidate other than the row's target
        row_neg = (targets + rng.integers(1, max(candidates.size, 2), size=B)) % max(candidates.size, 1)
        if inputs.seen:  # history items outside the catalogue are never ranked: nothing to mask
            lengths, values = _flat_list(table.column(self.history.column))
            seen, known = inputs.lookup(hash_ids(values, self.item_rows, self.history.hashing))
            row = np.repeat(np.arange(B), lengths)
            keep = known & (seen != target_pos[row])
            seen_lengths, seen_values = np.bincount(row[keep], minlength=B), seen[keep]
        else:
            seen_lengths, seen_values = np.zeros(B, dtype=np.int64), np.zeros(0, dtype=np.int64)
        extra = None if inputs.features is None else {
            name: take_bags(lengths, values, candidates) for name, (lengths, values) in inputs.features.items()}
        kjt = with_candidates(base.sparse_features, self.spec.target, self.item.name, inputs.catalogue[candidates],
                              extra)
        fields = {f: getattr(base, f) for f in base.__dataclass_fields__}
        fields["sparse_features"] = kjt
        return NextItemBatch(
            **fields,
            targets=torch.from_numpy(targets.astype(np.int64)),
            candidates=torch.from_numpy(candidates.astype(np.int64)),
            log_q=torch.from_numpy(log_q.astype(np.float32)),
            row_negatives=torch.from_numpy(row_neg.astype(np.int64)),
            seen_lengths=torch.from_numpy(seen_lengths.astype(np.int64)),
            seen_values=torch.from_numpy(seen_values.astype(np.int64)),
        )


def item_rows(dataset: ds.Dataset, spec: FeatureSpec, row_filter: Optional[pc.Expression] = None) -> np.ndarray:
    """The item-table rows (hashed ids) of the target item of every row of ``dataset`` (passing ``row_filter``)."""
    item = spec.sparse_feature(spec.target[0])
    column = dataset.to_table(columns=[item.column], filter=row_filter).column(item.column)
    ids = column.drop_null().to_numpy().astype(np.int64)
    return hash_ids(ids, table_rows(spec.table(item.table)), item.hashing)
