"""Amazon reviews (McAuley's 2014 release, e.g. Beauty) converted to Parquet impressions for ``specs/beauty.yaml``.

Input, in one directory (the data is not committed, see https://jmcauley.ucsd.edu/data/amazon/), each file
plain or gzipped (``.json.gz``, as downloaded):

- ``reviews_<Category>_5.json``: the 5-core reviews, one strict JSON object a line; read: ``reviewerID``,
  ``asin``, ``overall`` (the rating 1..5), ``unixReviewTime``; the other fields are ignored.
- ``meta_<Category>.json``: the item metadata, one record a line, written as a Python dict literal (single
  quotes; strict JSON lines are read too); read: ``asin``, ``brand``, ``price`` (both may be missing) and
  ``categories`` (a list of category paths). Only the lines of items that have reviews are parsed.

Output: one row per review, in the order of the review file (``request_id`` = row number):

- ``user_id``, ``item_id``: reviewer and asin as dense int64 ids from 1, in sorted token order;
- ``request_time`` = unixReviewTime (whole days: a user's reviews of one day keep the file's order);
  ``rating`` (float32) and ``click`` = rating >= 4 (int8);
- the item's side features, 0 where unknown (no metadata, no brand, no category, no price):
  ``item_category`` (the most specific category of the first category path), ``item_brand`` (dense ids from
  1 in sorted order) and ``item_price_bucket`` (``price_buckets``, log-scale);
- ``hist_item_id``, ``hist_item_category``, ``hist_item_brand``, ``hist_item_price_bucket``,
  ``hist_action`` (the rating 1..5), ``hist_time``: the user's strictly earlier reviews (by time, then file
  row), most recent first, capped at ``max_history``;
- ``events_after``: the user's reviews after this one (0: the last), for next-item mode's leave-one-out
  split; a user's two held-out rows (0 and 1) keep their whole history, uncapped.

``k_core`` (0: off) keeps only the reviews of the k-core (users and items with fewer than k reviews dropped,
repeatedly until stable); the ids are then dense over what is kept. The 5-core file is already 5-core.

Example::

    >>> s = convert_amazon(Path("data/amazon-raw"), Path("data/beauty"), category="Beauty")  # doctest: +SKIP
    >>> s.rows, s.users, s.items                                                             # doctest: +SKIP
    (198502, 22363, 12101)
"""

from __future__ import annotations

import ast
import gzip
import json
import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.json as pajson

from pyramid_mixer.features.datasets.conversion import (
    ConvertSummary,
    chunk_bounds,
    dense_ids,
    k_core_mask,
    to_table,
    token_vocabulary,
)
from pyramid_mixer.features.datasets.histories import HistoryIndex, events_after, list_column
from pyramid_mixer.features.datasets.parts import write_parts
from pyramid_mixer.features.schema import DataError

__all__ = ["AMAZON_SCHEMA", "AMAZON_URL", "PRICE_BUCKETS", "amazon_files", "convert_amazon", "price_buckets",
           "read_meta", "read_reviews"]

log = logging.getLogger(__name__)

AMAZON_URL = "https://jmcauley.ucsd.edu/data/amazon/"
PRICE_BUCKETS = 64  # bucket ids 0 (unknown) .. 63

_LIST = pa.list_(pa.int64())
AMAZON_SCHEMA = pa.schema(
    [
        ("request_id", pa.int64()),
        ("user_id", pa.int64()),
        ("item_id", pa.int64()),
        ("request_time", pa.int64()),
        ("item_category", pa.int64()),
        ("item_brand", pa.int64()),
        ("item_price_bucket", pa.int64()),
        ("events_after", pa.int64()),
        ("rating", pa.float32()),
        ("click", pa.int8()),
        ("hist_item_id", _LIST),
        ("hist_item_category", _LIST),
        ("hist_item_brand", _LIST),
        ("hist_item_price_bucket", _LIST),
        ("hist_action", _LIST),
        ("hist_time", _LIST),
    ]
)

_REVIEW_FIELDS = pa.schema(
    [("reviewerID", pa.string()), ("asin", pa.string()), ("overall", pa.float64()), ("unixReviewTime", pa.int64())]
)
# The asin of a metadata line that starts like the 2014 files' (``{'asin': '0000031852', ...``): lines of items
# without reviews are skipped without parsing them. Other lines are parsed to find their asin.
_LEADING_ASIN = re.compile(r"""^\s*\{\s*['"]asin['"]\s*:\s*['"]([^'"\\]*)['"]""")


def amazon_files(category: str) -> Tuple[str, str]:
    """(review file, metadata file) names of a category of the 2014 release, without ``.gz``."""
    return f"reviews_{category}_5.json", f"meta_{category}.json"


