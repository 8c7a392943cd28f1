"""Checking Parquet data against the feature spec: file schemas before the first batch, rows per batch.

Schema errors name the file, the column, what was found and what was expected, and point at the spec
entry. Row checks are vectorised (no per-row Python) and return, per reason, how many rows were rejected,
so that every job can report rows read = rows used + rows rejected.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pyramid_mixer.features.spec import FeatureSpec


class DataError(ValueError):
    """Input data that cannot be used as it is; the message names the file or split and what to do."""


class SchemaError(DataError):
    """A data file whose columns do not match the feature spec."""


Check = Callable[[pa.DataType], bool]

# Why ``check_rows`` rejects a row, in the order it checks (a row failing several checks is counted once,
# under the first); ``{column}`` stands for the column's name. ``docs/spec.md`` is generated from this.
REJECT_REASONS: Tuple[Tuple[str, str], ...] = (
    ("null {column}", "a null in a column the spec reads (a null list, for list columns)"),
    ("non-finite label", "a label that is NaN or infinite"),
    ("label not 0 or 1", "a label other than 0 and 1 (the loss and the AUCs are for binary labels)"),
    ("non-finite dense", "a dense feature that is NaN or infinite"),
    ("negative id {column}", "a negative id in a column the spec hashes by ``modulo``"),
    ("null in {column}", "a null inside a list column (a multi-valued feature or a history field)"),
    ("unequal history lengths", "history list columns of different lengths in the row"),
    ("history time after request", "a behaviour later than the row's request time (leaked future)"),
)


def _is_id(t: pa.DataType) -> bool:
    """An integer type whose every value fits int64 (uint64 does not: ids from 2^63 would wrap)."""
    return pa.types.is_integer(t) and not pa.types.is_uint64(t)


def _is_int_list(t: pa.DataType) -> bool:
    return (pa.types.is_list(t) or pa.types.is_large_list(t)) and _is_id(t.value_type)


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _is_label(t: pa.DataType) -> bool:
    return _is_number(t) or pa.types.is_boolean(t)


def expected_columns(spec: FeatureSpec) -> List[Tuple[str, Check, str, str]]:
    """(column, type check, expected type in words, spec entry) for every column the spec reads."""
    cols: List[Tuple[str, Check, str, str]] = [
        (spec.request_id, _is_id, "int64", "request_id"),
        (spec.user_id, _is_id, "int64", "user_id"),
        (spec.request_time, _is_id, "int64 (unix seconds)", "request_time"),
        (spec.group_key, _is_id, "int64", "group_key"),
    ]
    for f in spec.sparse:
        if f.multi_valued:
            cols.append((f.column, _is_int_list, "list<int64>", f"sparse.{f.name}"))
        else:
            cols.append((f.column, _is_id, "int64", f"sparse.{f.name}"))
    for d in spec.dense:
        cols.append((d.column, _is_number, "float32", f"dense.{d.column}"))
    for label in spec.labels:
        cols.append((label.column, _is_label, "int8 or float32 (0/1)", f"labels.{label.name}"))
    for s in spec.sequence.fields:
        cols.append((s.column, _is_int_list, "list<int64>", f"sequence.fields.{s.name}"))
    cols.append((spec.sequence.time_column, _is_int_list, "list<int64>", "sequence.time_column"))
    seen = set()
    return [c for c in cols if not (c[0] in seen or seen.add(c[0]))]


def oracle_columns(spec: FeatureSpec, schema: pa.Schema) -> Dict[str, str]:
    """Label name -> true-probability column, for the labels whose oracle column the data has."""
    return {
        label.name: label.oracle_column
        for label in spec.labels
        if label.oracle_column and label.oracle_column in schema.names
    }


def type_name(t: pa.DataType) -> str:
    """``list<string>`` rather than Arrow's ``list<element: string>``."""
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"list<{type_name(t.value_type)}>"
    return str(t)


def validate_schema(schema: pa.Schema, spec: FeatureSpec, path: str) -> None:
    """Raises ``SchemaError`` naming the file and column for the first missing or mistyped column."""
    for column, check, expected, entry in expected_columns(spec):
        if column not in schema.names:
            raise SchemaError(
                f"{path}: column {column!r} is missing, expected {expected} "
                f"(see feature spec '{entry}' in {spec.source}); the file has {schema.names}"
            )
        found = schema.field(column).type
        if not check(found):
            unsigned = "uint64" in type_name(found)
            raise SchemaError(
                f"{path}: column {column!r} is {type_name(found)}, expected {expected} "
                f"(see feature spec '{entry}' in {spec.source})"
                + ("; ids from 2^63 do not fit: write the column as int64 (e.g. pyarrow.compute.cast(column, "
                   "pa.int64(), safe=False) keeps every id distinct; give the feature hashing: hash)"
                   if unsigned else "")
            )


