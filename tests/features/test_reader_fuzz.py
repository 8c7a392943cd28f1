"""Fuzz: random schemas and random values never end in an unhandled exception, and every row is accounted for.

Each example writes a small Parquet file whose rows are valid rows with random damage (nulls, NaN and inf,
negative ids, unequal list lengths, history after the request, long lists) and whose schema may lose a column
or change a column's type. Reading it either fails with a ``DataError`` (``SchemaError`` for the schema)
naming the file, or yields batches with rows read = used + rejected, every rejected row under a reason.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Dict, List

import pyarrow as pa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pyramid_mixer.features.reader import BadRowPolicy, ParquetReader, ReadOptions
from pyramid_mixer.features.schema import DataError
from pyramid_mixer.features.spec import default_spec
from pyramid_mixer.features.tokens import LevelSpec, PyramidLayout
from tests.logs import SCHEMA, random_rows, write_rows

LAYOUT = PyramidLayout(levels=(LevelSpec(0, 4, 1), LevelSpec(4, 16, 4)))
LISTS = ("item_tags", "hist_item_id", "hist_author_id", "hist_item_category", "hist_action", "hist_time")
SCALARS = ("user_id", "item_id", "author_id", "request_time", "item_category", "user_region", "device",
           "item_duration", "user_active_days", "click", "finish", "like", "click_prob")
ODD_VALUES = st.sampled_from([None, -1, -(2**62), 0, 2**62, float("nan"), float("inf"), -float("inf")])
ODD_TYPES = st.sampled_from([pa.string(), pa.float64(), pa.int32(), pa.list_(pa.string()), pa.list_(pa.float32())])


@st.composite
def damaged_rows(draw: st.DrawFn) -> List[Dict[str, Any]]:
    rows = random_rows(draw(st.integers(1, 30)), seed=draw(st.integers(0, 10_000)), max_history=24)
    for _ in range(draw(st.integers(0, 8))):
        row = rows[draw(st.integers(0, len(rows) - 1))]
        now = row["request_time"] if isinstance(row["request_time"], int) else 1_700_000_000
        kind = draw(st.sampled_from(["scalar", "list-value", "list-length", "list-null", "future", "long"]))
        if kind == "scalar":
            col = draw(st.sampled_from(SCALARS))
            value = draw(ODD_VALUES)
            if col in ("click", "finish", "like") and isinstance(value, float):
                value = None  # int8 columns hold no NaN
            elif isinstance(value, float) and col not in ("item_duration", "user_active_days", "click_prob"):
                value = None
            elif isinstance(value, int) and col in ("click", "finish", "like"):
                value = max(-128, min(127, value))
            row[col] = value
        elif kind == "list-value" and row["hist_time"]:
            col = draw(st.sampled_from(LISTS))
            if row[col]:
                row[col] = list(row[col])
                row[col][0] = draw(st.sampled_from([-1, -(2**62), 2**62, None]))
        elif kind == "list-length":
            col = draw(st.sampled_from(LISTS[1:]))
            row[col] = list(row[col] or []) + [1]
        elif kind == "list-null":
            row[draw(st.sampled_from(LISTS))] = None
        elif kind == "future" and row["hist_time"]:
            row["hist_time"] = [now + 5] + list(row["hist_time"][1:])
        elif kind == "long":
            n = draw(st.integers(30, 60))
            row["hist_time"] = [now - i - 1 for i in range(n)]
            for c in LISTS[1:-1]:
                row[c] = [1 + i % 5 for i in range(n)]
    return rows


@st.composite
def damaged_schema(draw: st.DrawFn) -> pa.Schema:
    schema = SCHEMA
    if draw(st.booleans()):
        return schema
    i = draw(st.integers(0, len(schema) - 1))
    if draw(st.booleans()):
        return schema.remove(i)
    return schema.set(i, pa.field(schema.field(i).name, draw(ODD_TYPES)))


def _cast_rows(rows: List[Dict[str, Any]], schema: pa.Schema) -> List[Dict[str, Any]]:
    """The rows with each retyped column's values made to fit its new type (strings, floats, ...)."""
    out = []
    for row in rows:
        new = {}
        for f in schema:
            v = row.get(f.name)
            t = f.type
            if v is None:
                new[f.name] = None
            elif pa.types.is_list(t):
                elem = t.value_type
                vals = v if isinstance(v, list) else [v]
                new[f.name] = [None if x is None else (str(x) if pa.types.is_string(elem) else float(x))
                               if not pa.types.is_integer(elem) else x for x in vals]
            elif pa.types.is_string(t):
                new[f.name] = str(v)
            elif pa.types.is_floating(t):
                new[f.name] = float(v[0]) if isinstance(v, list) and v else (None if isinstance(v, list) else float(v))
            elif pa.types.is_int32(t):
                x = v[0] if isinstance(v, list) and v else v
                new[f.name] = None if isinstance(x, list) or x != x or abs(x) == float("inf") \
                    or not -(2**31) <= int(x) < 2**31 else int(x)
            else:
                new[f.name] = v
        out.append(new)
    return out


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(rows=damaged_rows(), schema=damaged_schema(), fail=st.booleans(), batch=st.integers(1, 17))
def test_reader_never_crashes_and_accounts_for_every_row(
    rows: List[Dict[str, Any]], schema: pa.Schema, fail: bool, batch: int
) -> None:
    policy = BadRowPolicy("fail" if fail else "reject", 1.0)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_rows(Path(tmp) / "f.parquet", _cast_rows(rows, schema), row_group_size=7, schema=schema)
        try:
            reader = ParquetReader([path], default_spec(), LAYOUT, ReadOptions(batch, bad_rows=policy))
            used = sum(b.batch_size for b in reader)
        except DataError as e:
            assert "f.parquet" in str(e)
            event(f"error: {type(e).__name__}")
            return
    s = reader.stats
    assert used == s.rows_used
    assert s.rows_read == len(rows) == s.rows_used + s.rows_rejected
    assert sum(s.rejected.values()) == s.rows_rejected
    if fail:
        assert s.rows_rejected == 0
    event("rows rejected" if s.rows_rejected else "all rows used")
