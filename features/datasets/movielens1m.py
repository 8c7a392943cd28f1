"""MovieLens-1M, as GroupLens ships it, converted to Parquet impressions in MovieLens-100k's schema.

Input: the three files of https://files.grouplens.org/datasets/movielens/ml-1m.zip, in one directory (the
data is not committed, licence), ``::``-separated, latin-1 encoded:

- ``ratings.dat``: ``UserID::MovieID::Rating::Timestamp``;
- ``movies.dat``: ``MovieID::Title (Year)::Genre1|Genre2|...``;
- ``users.dat``: ``UserID::Gender::Age::Occupation::Zip-code`` (Age is already a bucket code: 1, 18, 25, 35,
  45, 50, 56).

Output: ``movielens.MOVIELENS_SCHEMA``, exactly as for ml-100k (one row per rating in the order of
``ratings.dat``, the same labels, histories, ``events_after`` and held-out rows with their whole history):
``release_year`` is the title's trailing ``(YYYY)`` (0 without one), ``item_category`` the first genre,
``item_tags`` all genres, ``user_age`` the age code's bucket 1..7, ``user_occupation`` the code's dense id
(codes 0..20 -> 1..21 when all occur). ``specs/movielens1m.yaml`` reads it (ml-100k's spec with tables sized
for 6,040 users and 3,883 movies).

Example::

    >>> s = convert_movielens1m(Path("data/ml-1m-raw/ml-1m"), Path("data/ml-1m"))  # doctest: +SKIP
    >>> s.rows, s.users, s.items                                                   # doctest: +SKIP
    (1000209, 6040, 3706)
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Dict, Sequence, Tuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pyramid_mixer.features.datasets.conversion import ConvertSummary, token_vocabulary
from pyramid_mixer.features.datasets.movielens import (
    Events,
    Items,
    Users,
    item_features,
    rating_events,
    user_features,
    write_movielens,
)
from pyramid_mixer.features.schema import DataError

__all__ = ["ML1M_FILES", "ML1M_URL", "convert_movielens1m", "read_dat"]

ML1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
ML1M_FILES = ("ratings.dat", "movies.dat", "users.dat")
_SEPARATOR = "\x1f"  # "::" becomes this one-byte delimiter (ASCII unit separator) for the CSV reader
_YEAR = r"\((?P<year>\d{4})\)\s*$"


def read_dat(path: Path, names: Sequence[str]) -> Dict[str, pa.Array]:
    """Reads a MovieLens-1M ``::``-separated latin-1 file, every field as a string.

    Args:
        path: ``ratings.dat``, ``movies.dat`` or ``users.dat``.
        names: the names of its fields, in order; a line with another number of fields is a ``DataError``.

    Returns:
        field name -> string array.
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found; download {ML1M_URL} and point --source at the unzipped ml-1m "
                        f"directory (it holds {', '.join(ML1M_FILES)})")
    text = path.read_bytes().decode("latin-1")
    if _SEPARATOR in text:
        raise DataError(f"{path}: holds the control character \\x1f; not a MovieLens-1M file")
    try:
        table = pacsv.read_csv(
            io.BytesIO(text.replace("::", _SEPARATOR).encode("utf-8")),
            read_options=pacsv.ReadOptions(column_names=list(names)),
            parse_options=pacsv.ParseOptions(delimiter=_SEPARATOR, quote_char=False),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                 strings_can_be_null=False),
        )
    except pa.ArrowInvalid as e:
        message = str(e).replace(_SEPARATOR, "::")
        raise DataError(f"{path}: not a MovieLens-1M file of '::'-separated {'::'.join(names)} lines: "
                        f"{message}") from e
    return {n: table.column(n).combine_chunks() for n in names}


def release_years(titles: pa.Array) -> pa.Array:
    """The ``YYYY`` of each title's trailing ``(YYYY)``, as a string; '' where there is none.

    Example::

        >>> release_years(pa.array(["Toy Story (1995)", "Untitled", "M (1931) "])).to_pylist()
        ['1995', '', '1931']
    """
    years = pc.struct_field(pc.extract_regex(titles, _YEAR), "year")
    return pc.fill_null(years, "")


def _read_ml1m(source: Path) -> Tuple[Events, Items, Users]:
    ratings = read_dat(source / "ratings.dat", ("user_id", "item_id", "rating", "timestamp"))
    movies = read_dat(source / "movies.dat", ("item_id", "title", "genres"))
    users = read_dat(source / "users.dat", ("user_id", "gender", "age", "occupation", "zip_code"))
    user_vocab = token_vocabulary(ratings["user_id"], users["user_id"])
    item_vocab = token_vocabulary(ratings["item_id"], movies["item_id"])
    events = rating_events(ratings["user_id"], ratings["item_id"], ratings["rating"], ratings["timestamp"],
                           user_vocab, item_vocab, source / "ratings.dat")
    items = item_features(movies["item_id"], movies["genres"], "|", item_vocab, release_years(movies["title"]))
    return events, items, user_features(users, user_vocab)


def convert_movielens1m(source: Path, out: Path, max_history: int = 256, row_group_rows: int = 20_000,
                        k_core: int = 0) -> ConvertSummary:
    """Converts GroupLens' MovieLens-1M files to Parquet impressions (see the module docstring).

    Args:
        source: directory holding ``ratings.dat``, ``movies.dat`` and ``users.dat``.
        out: output directory; created if missing; one that holds ``part-*.parquet`` files already is refused.
        max_history: cap on the history length of the training rows (most recent kept).
        row_group_rows: rows per Parquet row group.
        k_core: k-core filtering (0: off): users and items with fewer ratings are dropped, repeatedly until
            every one left has at least this many; the ids of what is kept do not change.

    Returns:
        the summary of what was written.
    """
    if row_group_rows <= 0:
        raise ValueError(f"row_group_rows must be positive, got {row_group_rows}")
    start = time.perf_counter()
    events, items, users = _read_ml1m(Path(source))
    return write_movielens(events, items, users, Path(out), max_history, row_group_rows, k_core, start)
