"""Bad input: every bad-row case counted by reason (or failing the pass, by policy), the rejected share
limit, truncated histories counted, and unreadable or corrupt Parquet files named in the error."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import pyarrow.parquet as pq
import pytest

from pyramid_mixer.features.files import resolve_files
from pyramid_mixer.features.reader import BadRowPolicy, ParquetReader, ReadOptions
from pyramid_mixer.features.schema import DataError
from pyramid_mixer.features.spec import default_spec
from pyramid_mixer.features.tokens import LevelSpec, PyramidLayout
from tests.logs import random_rows, write_rows

LAYOUT = PyramidLayout(levels=(LevelSpec(0, 8, 1), LevelSpec(8, 40, 4)))
EACH_CASE = {
    "null click": 1,
    "non-finite dense": 1,
    "negative id item_id": 1,
    "unequal history lengths": 1,
    "history time after request": 1,
    "null in hist_action": 1,
}


def with_bad_rows(n: int = 40) -> List[Dict[str, Any]]:
    """``n`` rows, six of them bad, one per reason of ``EACH_CASE``."""
    rows = random_rows(n, seed=4, max_history=30)
    rows[1]["click"] = None
    rows[2]["item_duration"] = float("nan")
    rows[3]["item_id"] = -5
    rows[4]["hist_author_id"] = rows[4]["hist_author_id"] + [1]  # unequal list lengths
    rows[6]["hist_time"] = [rows[6]["request_time"] + 10] + rows[6]["hist_time"][1:]  # from the future
    if not rows[6]["hist_time"][1:]:
        for c in ("hist_item_id", "hist_author_id", "hist_item_category", "hist_action"):
            rows[6][c] = [1]
    if not rows[7]["hist_time"]:
        rows[7]["hist_time"] = [rows[7]["request_time"] - 60]
        for c in ("hist_item_id", "hist_author_id", "hist_item_category", "hist_action"):
            rows[7][c] = [1]
    rows[7]["hist_action"] = [None] + rows[7]["hist_action"][1:]  # a null inside a list
    return rows


def read_all(reader: ParquetReader) -> int:
    return sum(b.batch_size for b in reader)


def test_bad_rows_are_rejected_and_counted_by_reason(tmp_path: Path) -> None:
    write_rows(tmp_path / "a.parquet", with_bad_rows(40))
    reader = ParquetReader([tmp_path], default_spec(), LAYOUT,
                           ReadOptions(16, bad_rows=BadRowPolicy(max_bad_fraction=0.2)))
    assert read_all(reader) == reader.stats.rows_used == 34
    s = reader.stats
    assert s.rows_read == 40 == s.rows_used + s.rows_rejected
    assert dict(s.rejected) == EACH_CASE
    assert s.as_dict()["rejected_by_reason"] == dict(sorted(EACH_CASE.items()))


def test_more_bad_rows_than_the_limit_fail_the_pass_with_the_counts(tmp_path: Path) -> None:
    write_rows(tmp_path / "a.parquet", with_bad_rows(40))
    reader = ParquetReader([tmp_path], default_spec(), LAYOUT, ReadOptions(16))  # default limit 10 %; 6 / 40 are bad
    with pytest.raises(DataError, match=r"6 of 40 rows read were rejected \(15\.0% > data\.max_bad_fraction=0\.1\)"
                                        r".*'null click': 1"):
        read_all(reader)


@pytest.mark.parametrize("bad_row", [1, 2, 3, 4, 6, 7])
def test_fail_policy_stops_at_the_first_bad_row_naming_file_and_reason(tmp_path: Path, bad_row: int) -> None:
    good = random_rows(40, seed=4, max_history=30)
    rows = with_bad_rows(40)
    rows = [rows[i] if i == bad_row else good[i] for i in range(40)]
    write_rows(tmp_path / "a.parquet", rows)
    reader = ParquetReader([tmp_path], default_spec(), LAYOUT, ReadOptions(16, bad_rows=BadRowPolicy("fail")))
    reason = {1: "null click", 2: "non-finite dense", 3: "negative id item_id", 4: "unequal history lengths",
              6: "history time after request", 7: "null in hist_action"}[bad_row]
    with pytest.raises(DataError, match=rf"a\.parquet: bad rows \{{'{reason}': 1\}}.*data\.on_bad_rows=reject"):
        read_all(reader)


def test_clean_data_passes_the_fail_policy(tmp_path: Path) -> None:
    write_rows(tmp_path / "a.parquet", random_rows(40, seed=4, max_history=30))
    reader = ParquetReader([tmp_path], default_spec(), LAYOUT, ReadOptions(16, bad_rows=BadRowPolicy("fail", 0.0)))
    assert read_all(reader) == 40


def test_histories_longer_than_the_cap_are_cut_and_counted(tmp_path: Path) -> None:
    rows = random_rows(60, seed=7, max_history=30)
    spec = default_spec()
    cap = 12
    spec = spec.__class__(**{**spec.__dict__, "sequence": spec.sequence.__class__(
        **{**spec.sequence.__dict__, "max_length": cap})})
    write_rows(tmp_path / "a.parquet", rows)
    reader = ParquetReader([tmp_path], spec, LAYOUT, ReadOptions(16))
    assert read_all(reader) == 60
    longer = sum(len(r["hist_time"]) > cap for r in rows)
    assert reader.stats.truncated == longer > 0
    assert reader.stats.as_dict()["rows_history_truncated"] == longer


def test_policy_values_are_checked() -> None:
    with pytest.raises(ValueError, match="on_bad_rows='skip'"):
        BadRowPolicy("skip")
    with pytest.raises(ValueError, match="max_bad_fraction=1.5"):
        BadRowPolicy(max_bad_fraction=1.5)


@pytest.mark.parametrize("keep", [0.5, 0.99, 0.0])
def test_truncated_parquet_is_an_error_naming_the_file(tmp_path: Path, keep: float) -> None:
    write_rows(tmp_path / "a.parquet", random_rows(30, seed=1))
    write_rows(tmp_path / "b.parquet", random_rows(30, seed=2))
    data = (tmp_path / "b.parquet").read_bytes()
    (tmp_path / "b.parquet").write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(DataError, match=r"b\.parquet: not a readable Parquet file.*truncated or corrupt"):
        ParquetReader([tmp_path], default_spec(), LAYOUT, ReadOptions(16))
    assert [p for p, _ in resolve_files([tmp_path]).unreadable()] == [str(tmp_path / "b.parquet")]


def test_skip_policy_leaves_unreadable_files_out_and_names_them(tmp_path: Path) -> None:
    write_rows(tmp_path / "a.parquet", random_rows(30, seed=1))
    write_rows(tmp_path / "b.parquet", random_rows(20, seed=2))
    (tmp_path / "b.parquet").write_bytes((tmp_path / "b.parquet").read_bytes()[:100])
    reader = ParquetReader([tmp_path], default_spec(), LAYOUT,
                           ReadOptions(16, bad_rows=BadRowPolicy(on_bad_files="skip")))
    assert read_all(reader) == 30 == reader.stats.rows_read
    ((path, why),) = reader.stats.skipped_files
    assert path.endswith("b.parquet") and "magic bytes" in why
    assert reader.stats.as_dict()["files_skipped"] == [f"{path}: {why}"]
    (tmp_path / "a.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="no readable Parquet file"):
        ParquetReader([tmp_path], default_spec(), LAYOUT, ReadOptions(16, bad_rows=BadRowPolicy(on_bad_files="skip")))


def test_corrupt_row_group_is_an_error_naming_the_file(tmp_path: Path) -> None:
    write_rows(tmp_path / "a.parquet", random_rows(64, seed=3), row_group_size=32)
    path = tmp_path / "a.parquet"
    meta = pq.ParquetFile(path).metadata
    start = meta.row_group(1).column(0).data_page_offset
    data = bytearray(path.read_bytes())
    data[start : start + 200] = bytes(200)  # zero the second row group's first pages; the footer stays intact
    path.write_bytes(bytes(data))
    reader = ParquetReader([tmp_path], default_spec(), LAYOUT, ReadOptions(16))
    with pytest.raises(DataError, match=r"a\.parquet: row group 1 cannot be read.*corrupt"):
        read_all(reader)