def _find(source: Path, name: str) -> Path:
    """``source/name``, else ``source/name.gz``; neither is a ``DataError`` saying what to download."""
    for path in (source / name, source / f"{name}.gz"):
        if path.is_file():
            return path
    raise DataError(f"{source / name}: file not found (nor {name}.gz); download {name}.gz from {AMAZON_URL} "
                    f"(the 2014 release: the category's 5-core reviews and its metadata) into {source}")


def _open_text(path: Path):  # type: ignore[no-untyped-def]
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def read_reviews(path: Path) -> pa.Table:
    """The ``reviewerID``, ``asin``, ``overall``, ``unixReviewTime`` of a JSON-lines review file (or ``.gz``).

    A line that is not JSON, or a review without one of these fields, is a ``DataError`` naming the file.
    """
    try:
        with pa.input_stream(str(path), compression="gzip" if path.suffix == ".gz" else None) as f:
            table = pajson.read_json(
                f,
                read_options=pajson.ReadOptions(block_size=1 << 24),
                parse_options=pajson.ParseOptions(explicit_schema=_REVIEW_FIELDS, unexpected_field_behavior="ignore"),
            )
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{path}: not JSON lines of reviews with {_REVIEW_FIELDS.names}: {e}") from e
    table = table.select(_REVIEW_FIELDS.names).combine_chunks()
    for name in _REVIEW_FIELDS.names:
        if table.column(name).null_count:
            raise DataError(f"{path}: {table.column(name).null_count} reviews have no {name!r}")
    return table


def _record(line: str, path: Path, lineno: int) -> dict:
    """One metadata line: a Python dict literal, else strict JSON."""
    try:
        value = ast.literal_eval(line)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {lineno} is neither a Python dict literal nor JSON: {e}") from e
    if not isinstance(value, dict):
        raise DataError(f"{path}: line {lineno} is a {type(value).__name__}, not a record (a dict)")
    return value


def read_meta(path: Path, asins: Set[str]) -> Dict[str, dict]:
    """asin -> metadata record, for the ``asins`` wanted (an asin listed twice: the first record wins).

    Lines of other asins are skipped unparsed when their asin can be read off the line's start; an unreadable
    line that has to be parsed is a ``DataError`` naming the file and line.
    """
    records: Dict[str, dict] = {}
    with _open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            leading = _LEADING_ASIN.match(line)
            if leading is not None and (leading.group(1) not in asins or leading.group(1) in records):
                continue
            record = _record(line, path, lineno)
            asin = record.get("asin")
            if isinstance(asin, str) and asin in asins and asin not in records:
                records[asin] = record
    return records


def price_buckets(price: np.ndarray) -> np.ndarray:
    """int64 log-scale buckets of prices: ``1 + floor(2 log2(1 + price))``, at most ``PRICE_BUCKETS - 1``;
    0 for an unknown price (NaN, negative).

    Example::

        >>> price_buckets(np.array([np.nan, -1.0, 0.0, 1.0, 9.99, 100.0, 1e30])).tolist()
        [0, 0, 1, 3, 7, 14, 63]
    """
    known = np.isfinite(price) & (price >= 0)
    bucket = 1 + np.floor(2 * np.log2(1 + np.where(known, price, 0.0)))
    return np.where(known, np.minimum(bucket, PRICE_BUCKETS - 1), 0).astype(np.int64)


def _price(value: object) -> float:
    """A metadata price as a float; NaN when missing or not a number."""
    if isinstance(value, str):
        value = value.strip().lstrip("$").replace(",", "")
    try:
        price = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return price if math.isfinite(price) else math.nan


def _leaf_category(value: object) -> str:
    """The most specific (last) category of the first category path; '' without one."""
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple)) and value[0]:
        return str(value[0][-1]).strip()
    return ""


@dataclass(frozen=True)
class _ItemSides:
    """Item side features by dense item id (index 0 = unknown item)."""

    category: np.ndarray  # I + 1
    brand: np.ndarray  # I + 1
    price_bucket: np.ndarray  # I + 1


def _item_sides(asins: List[str], meta: Dict[str, dict]) -> _ItemSides:
    """Side features of the items ``asins`` (dense id = position + 1); 0 where the metadata has none."""
    empty: dict = {}
    records = [meta.get(a, empty) for a in asins]
    brands = pa.array([""] + [str(r.get("brand") or "").strip() for r in records], pa.string())
    categories = pa.array([""] + [_leaf_category(r.get("categories")) for r in records], pa.string())
    price = np.array([math.nan] + [_price(r.get("price")) for r in records], dtype=np.float64)
    return _ItemSides(
        category=dense_ids(categories, token_vocabulary(categories)),
        brand=dense_ids(brands, token_vocabulary(brands)),
        price_bucket=price_buckets(price),
    )


@dataclass(frozen=True)
class _Reviews:
    """The reviews, in input order."""

    user: np.ndarray  # N dense ids
    item: np.ndarray  # N dense ids
    rating: np.ndarray  # N float64
    time: np.ndarray  # N int64 unix seconds


