"""Interaction sequences in the sequential-recommendation benchmarks' form (S3-Rec's Amazon Beauty and the
papers after it) converted to Parquet rows for ``specs/beauty_seq.yaml``.

Input, in one directory:

- ``interactions.tsv``: ``user_id  item_id  timestamp`` (tab-separated, a header line); ids are positive
  integers, timestamps unix seconds. Rows are grouped by user and, within a user, in the sequence order:
  **the file's order is the order** (neighbours often share a day, so nothing is re-sorted by time), the
  user's last row is the test item and the one before it the valid item.
- ``item_attributes.json``: ``{"item_id": [attribute ids]}`` (categories and brand in one vocabulary).

Output: one row per interaction, in the file's order (``request_id`` = row number):

- ``user_id``, ``item_id`` as given; ``request_time`` = the timestamp; ``click`` = 1 (every row is an
  interaction: the data is for next-item mode); ``events_after``: the user's rows after this one;
- ``item_attr_1`` .. ``item_attr_K``: the item's attributes, rarest first (the most specific: a brand or a
  leaf category), 0 where it has fewer than ``K``; K = ``ATTRIBUTE_SLOTS``;
- ``hist_item_id``, ``hist_attr_1`` .. ``hist_attr_K``, ``hist_time``: the user's earlier rows in the
  file's order, most recent first, capped at ``max_history`` (the user's two held-out rows keep their whole
  history: it is the mask of the items they have seen).

Example::

    >>> s = convert_sequences(Path("data/amazon-beauty"), Path("data/beauty-seq"))  # doctest: +SKIP
    >>> s.rows, s.users, s.items                                                    # doctest: +SKIP
    (198502, 22363, 12101)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from pyramid_mixer.features.datasets.conversion import ConvertSummary, chunk_bounds, to_table
from pyramid_mixer.features.datasets.histories import HistoryIndex, events_after, list_column
from pyramid_mixer.features.datasets.parts import write_parts
from pyramid_mixer.features.schema import DataError

__all__ = ["ATTRIBUTE_SLOTS", "SEQUENCES_SCHEMA", "attribute_slots", "convert_sequences", "read_interactions"]

ATTRIBUTE_SLOTS = 4  # 96 % of Beauty's items have at most 4 attributes

_LIST = pa.list_(pa.int64())
SEQUENCES_SCHEMA = pa.schema(
    [("request_id", pa.int64()), ("user_id", pa.int64()), ("item_id", pa.int64()), ("request_time", pa.int64())]
    + [(f"item_attr_{k}", pa.int64()) for k in range(1, ATTRIBUTE_SLOTS + 1)]
    + [("events_after", pa.int64()), ("click", pa.int8()), ("hist_item_id", _LIST)]
    + [(f"hist_attr_{k}", _LIST) for k in range(1, ATTRIBUTE_SLOTS + 1)]
    + [("hist_time", _LIST)]
)


def read_interactions(path: Path) -> Dict[str, np.ndarray]:
    """``user``, ``item``, ``time`` (int64, the file's order) of ``interactions.tsv``; a missing column, a
    non-integer or non-positive id, or a user whose rows are not together is a ``DataError`` naming the file."""
    try:
        table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter="\t"),
                               convert_options=pacsv.ConvertOptions(
                                   column_types={"user_id": pa.int64(), "item_id": pa.int64(),
                                                 "timestamp": pa.int64()}))
    except (pa.ArrowInvalid, OSError) as e:
        why = " ".join(str(e).split())
        raise DataError(f"{path}: not a tab-separated user_id / item_id / timestamp file with integer values "
                        f"({why})") from None
    missing = [c for c in ("user_id", "item_id", "timestamp") if c not in table.column_names]
    if missing:
        raise DataError(f"{path}: no column {missing} (the header must name user_id, item_id and timestamp)")
    if any(table.column(c).null_count for c in ("user_id", "item_id", "timestamp")):
        raise DataError(f"{path}: empty values in user_id, item_id or timestamp")
    out = {"user": table.column("user_id").to_numpy(), "item": table.column("item_id").to_numpy(),
           "time": table.column("timestamp").to_numpy()}
    if out["user"].size and (out["user"].min() < 1 or out["item"].min() < 1):
        raise DataError(f"{path}: ids must be >= 1 (0 is the project's 'unknown')")
    starts = np.flatnonzero(np.r_[True, out["user"][1:] != out["user"][:-1]]) if out["user"].size else []
    if np.unique(out["user"][starts]).size != len(starts):  # a user starting a second block
        raise DataError(f"{path}: a user's rows are not together; the file's order is each user's sequence, so "
                        "it cannot be recovered: write each user's rows in one block, in sequence order")
    return out


def attribute_slots(path: Path, num_items: int, slots: int = ATTRIBUTE_SLOTS) -> np.ndarray:
    """``num_items + 1`` X ``slots`` attribute ids per item id (row 0 and missing slots 0): each item's
    attributes, rarest first (ties by id), from ``item_attributes.json``."""
    try:
        raw = json.loads(Path(path).read_text())
    except ValueError as e:
        raise DataError(f"{path}: not JSON ({e})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected an object {{item_id: [attribute ids]}}")
    attrs: Dict[int, List[int]] = {}
    for key, values in raw.items():
        if not (isinstance(values, list) and all(isinstance(v, int) and v > 0 for v in values)):
            raise DataError(f"{path}: item {key!r}: expected a list of attribute ids >= 1, found {values!r}")
        attrs[int(key)] = values
    counts: Dict[int, int] = {}
    for values in attrs.values():
        for v in values:
            counts[v] = counts.get(v, 0) + 1
    out = np.zeros((num_items + 1, slots), dtype=np.int64)
    for item, values in attrs.items():
        if 0 < item <= num_items:
            ranked = sorted(set(values), key=lambda v: (counts[v], v))[:slots]
            out[item, : len(ranked)] = ranked
    return out


def _chunk(ev: Dict[str, np.ndarray], attrs: np.ndarray, hist: HistoryIndex, after: np.ndarray, lo: int,
           hi: int) -> pa.Table:
    item = ev["item"][lo:hi]
    offsets, rows = hist.gather(lo, hi)
    hist_item = ev["item"][rows]
    cols: Dict[str, object] = {
        "request_id": np.arange(lo, hi, dtype=np.int64), "user_id": ev["user"][lo:hi], "item_id": item,
        "request_time": ev["time"][lo:hi], "events_after": after[lo:hi], "click": np.ones(hi - lo, np.int8),
        "hist_item_id": list_column(offsets, hist_item), "hist_time": list_column(offsets, ev["time"][rows]),
    }
    for k in range(attrs.shape[1]):
        cols[f"item_attr_{k + 1}"] = attrs[item, k]
        cols[f"hist_attr_{k + 1}"] = list_column(offsets, attrs[hist_item, k])
    return to_table(cols, SEQUENCES_SCHEMA)


def convert_sequences(source: Path, out: Path, max_history: int = 50, row_group_rows: int = 20_000,
                      k_core: int = 0) -> ConvertSummary:
    """Converts ``source/interactions.tsv`` and ``source/item_attributes.json`` (see the module docstring).

    Args:
        source: the directory holding both files.
        out: output directory; created if missing; one that holds ``part-*.parquet`` files already is refused.
        max_history: cap on the history length of the training rows (most recent kept; the benchmarks' 50).
        row_group_rows: rows per Parquet row group.
        k_core: not supported (the sequences are given as evaluated): anything but 0 is a ``DataError``.
    """
    if k_core:
        raise DataError("these sequences are the benchmark's as given (already 5-core): --k-core does not apply")
    start = time.perf_counter()
    source = Path(source)
    for name in ("interactions.tsv", "item_attributes.json"):
        if not (source / name).is_file():
            raise DataError(f"{source / name}: file not found (the directory must hold interactions.tsv and "
                            "item_attributes.json)")
    ev = read_interactions(source / "interactions.tsv")
    n = ev["user"].shape[0]
    if n == 0:
        raise DataError(f"{source / 'interactions.tsv'}: no interactions")
    attrs = attribute_slots(source / "item_attributes.json", int(ev["item"].max()))
    order = np.arange(n)  # the file's order is the sequence order: it orders the histories, not the time
    after = events_after(ev["user"], order)
    hist = HistoryIndex.build(ev["user"], order, np.ones(n, dtype=bool), max_history, uncapped=after <= 1)
    chunks = (_chunk(ev, attrs, hist, after, lo, hi) for lo, hi in chunk_bounds(n, row_group_rows))
    files = write_parts(Path(out), SEQUENCES_SCHEMA, chunks, max(n, 1), row_group_rows)
    return ConvertSummary(rows=n, users=int(np.unique(ev["user"]).size), items=int(np.unique(ev["item"]).size),
                          click_rate=1.0, mean_history=float(hist.length.mean()), files=tuple(files),
                          seconds=time.perf_counter() - start)
