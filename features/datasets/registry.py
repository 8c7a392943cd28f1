"""Every public dataset the project converts, by name: what its converter reads, the packaged spec that reads
what it writes, and how to run it. ``pmx-convert``'s subcommands and ``bench-quality``'s dataset kinds are
these names (the benchmarks add ``planted``, the synthetic logs of ``synthetic.py``).

Example::

    >>> sorted(DATASETS)
    ['beauty', 'beauty-seq', 'kuairand', 'movielens', 'movielens-1m']
    >>> DATASETS["movielens"].spec, DATASETS["kuairand"].k_core
    ('movielens.yaml', False)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

from pyramid_mixer.features.datasets.amazon import convert_amazon
from pyramid_mixer.features.datasets.conversion import ConvertSummary
from pyramid_mixer.features.datasets.kuairand import convert_kuairand
from pyramid_mixer.features.datasets.movielens import convert_movielens, fetch_recbole_ml100k
from pyramid_mixer.features.datasets.movielens1m import convert_movielens1m
from pyramid_mixer.features.datasets.sequences import convert_sequences
from pyramid_mixer.features.schema import DataError
from pyramid_mixer.features.spec import default_spec_path


@dataclass(frozen=True)
class Dataset:
    """One convertible dataset.

    Args:
        name: the ``pmx-convert`` subcommand and the benchmarks' dataset kind.
        title: one line on what it is.
        source: what the source directory must hold.
        spec: the packaged feature spec (``features/specs/``) that reads the converter's output.
        convert: ``(source, out, max_history, k_core) -> ConvertSummary``.
        fetch: fetches the source files into a directory when none is given (None: a source is required).
        k_core: whether the converter filters to a k-core (``--k-core``).
    """

    name: str
    title: str
    source: str
    spec: str
    convert: Callable[[Path, Path, int, int], ConvertSummary]
    fetch: Optional[Callable[[Path], Path]] = None
    k_core: bool = True


def _beauty(source: Path, out: Path, max_history: int, k_core: int) -> ConvertSummary:
    return convert_amazon(source, out, category="Beauty", max_history=max_history, k_core=k_core)


def _sequences(source: Path, out: Path, max_history: int, k_core: int) -> ConvertSummary:
    return convert_sequences(source, out, max_history=max_history, k_core=k_core)


def _kuairand(source: Path, out: Path, max_history: int, k_core: int) -> ConvertSummary:
    return convert_kuairand(source, out, max_history=max_history)


def _movielens(source: Path, out: Path, max_history: int, k_core: int) -> ConvertSummary:
    return convert_movielens(source, out, max_history=max_history, k_core=k_core)


def _movielens1m(source: Path, out: Path, max_history: int, k_core: int) -> ConvertSummary:
    return convert_movielens1m(source, out, max_history=max_history, k_core=k_core)


DATASETS: Dict[str, Dataset] = {d.name: d for d in (
    Dataset("movielens", "MovieLens-100k from RecBole's atomic files",
            "ml-100k.inter, ml-100k.item and ml-100k.user (default: the recbole 1.2.1 wheel fetched from PyPI "
            "with pip into OUT/source)", "movielens.yaml", _movielens, fetch=fetch_recbole_ml100k),
    Dataset("movielens-1m", "MovieLens-1M from GroupLens' .dat files, in the movielens schema",
            "the unzipped ml-1m directory (ratings.dat, movies.dat, users.dat)", "movielens1m.yaml", _movielens1m),
    Dataset("beauty", "Amazon Beauty (2014 5-core reviews and metadata)",
            "reviews_Beauty_5.json and meta_Beauty.json (or .json.gz)", "beauty.yaml", _beauty),
    Dataset("beauty-seq", "Amazon Beauty as the next-item papers evaluate it (S3-Rec's sequences and attributes)",
            "interactions.tsv (user_id, item_id, timestamp; each user's rows in sequence order) and "
            "item_attributes.json", "beauty_seq.yaml", _sequences, k_core=False),
    Dataset("kuairand", "KuaiRand standard logs, in the default spec's schema",
            "the KuaiRand data directory (log_standard_*.csv, user_features*.csv, video_features_basic*.csv)",
            "douyin.yaml", _kuairand, k_core=False),
)}


def spec_path(name: str) -> Path:
    """The packaged feature spec that reads dataset ``name``'s output."""
    return default_spec_path().with_name(DATASETS[name].spec)


def convert(name: str, source: Optional[Path], out: Path, max_history: int, k_core: int = 0,
            say: Callable[[str], None] = print) -> ConvertSummary:
    """Converts dataset ``name`` from ``source`` (None: fetched into ``out/source`` where the dataset can be
    fetched) into ``out/part-*.parquet``; ``say`` hears where the source files come from."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}: use one of {sorted(DATASETS)}")
    dataset = DATASETS[name]
    if max_history < 0 or k_core < 0:
        raise DataError(f"{name}: max_history ({max_history}) and k_core ({k_core}) must be >= 0")
    if source is None:
        if dataset.fetch is None:
            raise DataError(f"{name}: give the source directory: {dataset.source}")
        source = out / "source"
        say(f"no source given: fetching {name}'s files into {source} (files fetched there before are reused)")
        dataset.fetch(source)
    return dataset.convert(Path(source), Path(out), max_history, k_core)
