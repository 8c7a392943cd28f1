"""MovieLens-100k, as RecBole ships it, converted to Parquet impressions for ``specs/movielens.yaml``.

Input: the RecBole "atomic" files ``ml-100k.inter``, ``ml-100k.item`` and ``ml-100k.user`` (tab-separated,
a header of ``name:type`` fields). The data is not committed (licence): ``fetch_recbole_ml100k`` takes the
three files out of the ``recbole==1.2.1`` wheel on PyPI, or the user points at a directory holding them.

Output: one row per rating, in the order of ``ml-100k.inter`` (``request_id`` = row number):

- ``click`` = rating >= 4 (int8); ``request_time`` = the rating's timestamp;
- ``hist_item_id``, ``hist_item_category`` (first genre), ``hist_release_year``, ``hist_action`` (the rating
  1..5), ``hist_time``:
  the same user's strictly earlier ratings, most recent first, capped at ``max_history``. "Earlier" orders
  by (timestamp, row of the input file): of two ratings in the same second, the one listed first is earlier,
  so no row sees itself or a later rating;
- ``item_category`` (first genre id), ``item_tags`` (all genre ids), ``release_year`` (0 if missing);
- ``user_age`` (bucket, 0 if missing), ``user_gender`` (0 unknown, 1 M, 2 F), ``user_occupation`` (id);
- ``events_after``: the user's ratings after this one (0: the user's last), for next-item mode's
  leave-one-out split. The two held-out rows of each user (0 and 1) keep their whole history, uncapped: it is
  the mask of items already seen in full ranking.

Tokens (users, items, genres, occupations) become dense int64 ids from 1 (0 = unknown). Tokens that are all
integers keep their numeric order, so ml-100k's user and item ids are unchanged.

``k_core`` (0: off) keeps only the ratings of the k-core: users and items with fewer than k ratings are
dropped, repeatedly until stable, before the histories are built; the ids of what is kept do not change.

The readers of the item and user files and the writer (``item_features``, ``user_features``,
``write_movielens``) serve ``movielens1m`` too; the history and Parquet helpers it shares with ``kuairand``
and ``amazon`` live in ``conversion``.

Example::

    >>> s = convert_movielens(fetch_recbole_ml100k(Path("data/ml-100k-raw")), Path("data/ml-100k"))  # doctest: +SKIP
    >>> s.rows, s.users, s.items                                                                        # doctest: +SKIP
    (100000, 943, 1682)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pyramid_mixer.features.datasets.conversion import (
    ConvertSummary,
    chunk_bounds,
    dense_ids,
    k_core_mask,
    parse_floats,
    parse_ints,
    split_tokens,
    to_table,
    token_vocabulary,
)
from pyramid_mixer.features.datasets.histories import HistoryIndex, events_after, gather_ranges, list_column
from pyramid_mixer.features.datasets.parts import write_parts
from pyramid_mixer.features.schema import DataError

__all__ = [
    "MOVIELENS_SCHEMA",
    "ML100K_FILES",
    "Events",
    "Items",
    "Users",
    "convert_movielens",
    "fetch_recbole_ml100k",
    "item_features",
    "rating_events",
    "read_atomic",
    "user_features",
    "write_movielens",
]

RECBOLE_WHEEL = "recbole==1.2.1"
ML100K_FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")
_WHEEL_DIR = "recbole/dataset_example/ml-100k"

# Age buckets (MovieLens-1M's): 1 = under 18, 2 = 18-24, 3 = 25-34, 4 = 35-44, 5 = 45-49, 6 = 50-55, 7 = 56+.
AGE_EDGES = np.array([1, 18, 25, 35, 45, 50, 56], dtype=np.int64)
GENDERS = {"M": 1, "F": 2}

_LIST = pa.list_(pa.int64())
MOVIELENS_SCHEMA = pa.schema(
    [
        ("request_id", pa.int64()),
        ("user_id", pa.int64()),
        ("item_id", pa.int64()),
        ("request_time", pa.int64()),
        ("item_category", pa.int64()),
        ("item_tags", _LIST),
        ("release_year", pa.int64()),
        ("user_age", pa.int64()),
        ("user_gender", pa.int64()),
        ("user_occupation", pa.int64()),
        ("events_after", pa.int64()),
        ("rating", pa.float32()),
        ("click", pa.int8()),
        ("hist_item_id", _LIST),
        ("hist_item_category", _LIST),
        ("hist_release_year", _LIST),
        ("hist_action", _LIST),
        ("hist_time", _LIST),
    ]
)


# --------------------------------------------------------------------------------------------------------
# MovieLens-100k, and the item and user features and the writer that movielens1m shares.
# --------------------------------------------------------------------------------------------------------


def read_atomic(path: Path, required: Sequence[str]) -> Dict[str, pa.Array]:
    """Reads a RecBole atomic file (tab-separated, header ``name:type``) with every column as a string.

    Args:
        path: the ``.inter`` / ``.item`` / ``.user`` file.
        required: column names (without ``:type``) that must be present.

    Returns:
        column name -> string array.
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found; expected the RecBole atomic files {list(ML100K_FILES)}")
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\r\n").lstrip("\ufeff").split("\t")
    names = [h.split(":", 1)[0] for h in header]
    for name in required:
        if name not in names:
            raise DataError(f"{path}: column {name!r} is missing; the header has {header}")
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(skip_rows=1, column_names=names),
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as e:
        raise DataError(f"{path}: not a RecBole atomic file: {e}") from e
    return {n: table.column(n).combine_chunks() for n in names}


