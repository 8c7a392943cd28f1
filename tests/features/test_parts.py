"""The one part writer of the generator and the converters: file and row-group sizes, nothing overwritten."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pyramid_mixer.features.datasets.parts import PartWriter, write_parts

SCHEMA = pa.schema([("x", pa.int64())])


def layout(files):  # type: ignore[no-untyped-def]
    """Per file, its row groups' sizes."""
    out = []
    for f in files:
        meta = pq.ParquetFile(f).metadata
        out.append([meta.row_group(i).num_rows for i in range(meta.num_row_groups)])
    return out


@pytest.mark.parametrize("sizes, per_file, per_group, expected", [
    ([7, 7, 7], 100, 7, [[7, 7, 7]]),  # a converter's chunks: one row group each, one file
    ([7, 7, 3], 100, 7, [[7, 7, 3]]),
    ([5, 1, 9, 2], 10, 4, [[4, 4, 2], [4, 3]]),  # the generator's uneven sub-batches: fixed groups, exact files
    ([3], 3, 8, [[3]]),
    ([], 5, 2, []),
])
def test_files_hold_rows_per_file_in_row_groups_of_row_group_rows(tmp_path: Path, sizes, per_file, per_group,
                                                                   expected) -> None:
    start = [sum(sizes[:i]) for i in range(len(sizes))]
    tables = [pa.table({"x": list(range(s, s + n))}) for s, n in zip(start, sizes)]
    files = write_parts(tmp_path / "out", SCHEMA, tables, per_file, per_group)
    assert [Path(f).name for f in files] == [f"part-{i:05d}.parquet" for i in range(len(expected))]
    assert layout(files) == expected
    rows = [x for f in files for x in pq.read_table(f).column("x").to_pylist()]
    assert rows == list(range(sum(sizes)))  # every row once, in order


def test_a_directory_with_part_files_is_refused_and_kept(tmp_path: Path) -> None:
    (tmp_path / "part-00007.parquet").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"already holds 1 part file\(s\) \(part-00007.parquet, ...\)"):
        PartWriter(tmp_path, SCHEMA, 10, 10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "part-00007.parquet"]


def test_an_error_midway_closes_the_file_and_goes_on(tmp_path: Path) -> None:
    def tables():  # type: ignore[no-untyped-def]
        yield pa.table({"x": [1, 2, 3]})
        raise RuntimeError("the source broke")

    with pytest.raises(RuntimeError, match="the source broke"):
        write_parts(tmp_path, SCHEMA, tables(), 10, 2)
    assert layout([tmp_path / "part-00000.parquet"]) == [[2]]  # the full row group, in a readable file


def test_sizes_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        PartWriter(tmp_path, SCHEMA, 0, 10)