@dataclass
class RowCheck:
    ok: np.ndarray  # B bool: rows to use
    rejected: Counter  # reason -> rows


def _flat(arr: pa.Array) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """(lengths, flat values, null mask of the values or None if none is null) of a list column, respecting
    slices; a null list has length 0."""
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
    values = pc.list_flatten(arr)
    nulls = pc.is_null(values).to_numpy(zero_copy_only=False) if values.null_count else None
    return lengths, values.to_numpy(zero_copy_only=False), nulls


def _rows_with(bad: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per row: does any of its list values have ``bad`` set? (``bad`` is over the flat values.)"""
    n = lengths.shape[0]
    if not bad.any():  # the usual case: no row index array is built
        return np.zeros(n, dtype=bool)
    return np.bincount(np.repeat(np.arange(n), lengths)[bad], minlength=n) > 0


def _row_max(values: np.ndarray, lengths: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(rows with a value, each such row's largest value), in one ``reduceat`` pass."""
    nonempty = np.flatnonzero(lengths > 0)
    starts = (np.cumsum(lengths) - lengths)[nonempty]
    return nonempty, (np.maximum.reduceat(values, starts) if nonempty.size else values[:0])


def check_rows(table: pa.Table, spec: FeatureSpec) -> RowCheck:
    """Vectorised row checks; a row failing several checks is counted once, under its first reason."""
    n = table.num_rows
    ok = np.ones(n, dtype=bool)
    rejected: Counter = Counter()

    def reject(reason: str, bad: np.ndarray) -> None:
        new = bad & ok
        count = int(new.sum())
        if count:
            rejected[reason] += count
            ok[new] = False

    for column, _, _, _ in expected_columns(spec):
        arr = table.column(column)
        if arr.null_count:
            reject(f"null {column}", pc.is_null(arr).to_numpy(zero_copy_only=False))
    for label in spec.labels:
        v = table.column(label.column).to_numpy(zero_copy_only=False).astype(np.float64)
        reject("non-finite label", ~np.isfinite(v))
        reject("label not 0 or 1", (v != 0) & (v != 1))
    for d in spec.dense:
        v = table.column(d.column).to_numpy(zero_copy_only=False).astype(np.float64)
        reject("non-finite dense", ~np.isfinite(v))
    # every list column flattened once: (lengths, values, nulls)
    seq_cols = [s.column for s in spec.sequence.fields] + [spec.sequence.time_column]
    multi = [f.column for f in spec.sparse if f.multi_valued]
    flat = {c: _flat(table.column(c).combine_chunks()) for c in multi + seq_cols}
    for f in spec.sparse:
        if f.hashing != "modulo":
            continue
        if f.multi_valued:
            lengths, values, _ = flat[f.column]  # null values: rejected below, with the other list columns
            bad = _rows_with(values < 0, lengths)
        else:
            bad = pc.fill_null(pc.less(table.column(f.column), 0), False).to_numpy(zero_copy_only=False)
        reject(f"negative id {f.column}", bad)

    for c in multi + seq_cols:  # a null inside a list (the list itself may not be null)
        lens, _, nulls = flat[c]
        if nulls is not None:
            reject(f"null in {c}", _rows_with(nulls, lens))
    lengths = [flat[c][0] for c in seq_cols]
    reject("unequal history lengths", np.any(np.stack(lengths) != lengths[0], axis=0))
    for s in spec.sequence.fields:
        if s.hashing == "modulo":
            lens, values, _ = flat[s.column]
            reject(f"negative id {s.column}", _rows_with(values < 0, lens))
    lens, times, _ = flat[spec.sequence.time_column]
    request_time = table.column(spec.request_time).to_numpy(zero_copy_only=False)
    rows, latest = _row_max(times, lens)
    late = np.zeros(n, dtype=bool)
    late[rows] = latest > request_time[rows]
    reject("history time after request", late)
    return RowCheck(ok=ok, rejected=rejected)