@dataclass(frozen=True)
class Items:
    """Item features by dense item id (index 0 = unknown item)."""

    category: np.ndarray  # I + 1: first genre id
    year: np.ndarray  # I + 1
    tag_offsets: np.ndarray  # I + 2: genre ids of item i are tag_values[tag_offsets[i]:tag_offsets[i + 1]]
    tag_values: np.ndarray


@dataclass(frozen=True)
class Users:
    """User features by dense user id (index 0 = unknown user)."""

    age: np.ndarray  # U + 1: bucket
    gender: np.ndarray  # U + 1
    occupation: np.ndarray  # U + 1


@dataclass(frozen=True)
class Events:
    """The ratings, in input order."""

    user: np.ndarray  # N dense ids
    item: np.ndarray  # N dense ids
    rating: np.ndarray  # N float64
    time: np.ndarray  # N int64 unix seconds

    def take(self, keep: np.ndarray) -> "Events":
        """The events where ``keep`` (N bool) holds, in input order."""
        return Events(user=self.user[keep], item=self.item[keep], rating=self.rating[keep], time=self.time[keep])


def _first_rows(ids: np.ndarray) -> np.ndarray:
    """Row of the first occurrence of each distinct id (a duplicated feature row: the first one wins)."""
    _, first = np.unique(ids, return_index=True)
    return np.sort(first)


def item_features(item_ids: pa.Array, genres: pa.Array, separator: str, vocabulary: pa.Array,
                  release_year: Optional[pa.Array] = None) -> Items:
    """Item features from the rows of an item file.

    Args:
        item_ids: R item tokens (a token repeated: its first row wins).
        genres: R strings of genre names joined by ``separator``; the first one is the item's category.
        separator: what joins the genres (``" "`` in RecBole's files, ``"|"`` in GroupLens' ``movies.dat``).
        vocabulary: the item tokens, in dense-id order.
        release_year: R strings, the year where it is a plain integer (0 otherwise); None: all 0.
    """
    n = len(vocabulary) + 1
    all_ids = dense_ids(item_ids, vocabulary)
    rows = _first_rows(all_ids)
    ids = all_ids[rows]
    counts, names = split_tokens(genres.take(pa.array(rows)), separator)
    genre_ids = dense_ids(names, token_vocabulary(names))
    per_item = np.zeros(n, dtype=np.int64)
    per_item[ids] = counts
    tag_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(per_item, out=tag_offsets[1:])
    tag_values = np.zeros(genre_ids.shape[0], dtype=np.int64)
    owner = np.repeat(ids, counts)
    rank = np.arange(genre_ids.shape[0]) - np.repeat(np.cumsum(counts) - counts, counts)
    tag_values[tag_offsets[owner] + rank] = genre_ids
    category = np.zeros(n, dtype=np.int64)
    has = per_item > 0
    category[has] = tag_values[tag_offsets[:-1][has]]
    year = np.zeros(n, dtype=np.int64)
    if release_year is not None:
        year[ids] = parse_ints(release_year.take(pa.array(rows)))
    return Items(category=category, year=year, tag_offsets=tag_offsets, tag_values=tag_values)


