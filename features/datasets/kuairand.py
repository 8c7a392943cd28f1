"""KuaiRand logs converted to Parquet in the default (Douyin-style) spec's schema, ``specs/douyin.yaml``.

Input, in one directory (KuaiRand-Pure, -1K or -27K; the data is not committed, see kuairand.com):

- ``log_standard_*.csv``: the impressions. Required: ``user_id``, ``video_id``, ``time_ms``, ``is_click``;
  ``is_like``, ``long_view``, ``duration_ms``, ``tab`` default to 0 when absent. (The ``log_random_*``
  files, the randomly exposed videos, are not read.)
- ``user_features*.csv`` (optional): ``user_active_degree`` -> ``user_region``, ``register_days`` ->
  ``user_active_days``.
- ``video_features_basic*.csv`` (optional): ``author_id``; ``tag`` (comma-separated ints) -> ``item_tags``
  and ``item_category`` (the first tag, 0 if none); ``video_duration`` when the log has no ``duration_ms``.

Output: one row per impression, in the order of the (name-sorted) log files, ``request_id`` = row number:
``item_id`` = video_id, ``request_time`` = time_ms // 1000, ``device`` = tab, ``item_duration`` = duration
in seconds, ``click`` = is_click, ``finish`` = long_view, ``like`` = is_like. The history is the same
user's strictly earlier *clicked* impressions (ordered by (time_ms, input row)), most recent first, capped:
``hist_item_id``, ``hist_author_id``, ``hist_item_category``, ``hist_action`` (3 liked, 2 long view,
1 click) and ``hist_time`` (seconds). There are no oracle columns: reports print no oracle AUC.

Example::

    >>> s = convert_kuairand(Path("data/KuaiRand-1K/data"), Path("data/kuairand-1k"))  # doctest: +SKIP
    >>> s.rows, s.click_rate                                                            # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pyramid_mixer.features.datasets import synthetic
from pyramid_mixer.features.datasets.conversion import (
    ConvertSummary,
    chunk_bounds,
    split_tokens,
    to_table,
)
from pyramid_mixer.features.datasets.histories import HistoryIndex, gather_ranges, list_column
from pyramid_mixer.features.datasets.parts import write_parts
from pyramid_mixer.features.schema import DataError

__all__ = ["ACTIVE_DEGREES", "KUAIRAND_SCHEMA", "convert_kuairand", "read_csv_columns"]

log = logging.getLogger(__name__)

LOG_FILES = "log_standard_*.csv"
USER_FILES = "user_features*.csv"
VIDEO_FILES = "video_features_basic*.csv"

# user_active_degree -> user_region id; anything else ("UNKNOWN", missing) is 0.
ACTIVE_DEGREES = {"full_active": 1, "high_active": 2, "middle_active": 3, "low_active": 4}
ACTION_CLICK, ACTION_LONG_VIEW, ACTION_LIKE = 1, 2, 3

# The default Douyin-style contract, as the generator writes it, without what KuaiRand does not have: the
# stay time and the true probabilities.
KUAIRAND_SCHEMA = pa.schema(
    [f for f in synthetic.SCHEMA if f.name not in ("stay_time", *synthetic.oracle_columns().values())]
)

_LOG_COLUMNS = {
    "user_id": pa.int64(),
    "video_id": pa.int64(),
    "time_ms": pa.float64(),
    "is_click": pa.float64(),
    "is_like": pa.float64(),
    "long_view": pa.float64(),
    "duration_ms": pa.float64(),
    "tab": pa.float64(),
}
_LOG_REQUIRED = ("user_id", "video_id", "time_ms", "is_click")
_USER_COLUMNS = {"user_id": pa.int64(), "user_active_degree": pa.string(), "register_days": pa.float64()}
_VIDEO_COLUMNS = {"video_id": pa.int64(), "author_id": pa.float64(), "tag": pa.string(),
                  "video_duration": pa.float64()}


def _header(path: Path) -> List[str]:
    with open(path, encoding="utf-8") as f:
        return [h.strip().strip('"') for h in f.readline().rstrip("\r\n").lstrip("\ufeff").split(",")]


def read_csv_columns(paths: Sequence[Path], columns: Dict[str, pa.DataType], required: Sequence[str]) -> pa.Table:
    """Reads ``columns`` of CSV files into one table; absent optional columns come back all null.

    Args:
        paths: the CSV files (with a header line), concatenated in this order.
        columns: column name -> type to read it as.
        required: columns every file must have.

    Returns:
        a table with exactly ``columns``.
    """
    tables = []
    for path in paths:
        header = _header(path)
        for name in required:
            if name not in header:
                raise DataError(f"{path}: column {name!r} is missing; the file has {header}")
        try:
            tables.append(
                pacsv.read_csv(
                    path,
                    convert_options=pacsv.ConvertOptions(
                        column_types=columns, include_columns=list(columns), include_missing_columns=True
                    ),
                )
            )
        except pa.ArrowInvalid as e:
            raise DataError(f"{path}: cannot read {list(columns)}: {e}") from e
    return pa.concat_tables(tables)


def _numbers(table: pa.Table, name: str, default: float = 0.0) -> np.ndarray:
    """A numeric column as float64, nulls and NaN as ``default``."""
    v = pc.fill_null(table.column(name), default).to_numpy().astype(np.float64)
    return np.where(np.isnan(v), default, v)


def _lookup(keys: np.ndarray, table_keys: np.ndarray) -> np.ndarray:
    """Row of ``table_keys`` holding each key (its first occurrence), -1 where absent."""
    if table_keys.shape[0] == 0:
        return np.full(keys.shape[0], -1, dtype=np.int64)
    unique, first = np.unique(table_keys, return_index=True)
    pos = np.minimum(np.searchsorted(unique, keys), unique.shape[0] - 1)
    return np.where(unique[pos] == keys, first[pos], -1)


def _with_default(values: np.ndarray, rows: np.ndarray, default: float) -> np.ndarray:
    """``values[rows]``, and ``default`` where ``rows`` is -1."""
    return np.append(values, np.array(default, dtype=values.dtype))[rows]


@dataclass(frozen=True)
class _Videos:
    """Video features by row of the video table; index ``V`` (= -1) is the unknown video."""

    author: np.ndarray  # V + 1
    category: np.ndarray  # V + 1: first tag, 0 if none
    duration_s: np.ndarray  # V + 1: seconds, 0 if unknown
    tag_start: np.ndarray  # V + 1: tags of row v are tag_values[tag_start[v] : tag_start[v] + tag_count[v]]
    tag_count: np.ndarray  # V + 1
    tag_values: np.ndarray


@dataclass(frozen=True)
class _Log:
    """The impressions in input order, with the features of their user and video joined."""

    user: np.ndarray  # N
    video: np.ndarray  # N video ids
    video_row: np.ndarray  # N row in _Videos, -1 if unknown
    time_ms: np.ndarray  # N int64
    click: np.ndarray  # N int8
    finish: np.ndarray  # N int8
    like: np.ndarray  # N int8
    tab: np.ndarray  # N int64
    duration_s: np.ndarray  # N float32
    region: np.ndarray  # N int64
    active_days: np.ndarray  # N float32


def _files(source: Path, pattern: str, required: bool) -> List[Path]:
    files = sorted(source.glob(pattern))
    if not files and required:
        raise DataError(f"{source}: no {pattern} files; point --source at the KuaiRand data directory")
    if not files:
        log.warning("%s: no %s files; their features default to 0", source, pattern)
    return files


def _read_videos(source: Path) -> Tuple[np.ndarray, _Videos]:
    """(video ids, their features) from ``video_features_basic*.csv``."""
    files = _files(source, VIDEO_FILES, required=False)
    if files:
        t = read_csv_columns(files, _VIDEO_COLUMNS, ("video_id",))
    else:
        t = pa.table({n: pa.array([], type_) for n, type_ in _VIDEO_COLUMNS.items()})
    counts, pieces = split_tokens(t.column("tag").combine_chunks(), ",")
    try:
        tags = pc.cast(pieces, pa.int64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid as e:
        raise DataError(f"{source}/{VIDEO_FILES}: column 'tag' must hold comma-separated ints: {e}") from e
    starts = np.cumsum(counts) - counts
    category = np.zeros(counts.shape[0], dtype=np.int64)
    category[counts > 0] = tags[starts[counts > 0]]
    videos = _Videos(
        author=np.append(_numbers(t, "author_id").astype(np.int64), 0),
        category=np.append(category, 0),
        duration_s=np.append(_numbers(t, "video_duration") / 1000.0, 0.0).astype(np.float32),
        tag_start=np.append(starts, 0),
        tag_count=np.append(counts, 0),
        tag_values=tags.astype(np.int64),
    )
    return t.column("video_id").to_numpy(), videos


def _read_users(source: Path) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user ids, region ids, active days) from ``user_features*.csv``."""
    files = _files(source, USER_FILES, required=False)
    if not files:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    t = read_csv_columns(files, _USER_COLUMNS, ("user_id",))
    degree = pc.utf8_trim_whitespace(pc.fill_null(t.column("user_active_degree"), "").combine_chunks())
    vocabulary = pa.array(list(ACTIVE_DEGREES), pa.string())
    index = pc.fill_null(pc.index_in(degree, value_set=vocabulary), -1).to_numpy(zero_copy_only=False)
    region = np.array(list(ACTIVE_DEGREES.values()) + [0], dtype=np.int64)[index]
    return t.column("user_id").to_numpy(), region, _numbers(t, "register_days").astype(np.float32)


