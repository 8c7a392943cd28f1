"""The sequence-format converter (S3-Rec's Amazon Beauty): the file's order is each user's sequence (ties in
time never re-sorted), attributes go into rarest-first slots of the candidate and of every behaviour, the
held-out rows keep their whole history, and a file that cannot be a set of sequences gets a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pyramid_mixer.features.datasets.registry import convert, spec_path
from pyramid_mixer.features.datasets.sequences import attribute_slots
from pyramid_mixer.features.reader import ParquetReader, ReadOptions
from pyramid_mixer.features.schema import DataError
from pyramid_mixer.features.spec import load_spec
from pyramid_mixer.features.tokens import LevelSpec, PyramidLayout

# user 1: items 5, 3, 9, 4 (5 and 3 share a day; the file puts 5 first), user 2: 3, 7, 5
ROWS = [(1, 5, 100), (1, 3, 100), (1, 9, 200), (1, 4, 300), (2, 3, 50), (2, 7, 60), (2, 5, 60)]
ATTRS = {"3": [1, 2], "4": [1], "5": [1, 2, 8], "7": [2, 6, 6], "9": [1, 3, 4, 5, 7]}


def write_source(path: Path, rows=ROWS, attrs=ATTRS) -> Path:  # type: ignore[no-untyped-def]
    path.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"{u}\t{i}\t{t}\n" for u, i, t in rows)
    (path / "interactions.tsv").write_text("user_id\titem_id\ttimestamp\n" + lines)
    (path / "item_attributes.json").write_text(json.dumps(attrs))
    return path


def test_each_row_sees_the_users_earlier_rows_in_file_order(tmp_path: Path) -> None:
    s = convert("beauty-seq", write_source(tmp_path / "src"), tmp_path / "out", max_history=2)
    assert (s.rows, s.users, s.items) == (7, 2, 5)
    rows = pq.read_table(tmp_path / "out").to_pylist()
    assert [r["item_id"] for r in rows] == [5, 3, 9, 4, 3, 7, 5]
    assert [r["hist_item_id"] for r in rows] == [[], [5], [3, 5], [9, 3, 5], [], [3], [7, 3]]  # held out: uncapped
    assert [r["events_after"] for r in rows] == [3, 2, 1, 0, 2, 1, 0]
    assert rows[2]["hist_time"] == [100, 100] and rows[1]["request_time"] == 100
    assert [r["item_attr_1"] for r in rows[:3]] == [8, 2, 3]  # the rarest attribute first
    assert rows[3]["hist_attr_2"] == [4, 1, 2] and rows[3]["hist_attr_4"] == [7, 0, 0]  # 4 slots, 0 = none


def test_attributes_are_ranked_rarest_first_and_cut_to_the_slots(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps(ATTRS))
    slots = attribute_slots(path, num_items=9, slots=2)
    assert slots.shape == (10, 2) and slots[0].tolist() == [0, 0] and slots[5].tolist() == [8, 2]
    assert slots[7].tolist() == [6, 2]  # a repeated attribute counts once


@pytest.mark.parametrize("spec", ["packaged", "item ids only"])
def test_the_output_reads_under_its_specs(tmp_path: Path, spec: str) -> None:
    convert("beauty-seq", write_source(tmp_path / "src"), tmp_path / "out", max_history=50)
    layout = PyramidLayout(levels=(LevelSpec(0, 4, 1),))
    path = spec_path("beauty-seq") if spec == "packaged" else spec_path("beauty-seq").with_name("beauty_seq_items.yaml")
    reader = ParquetReader([tmp_path / "out"], load_spec(path), layout, ReadOptions(4))
    assert sum(b.batch_size for b in reader) == 7 and reader.stats.rows_rejected == 0


@pytest.mark.parametrize("rows, message", [
    ([(1, 5, 1), (2, 3, 1), (1, 4, 2)], "a user's rows are not together"),
    ([(0, 5, 1)], "ids must be >= 1"),
])
def test_files_that_are_not_sequences_are_refused(tmp_path: Path, rows, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError, match=message):
        convert("beauty-seq", write_source(tmp_path / "src", rows=rows), tmp_path / "out", max_history=50)


def test_a_missing_file_or_a_k_core_is_refused(tmp_path: Path) -> None:
    src = write_source(tmp_path / "src")
    (src / "item_attributes.json").unlink()
    with pytest.raises(DataError, match="item_attributes.json: file not found"):
        convert("beauty-seq", src, tmp_path / "out", max_history=50)
    with pytest.raises(DataError, match="--k-core does not apply"):
        convert("beauty-seq", write_source(tmp_path / "src2"), tmp_path / "out", max_history=50, k_core=5)