def _amazon_chunk(rv: _Reviews, sides: _ItemSides, hist: HistoryIndex, after: np.ndarray, lo: int,
                  hi: int) -> pa.Table:
    """The ``AMAZON_SCHEMA`` rows of reviews ``lo .. hi - 1``."""
    item = rv.item[lo:hi]
    hist_offsets, rows = hist.gather(lo, hi)
    hist_item = rv.item[rows]
    rating = rv.rating[lo:hi]
    cols = {
        "request_id": np.arange(lo, hi, dtype=np.int64),
        "user_id": rv.user[lo:hi],
        "item_id": item,
        "request_time": rv.time[lo:hi],
        "item_category": sides.category[item],
        "item_brand": sides.brand[item],
        "item_price_bucket": sides.price_bucket[item],
        "events_after": after[lo:hi],
        "rating": rating.astype(np.float32),
        "click": (rating >= 4).astype(np.int8),
        "hist_item_id": list_column(hist_offsets, hist_item),
        "hist_item_category": list_column(hist_offsets, sides.category[hist_item]),
        "hist_item_brand": list_column(hist_offsets, sides.brand[hist_item]),
        "hist_item_price_bucket": list_column(hist_offsets, sides.price_bucket[hist_item]),
        "hist_action": list_column(hist_offsets, np.rint(rv.rating[rows]).astype(np.int64)),
        "hist_time": list_column(hist_offsets, rv.time[rows]),
    }
    return to_table(cols, AMAZON_SCHEMA)


def convert_amazon(source: Path, out: Path, category: str = "Beauty", max_history: int = 256,
                   row_group_rows: int = 20_000, k_core: int = 0,
                   rows_per_file: Optional[int] = None) -> ConvertSummary:
    """Converts a category of the 2014 Amazon reviews to Parquet impressions (see the module docstring).

    Args:
        source: directory holding ``reviews_<category>_5.json`` and ``meta_<category>.json`` (or ``.gz``).
        out: output directory; created if missing; one that holds ``part-*.parquet`` files already is refused.
        category: the category's name in the file names (``Beauty``).
        max_history: cap on the history length of the training rows (most recent kept).
        row_group_rows: rows per Parquet row group.
        k_core: k-core filtering (0: off): users and items with fewer reviews are dropped, repeatedly until
            every one left has at least this many.
        rows_per_file: rows per Parquet file (the last may hold fewer); None: one file.

    Returns:
        the summary of what was written.
    """
    if row_group_rows <= 0:
        raise ValueError(f"row_group_rows must be positive, got {row_group_rows}")
    start = time.perf_counter()
    source = Path(source)
    review_name, meta_name = amazon_files(category)
    review_path, meta_path = _find(source, review_name), _find(source, meta_name)
    table = read_reviews(review_path)
    users, asins = table.column("reviewerID").combine_chunks(), table.column("asin").combine_chunks()
    if k_core > 1:
        keep = k_core_mask(dense_ids(users, token_vocabulary(users)), dense_ids(asins, token_vocabulary(asins)),
                           k_core)
        table = table.filter(pa.array(keep))
        users, asins = table.column("reviewerID").combine_chunks(), table.column("asin").combine_chunks()
    user_vocab, item_vocab = token_vocabulary(users), token_vocabulary(asins)
    rv = _Reviews(
        user=dense_ids(users, user_vocab),
        item=dense_ids(asins, item_vocab),
        rating=table.column("overall").to_numpy().astype(np.float64),
        time=table.column("unixReviewTime").to_numpy().astype(np.int64),
    )
    if (rv.user == 0).any() or (rv.item == 0).any():
        raise DataError(f"{review_path}: reviews with an empty reviewerID or asin")
    item_asins = item_vocab.to_pylist()
    meta = read_meta(meta_path, set(item_asins))
    if len(meta) < len(item_asins):
        log.info("%s: %d of %d reviewed items have no metadata; their side features are 0", meta_path,
                 len(item_asins) - len(meta), len(item_asins))
    sides = _item_sides(item_asins, meta)
    n = rv.user.shape[0]
    after = events_after(rv.user, rv.time)
    hist = HistoryIndex.build(rv.user, rv.time, np.ones(n, dtype=bool), max_history, uncapped=after <= 1)
    chunks = (_amazon_chunk(rv, sides, hist, after, lo, hi) for lo, hi in chunk_bounds(n, row_group_rows))
    files = write_parts(Path(out), AMAZON_SCHEMA, chunks, rows_per_file or max(n, 1), row_group_rows)
    return ConvertSummary(
        rows=n,
        users=int(np.unique(rv.user).shape[0]),
        items=int(np.unique(rv.item).shape[0]),
        click_rate=float((rv.rating >= 4).mean()) if n else 0.0,
        mean_history=float(hist.length.mean()) if n else 0.0,
        files=tuple(files),
        seconds=time.perf_counter() - start,
    )