def _flag(table: pa.Table, name: str) -> np.ndarray:
    return (_numbers(table, name) > 0).astype(np.int8)


def _read_log(source: Path, videos: Tuple[np.ndarray, _Videos]) -> _Log:
    t = read_csv_columns(_files(source, LOG_FILES, required=True), _LOG_COLUMNS, _LOG_REQUIRED)
    for name in ("user_id", "video_id", "time_ms"):
        if t.column(name).null_count:
            raise DataError(f"{source}/{LOG_FILES}: column {name!r} has {t.column(name).null_count} empty values")
    video_ids, v = videos
    user = t.column("user_id").to_numpy()
    video = t.column("video_id").to_numpy()
    video_row = _lookup(video, video_ids)
    user_ids, region, active_days = _read_users(source)
    user_row = _lookup(user, user_ids)
    log_duration = _numbers(t, "duration_ms", default=np.nan) / 1000.0
    duration = np.where(np.isnan(log_duration), v.duration_s[video_row], log_duration)
    return _Log(
        user=user,
        video=video,
        video_row=video_row,
        time_ms=np.floor(_numbers(t, "time_ms")).astype(np.int64),
        click=_flag(t, "is_click"),
        finish=_flag(t, "long_view"),
        like=_flag(t, "is_like"),
        tab=_numbers(t, "tab").astype(np.int64),
        duration_s=duration.astype(np.float32),
        region=_with_default(region, user_row, 0),
        active_days=_with_default(active_days, user_row, 0.0),
    )