def user_features(cols: Dict[str, pa.Array], vocabulary: pa.Array) -> Users:
    """User features from the string columns of a user file: ``user_id`` and, where present, ``age`` (years or
    MovieLens-1M's bucket codes, both bucketed by ``AGE_EDGES``), ``gender`` (M/F), ``occupation`` (a token)."""
    n = len(vocabulary) + 1
    all_ids = dense_ids(cols["user_id"], vocabulary)
    rows = _first_rows(all_ids)
    ids = all_ids[rows]
    age, gender, occupation = (np.zeros(n, dtype=np.int64) for _ in range(3))
    if "age" in cols:
        age[ids] = np.searchsorted(AGE_EDGES, parse_ints(cols["age"].take(pa.array(rows))), side="right")
    if "gender" in cols:
        g = pc.utf8_upper(pc.utf8_trim_whitespace(cols["gender"].take(pa.array(rows))))
        gender[ids] = dense_ids(g, pa.array(list(GENDERS), pa.string()))
    if "occupation" in cols:
        occ = cols["occupation"].take(pa.array(rows))
        occupation[ids] = dense_ids(occ, token_vocabulary(occ))
    return Users(age=age, gender=gender, occupation=occupation)


def rating_events(user: pa.Array, item: pa.Array, rating: pa.Array, timestamp: pa.Array, user_vocab: pa.Array,
                  item_vocab: pa.Array, path: Path) -> Events:
    """The ratings of a file's string columns; a non-number or an empty user or item is a ``DataError``."""
    events = Events(
        user=dense_ids(user, user_vocab),
        item=dense_ids(item, item_vocab),
        rating=parse_floats(rating, path, "rating"),
        time=np.floor(parse_floats(timestamp, path, "timestamp")).astype(np.int64),
    )
    if (events.user == 0).any() or (events.item == 0).any():
        raise DataError(f"{path}: empty user_id or item_id tokens")
    return events


def _read_ml100k(source: Path) -> Tuple[Events, Items, Users]:
    inter = read_atomic(source / "ml-100k.inter", ("user_id", "item_id", "rating", "timestamp"))
    item = read_atomic(source / "ml-100k.item", ("item_id", "class"))
    user = read_atomic(source / "ml-100k.user", ("user_id",))
    user_vocab = token_vocabulary(inter["user_id"], user["user_id"])
    item_vocab = token_vocabulary(inter["item_id"], item["item_id"])
    events = rating_events(inter["user_id"], inter["item_id"], inter["rating"], inter["timestamp"], user_vocab,
                           item_vocab, source / "ml-100k.inter")
    items = item_features(item["item_id"], item["class"], " ", item_vocab, item.get("release_year"))
    return events, items, user_features(user, user_vocab)


def _movielens_chunk(events: Events, items: Items, users: Users, hist: HistoryIndex, after: np.ndarray,
                     lo: int, hi: int) -> pa.Table:
    """The ``MOVIELENS_SCHEMA`` rows of events ``lo .. hi - 1``."""
    item, user = events.item[lo:hi], events.user[lo:hi]
    tag_start = items.tag_offsets[item]
    tag_offsets, tag_pos = gather_ranges(tag_start, items.tag_offsets[item + 1] - tag_start, step=1)
    hist_offsets, rows = hist.gather(lo, hi)
    hist_item = events.item[rows]
    rating = events.rating[lo:hi]
    cols = {
        "request_id": np.arange(lo, hi, dtype=np.int64),
        "user_id": user,
        "item_id": item,
        "request_time": events.time[lo:hi],
        "item_category": items.category[item],
        "item_tags": list_column(tag_offsets, items.tag_values[tag_pos]),
        "release_year": items.year[item],
        "user_age": users.age[user],
        "user_gender": users.gender[user],
        "user_occupation": users.occupation[user],
        "events_after": after[lo:hi],
        "rating": rating.astype(np.float32),
        "click": (rating >= 4).astype(np.int8),
        "hist_item_id": list_column(hist_offsets, hist_item),
        "hist_item_category": list_column(hist_offsets, items.category[hist_item]),
        "hist_release_year": list_column(hist_offsets, items.year[hist_item]),
        "hist_action": list_column(hist_offsets, np.rint(events.rating[rows]).astype(np.int64)),
        "hist_time": list_column(hist_offsets, events.time[rows]),
    }
    return to_table(cols, MOVIELENS_SCHEMA)


