"""Data paths: local files, directories and globs, and the same through file:// URIs (one code path, the one
that opens s3://, gs:// and hdfs:// URIs)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs
import pytest

from pyramid_mixer.features.files import resolve_files
from pyramid_mixer.features.reader import ParquetReader, ReadOptions
from pyramid_mixer.features.spec import default_spec
from pyramid_mixer.features.tokens import PyramidLayout
from tests.logs import random_rows, write_rows


@pytest.fixture()
def logs(tmp_path: Path) -> Path:
    for day, n in (("2026-11-01", 10), ("2026-11-02", 20), ("2026-11-03", 30)):
        write_rows(tmp_path / "logs" / day / "part-0.parquet", random_rows(n, seed=n))
    (tmp_path / "logs" / "README.txt").write_text("not data")
    return tmp_path / "logs"


@pytest.mark.parametrize("as_uri", [False, True])
def test_files_directories_and_globs(logs: Path, as_uri: bool) -> None:
    def p(s: str) -> str:
        return f"file://{logs}/{s}" if as_uri else f"{logs}/{s}"

    assert len(resolve_files([p("")])) == 3  # a directory: every .parquet below it
    assert len(resolve_files([p("2026-11-0[12]/*.parquet")])) == 2  # a glob
    assert len(resolve_files([p("2026-11-03/part-0.parquet")])) == 1  # a file
    files = resolve_files([p("*/part-0.parquet")])
    assert isinstance(files.filesystem, pafs.LocalFileSystem)
    assert files.dataset().count_rows() == 60
    reader = ParquetReader([p("2026-11-0[23]/*.parquet")], default_spec(), PyramidLayout(), ReadOptions(16))
    assert sum(b.batch_size for b in reader) == 50 and reader.stats.files == 2


def test_nothing_found_names_the_path(logs: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"2026-12-\*: no Parquet files found"):
        resolve_files([f"file://{logs}/2026-12-*"])
    with pytest.raises(FileNotFoundError, match="no Parquet files found"):
        resolve_files([logs / "missing"])