def _kuairand_chunk(lg: _Log, v: _Videos, hist: HistoryIndex, action: np.ndarray, lo: int, hi: int) -> pa.Table:
    """The ``KUAIRAND_SCHEMA`` rows of impressions ``lo .. hi - 1``."""
    vrow = lg.video_row[lo:hi]
    tag_offsets, tag_pos = gather_ranges(v.tag_start[vrow], v.tag_count[vrow], step=1)
    hist_offsets, rows = hist.gather(lo, hi)
    hist_vrow = lg.video_row[rows]
    cols = {
        "request_id": np.arange(lo, hi, dtype=np.int64),
        "user_id": lg.user[lo:hi],
        "item_id": lg.video[lo:hi],
        "author_id": v.author[vrow],
        "request_time": lg.time_ms[lo:hi] // 1000,
        "item_category": v.category[vrow],
        "item_tags": list_column(tag_offsets, v.tag_values[tag_pos]),
        "user_region": lg.region[lo:hi],
        "device": lg.tab[lo:hi],
        "item_duration": lg.duration_s[lo:hi],
        "user_active_days": lg.active_days[lo:hi],
        "click": lg.click[lo:hi],
        "finish": lg.finish[lo:hi],
        "like": lg.like[lo:hi],
        "hist_item_id": list_column(hist_offsets, lg.video[rows]),
        "hist_author_id": list_column(hist_offsets, v.author[hist_vrow]),
        "hist_item_category": list_column(hist_offsets, v.category[hist_vrow]),
        "hist_action": list_column(hist_offsets, action[rows]),
        "hist_time": list_column(hist_offsets, lg.time_ms[rows] // 1000),
    }
    return to_table(cols, KUAIRAND_SCHEMA)


def convert_kuairand(source: Path, out: Path, max_history: int = 256, row_group_rows: int = 20_000,
                     rows_per_file: int = 1_000_000) -> ConvertSummary:
    """Converts KuaiRand's standard logs to Parquet in the default spec's schema (see the module docstring).

    Args:
        source: the KuaiRand data directory (``log_standard_*.csv`` and the feature CSVs).
        out: output directory; created if missing; one that holds ``part-*.parquet`` files already is refused.
        max_history: cap on the history length (most recent clicked impressions kept).
        row_group_rows: rows per Parquet row group.
        rows_per_file: rows per Parquet file (the last may hold fewer).

    Returns:
        the summary of what was written.
    """
    if row_group_rows <= 0 or rows_per_file <= 0:
        raise ValueError(f"row_group_rows and rows_per_file must be positive, got {row_group_rows}, {rows_per_file}")
    start = time.perf_counter()
    source = Path(source)
    if not source.is_dir():
        raise DataError(f"{source}: not a directory; point it at the KuaiRand data directory")
    _files(source, LOG_FILES, required=True)
    video_ids, videos = _read_videos(source)
    lg = _read_log(source, (video_ids, videos))
    n = lg.user.shape[0]
    hist = HistoryIndex.build(lg.user, lg.time_ms, lg.click == 1, max_history)
    action = np.where(lg.like == 1, ACTION_LIKE, np.where(lg.finish == 1, ACTION_LONG_VIEW, ACTION_CLICK))
    chunks = (_kuairand_chunk(lg, videos, hist, action.astype(np.int64), lo, hi)
              for lo, hi in chunk_bounds(n, row_group_rows))
    files = write_parts(Path(out), KUAIRAND_SCHEMA, chunks, rows_per_file, row_group_rows)
    return ConvertSummary(
        rows=n,
        users=int(np.unique(lg.user).shape[0]),
        items=int(np.unique(lg.video).shape[0]),
        click_rate=float(lg.click.mean()) if n else 0.0,
        mean_history=float(hist.length.mean()) if n else 0.0,
        files=tuple(files),
        seconds=time.perf_counter() - start,
    )