def write_movielens(events: Events, items: Items, users: Users, out: Path, max_history: int, row_group_rows: int,
                    k_core: int = 0, start: Optional[float] = None) -> ConvertSummary:
    """Writes ``MOVIELENS_SCHEMA`` rows of the ratings (those of the ``k_core``-core when it is > 1).

    Args:
        events, items, users: the ratings and the features of their items and users.
        out: output directory; created if missing; one that holds ``part-*.parquet`` files already is refused.
        max_history: cap on the history length of the training rows (``events_after >= 2``).
        row_group_rows: rows per Parquet row group.
        k_core: k-core filtering: users and items with fewer ratings are dropped, repeatedly (0: off); the
            ids of what is kept do not change.
        start: ``time.perf_counter()`` when the conversion began (the summary's time); None: now.
    """
    if row_group_rows <= 0:
        raise ValueError(f"row_group_rows must be positive, got {row_group_rows}")
    start = time.perf_counter() if start is None else start
    if k_core > 1:
        events = events.take(k_core_mask(events.user, events.item, k_core))
    n = events.user.shape[0]
    after = events_after(events.user, events.time)
    hist = HistoryIndex.build(events.user, events.time, np.ones(n, dtype=bool), max_history, uncapped=after <= 1)
    chunks = (_movielens_chunk(events, items, users, hist, after, lo, hi) for lo, hi in chunk_bounds(n, row_group_rows))
    files = write_parts(Path(out), MOVIELENS_SCHEMA, chunks, max(n, 1), row_group_rows)
    return ConvertSummary(
        rows=n,
        users=int(np.unique(events.user).shape[0]),
        items=int(np.unique(events.item).shape[0]),
        click_rate=float((events.rating >= 4).mean()) if n else 0.0,
        mean_history=float(hist.length.mean()) if n else 0.0,
        files=tuple(files),
        seconds=time.perf_counter() - start,
    )


def convert_movielens(source: Path, out: Path, max_history: int = 256, row_group_rows: int = 20_000,
                      k_core: int = 0) -> ConvertSummary:
    """Converts RecBole's ml-100k atomic files to Parquet impressions (see the module docstring).

    Args:
        source: directory holding ``ml-100k.inter``, ``ml-100k.item`` and ``ml-100k.user``.
        out: output directory; created if missing; one that holds ``part-*.parquet`` files already is refused.
        max_history: cap on the history length (most recent kept).
        row_group_rows: rows per Parquet row group.
        k_core: k-core filtering (0: off): users and items with fewer ratings are dropped, repeatedly until
            every one left has at least this many; the ids of what is kept do not change.

    Returns:
        the summary of what was written.
    """
    if row_group_rows <= 0:
        raise ValueError(f"row_group_rows must be positive, got {row_group_rows}")
    start = time.perf_counter()
    events, items, users = _read_ml100k(Path(source))
    return write_movielens(events, items, users, Path(out), max_history, row_group_rows, k_core, start)


def fetch_recbole_ml100k(dest: Path) -> Path:
    """Downloads the ``recbole==1.2.1`` wheel with pip and extracts the three ml-100k atomic files.

    Files already in ``dest`` are reused (no download).

    Args:
        dest: directory to extract ``ml-100k.inter``, ``ml-100k.item``, ``ml-100k.user`` into.

    Returns:
        ``dest``.
    """
    dest = Path(dest)
    if all((dest / name).is_file() for name in ML100K_FILES):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", RECBOLE_WHEEL, "--no-deps", "--only-binary=:all:",
               "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob("recbole-*.whl"))
        if proc.returncode != 0 or not wheels:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise DataError(
                f"could not download {RECBOLE_WHEEL} with pip ({' '.join(cmd)}): {' | '.join(tail)}; "
                f"put {list(ML100K_FILES)} in a directory yourself and pass it as the source"
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name in ML100K_FILES:
                (dest / name).write_bytes(wheel.read(f"{_WHEEL_DIR}/{name}"))
    return dest
