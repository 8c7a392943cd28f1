"""Where the Parquet files are: local paths or any URI pyarrow opens (``s3://``, ``gs://``, ``hdfs://``,
``file://``), through one code path.

A path is a file, a directory (every ``*.parquet`` below it, recursively) or a glob (``*``, ``?``, ``[..]``
in the last components; ``*`` may cross directory levels). Logs at scale live in object stores; the tests
exercise this module with local paths and ``file://`` URIs.

Example::

    >>> files = resolve_files(["file:///data/logs/2026-11-0[1-6]/*.parquet"])  # doctest: +SKIP
    >>> files.dataset().count_rows()                                           # doctest: +SKIP
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from typing import List, Sequence, Tuple, Union

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pyramid_mixer.features.schema import DataError

PathLike = Union[str, "os.PathLike[str]"]
GLOB_CHARS = "*?["


@dataclass(frozen=True)
class Files:
    """Parquet files on one filesystem, sorted; ``skipped``: (path, reason) of unreadable files left out.

    One ``Files`` opens each footer once: ``dataset()`` is built on the first call and shared by every later
    one (the splits, readers and counts of a job), which matters on object stores with many files.
    """

    filesystem: pafs.FileSystem
    paths: Tuple[str, ...]
    skipped: Tuple[Tuple[str, str], ...] = ()

    def dataset(self) -> ds.Dataset:
        """The files as one pyarrow dataset (built once); an unreadable file (truncated, not Parquet) is a
        ``DataError`` naming it."""
        built = self.__dict__.get("_dataset")
        if built is not None:
            return built
        try:
            dataset = ds.dataset(list(self.paths), format="parquet", filesystem=self.filesystem)
            for fragment in dataset.get_fragments():
                fragment.physical_schema  # reads each footer: a truncated file fails here, not mid-scan
        except (pa.ArrowInvalid, OSError) as e:
            raise self.unreadable_error(e) from e
        object.__setattr__(self, "_dataset", dataset)  # a cache, not a field: equality and the repr ignore it
        return dataset

    def unreadable_error(self, cause: Exception) -> DataError:
        """The error to raise when opening these files failed with ``cause``: names each unreadable file."""
        bad = self.unreadable() or [(str(self), str(cause))]
        return DataError(
            "; ".join(f"{path}: not a readable Parquet file ({why})" for path, why in bad)
            + ". The file is truncated or corrupt: rewrite it, or leave it out of the data paths"
        )

    def unreadable(self) -> List[Tuple[str, str]]:
        """(path, reason) for each file whose Parquet footer cannot be read."""
        out = []
        for path in self.paths:
            try:
                with self.filesystem.open_input_file(path) as f:
                    pq.ParquetFile(f).metadata
            except (pa.ArrowInvalid, OSError) as e:
                out.append((path, str(e).split(". ")[0]))
        return out

    def __len__(self) -> int:
        return len(self.paths)

    def __str__(self) -> str:
        more = f" and {len(self.paths) - 3} more" if len(self.paths) > 3 else ""
        return f"{', '.join(self.paths[:3])}{more}"


def _has_glob(path: str) -> bool:
    return any(c in path for c in GLOB_CHARS)


def _split(path: str) -> Tuple[pafs.FileSystem, str]:
    """(filesystem, path on it); for a URI with a glob, pyarrow parses the part before the glob."""
    if "://" not in path:
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))
    plain = _glob_root(path) if _has_glob(path) else path
    fs, inner = pafs.FileSystem.from_uri(plain)
    return fs, inner + path[len(plain) :]


def _glob_root(path: str) -> str:
    """The directory above the first component holding a glob character."""
    first = min(path.index(c) for c in GLOB_CHARS if c in path)
    return path[: path.rindex("/", 0, first)]


def _is_directory(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.Directory


def _parquet_below(fs: pafs.FileSystem, directory: str) -> List[str]:
    infos = fs.get_file_info(pafs.FileSelector(directory, recursive=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet"))


def resolve_files(paths: Sequence[PathLike], skip_unreadable: bool = False) -> Files:
    """Files, directories and globs (local or URIs) -> the sorted Parquet files, on one filesystem.

    A path that matches nothing is an error naming it, so that a typo never trains on zero rows. With
    ``skip_unreadable``, files whose Parquet footer cannot be read are left out and listed in ``skipped``
    (each file's footer is read once here); without, such a file is an error when it is opened.
    """
    filesystem = None
    found: List[str] = []
    for p in paths:
        raw = os.fspath(p)
        fs, path = _split(raw)
        if filesystem is not None and fs.type_name != filesystem.type_name:
            raise FileNotFoundError(f"{raw}: every path must be on one filesystem ({filesystem.type_name} before)")
        filesystem = filesystem or fs
        if _has_glob(path):
            root = _glob_root(path)
            below = _parquet_below(fs, root) if _is_directory(fs, root) else []
            matches = [f for f in below if fnmatch.fnmatch(f, path)]
        else:
            info = fs.get_file_info(path)
            matches = (_parquet_below(fs, path) if info.type == pafs.FileType.Directory
                       else [path] if info.type == pafs.FileType.File else [])
        if not matches:
            raise FileNotFoundError(f"{raw}: no Parquet files found (give a file, a directory or a glob)")
        found.extend(matches)
    if filesystem is None:
        raise FileNotFoundError("no data paths given")
    files = Files(filesystem, tuple(sorted(set(found))))
    if not skip_unreadable:
        return files
    bad = files.unreadable()
    keep = tuple(p for p in files.paths if p not in dict(bad))
    if not keep:
        raise DataError(f"{files}: no readable Parquet file ({len(bad)} skipped as unreadable: {bad[:3]})")
    return Files(filesystem, keep, tuple(bad))
