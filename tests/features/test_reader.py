"""The streaming reader against a slow reference built row by row from ``pyarrow.Table.to_pylist()``."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Dict, List

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pyramid_mixer.features.kjt_builder import TIME_GAP_FEATURE, hash_ids, kjt_keys, token_key
from pyramid_mixer.features.reader import ParquetReader, ReadOptions
from pyramid_mixer.features.spec import FeatureSpec, default_spec
from pyramid_mixer.features.tokens import LevelSpec, PyramidLayout, time_gap_bucket
from tests.logs import random_rows, write_rows

LAYOUT = PyramidLayout(levels=(LevelSpec(0, 8, 1), LevelSpec(8, 40, 4), LevelSpec(40, 200, 20)))


def _h(spec: FeatureSpec, table: str, hashing: str, ids: List[int]) -> List[int]:
    return hash_ids(np.array(ids, dtype=np.int64), spec.table(table).num_embeddings, hashing).tolist()


def reference_bags(row: Dict, spec: FeatureSpec, layout: PyramidLayout) -> Dict[str, List[int]]:
    """The bag of every KJT key for one row, computed the slow, obvious way."""
    bags = {}
    for f in spec.sparse:
        ids = row[f.column] if f.multi_valued else [row[f.column]]
        bags[f.name] = _h(spec, f.table, f.hashing, ids)
    hist = {f.name: row[f.column] for f in spec.sequence.fields}
    ages = [row[spec.request_time] - t for t in row[spec.sequence.time_column]]
    slots = layout.slot_names()
    s = 0
    for lv in layout.levels:
        for t in range(lv.tokens):
            lo, hi = lv.start + t * lv.group, lv.start + (t + 1) * lv.group
            for f in spec.sequence.fields:
                bags[token_key(f.name, slots[s])] = _h(spec, f.table, f.hashing, hist[f.name][lo:hi])
            gap_rows = spec.table(spec.sequence.time_gap_table).num_embeddings
            bags[token_key(TIME_GAP_FEATURE, slots[s])] = time_gap_bucket(np.array(ages[lo:hi]), gap_rows).tolist()
            s += 1
    return bags


def test_batches_equal_slow_reference(tmp_path: Path) -> None:
    spec = default_spec()
    rows_a, rows_b = random_rows(150, seed=1), random_rows(90, seed=2)
    for i, r in enumerate(rows_b):
        r["request_id"] = 5000 + i
    write_rows(tmp_path / "a.parquet", rows_a, row_group_size=37)
    write_rows(tmp_path / "b.parquet", rows_b, row_group_size=50)
    expected = pa.concat_tables([pq.read_table(tmp_path / "a.parquet"), pq.read_table(tmp_path / "b.parquet")])
    expected_rows = expected.to_pylist()

    reader = ParquetReader([tmp_path], spec, LAYOUT, ReadOptions(batch_size=64))
    seen = 0
    sizes = []
    for batch in reader:
        B = batch.batch_size
        sizes.append(B)
        kjt = batch.sparse_features
        assert kjt.keys() == kjt_keys(spec, LAYOUT)
        per_key = kjt.to_dict()
        for b in range(B):
            row = expected_rows[seen + b]
            ref = reference_bags(row, spec, LAYOUT)
            for key, bag in ref.items():
                jt = per_key[key]
                lo, hi = int(jt.offsets()[b]), int(jt.offsets()[b + 1])
                assert jt.values()[lo:hi].tolist() == bag, (key, b)
            assert batch.request_ids[b] == row["request_id"]
            assert batch.group_ids[b] == row["user_id"]
            assert batch.labels[b].tolist() == [row["click"], row["finish"], row["like"]]
            assert batch.dense_features[b, 0].item() == pytest.approx(math.log1p(row["item_duration"]), rel=1e-5)
            assert batch.oracle[b, 0].item() == pytest.approx(row["click_prob"], rel=1e-6)
            assert math.isnan(batch.oracle[b, 1].item())  # no finish_prob column in this data
            assert batch.history_length[b] == min(len(row["hist_time"]), LAYOUT.coverage)
        seen += B
    assert seen == len(expected_rows) == 240
    assert sizes == [64, 64, 64, 48]  # re-cut across row groups and files; only the last is short
    assert reader.stats.rows_read == reader.stats.rows_used == 240
    assert reader.stats.rows_rejected == 0


def test_history_beyond_coverage_is_truncated_and_counted_in_length(tmp_path: Path) -> None:
    rows = random_rows(20, seed=3, max_history=600)
    write_rows(tmp_path / "a.parquet", rows)
    batch = next(iter(ParquetReader([tmp_path], default_spec(), LAYOUT, ReadOptions(batch_size=20))))
    assert int(batch.history_length.max()) == LAYOUT.coverage == 200
    lengths = batch.sparse_features.lengths().view(-1, 20)
    assert int(lengths.sum()) > 0


def test_reader_is_reiterable_and_counts_each_pass(tmp_path: Path) -> None:
    write_rows(tmp_path / "a.parquet", random_rows(30))
    reader = ParquetReader([tmp_path / "a.parquet"], default_spec(), LAYOUT, ReadOptions(batch_size=8))
    for _ in range(2):
        assert sum(b.batch_size for b in reader) == 30
        assert reader.stats.rows_read == 30


def test_row_filter_selects_rows(tmp_path: Path) -> None:
    import pyarrow.compute as pc

    rows = random_rows(50, seed=5)
    write_rows(tmp_path / "a.parquet", rows)
    cutoff = sorted(r["request_time"] for r in rows)[30]
    reader = ParquetReader([tmp_path], default_spec(), LAYOUT,
                           ReadOptions(16, row_filter=pc.field("request_time") < cutoff))
    assert sum(b.batch_size for b in reader) == 30


def test_shuffled_passes_read_every_row_once_in_a_seeded_order(tmp_path: Path) -> None:
    write_rows(tmp_path / "a.parquet", random_rows(120, seed=8), row_group_size=25)
    write_rows(tmp_path / "b.parquet", random_rows(70, seed=9), row_group_size=25)

    def order(reader: ParquetReader) -> List[int]:
        return [int(r) for b in reader for r in b.request_ids]

    reader = ParquetReader([tmp_path], default_spec(), LAYOUT, ReadOptions(batch_size=32, shuffle_rows=60, seed=3))
    first, second = order(reader), order(reader)
    file_order = order(ParquetReader([tmp_path], default_spec(), LAYOUT, ReadOptions(batch_size=32)))
    assert sorted(first) == sorted(second) == sorted(file_order) and len(first) == 190
    assert first != file_order and first != second  # each pass has its own order...
    again = ParquetReader([tmp_path], default_spec(), LAYOUT, ReadOptions(batch_size=32, shuffle_rows=60, seed=3))
    assert order(again) == first  # ...drawn from (seed, pass)
    assert reader.stats.rows_read == reader.stats.rows_used == 190


def test_age_windows_put_each_behaviour_in_its_window(tmp_path: Path) -> None:
    """With ``mode: age`` a level holds the behaviours whose age falls in its window, most recent first."""
    layout = PyramidLayout(
        levels=(LevelSpec(0, 8, 1), LevelSpec(8, 24, 2)), mode="age", windows_hours=(24.0, 24.0 * 7)
    )
    spec = default_spec()
    rows = random_rows(40, seed=13, max_history=120)
    write_rows(tmp_path / "a.parquet", rows)
    batch = next(iter(ParquetReader([tmp_path], spec, layout, ReadOptions(batch_size=40))))
    per_key = batch.sparse_features.to_dict()
    slots = layout.slot_names()
    for b, row in enumerate(rows):
        ages = [(row["request_time"] - t) / 3600 for t in row["hist_time"]]
        day = [i for i, a in enumerate(ages) if a < 24][:8]
        week = [i for i, a in enumerate(ages) if 24 <= a < 24 * 7][:16]
        expected = [[row["hist_item_id"][i]] for i in day] + [
            [row["hist_item_id"][i] for i in week[j : j + 2]] for j in range(0, len(week), 2)
        ]
        got = []
        for s in slots[: len(day)] + slots[8 : 8 + (len(week) + 1) // 2]:
            jt = per_key[token_key("hist_item", s)]
            got.append(jt.values()[jt.offsets()[b] : jt.offsets()[b + 1]].tolist())
        assert got == expected, b
        assert int(batch.sparse_features.lengths().view(-1, 40)[7 + len(day) : 7 + 8, b].sum()) == 0


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_read_disjoint_balanced_shares_that_cover_every_row(tmp_path: Path, world_size: int) -> None:
    rows = random_rows(230, seed=14, max_history=5)
    for i, r in enumerate(rows):
        r["request_id"] = i
    write_rows(tmp_path / "a.parquet", rows[:150], row_group_size=20)  # 8 row groups, the last of 10 rows
    write_rows(tmp_path / "b.parquet", rows[150:], row_group_size=30)  # 3 row groups, the last of 20 rows
    seen = []
    for rank in range(world_size):
        reader = ParquetReader([tmp_path], default_spec(), LAYOUT,
                               ReadOptions(16, shuffle_rows=40, rank=rank, world_size=world_size))
        ids = [int(r) for b in reader for r in b.request_ids]
        assert reader.stats.rows_read == len(ids)
        seen.append(ids)
    flat = sorted(i for ids in seen for i in ids)
    assert flat == list(range(230))  # every row exactly once across ranks
    sizes = [len(ids) for ids in seen]
    assert max(sizes) - min(sizes) <= 30  # balanced to within one row group


def test_bad_rank_is_an_error(tmp_path: Path) -> None:
    write_rows(tmp_path / "a.parquet", random_rows(5))
    with pytest.raises(ValueError, match="rank 2 is not in"):
        ParquetReader([tmp_path], default_spec(), LAYOUT, ReadOptions(4, rank=2, world_size=2))


@pytest.mark.parametrize("k", [2, 5])
def test_group_rows_shuffles_one_users_rows_in_chunks(tmp_path: Path, k: int) -> None:
    write_rows(tmp_path / "a.parquet", random_rows(150, seed=4), row_group_size=25)
    options = ReadOptions(batch_size=30, shuffle_rows=200, seed=1, group_rows=k)
    reader = ParquetReader([tmp_path], default_spec(), LAYOUT, options)
    rows = [(int(g), int(r)) for b in reader for g, r in zip(b.group_ids, b.request_ids)]
    assert len(rows) == len({r for _, r in rows}) == 150  # every row once
    users = Counter(g for g, _ in rows)
    runs = Counter(g for i, (g, _) in enumerate(rows) if i == 0 or rows[i - 1][0] != g)  # runs of each user
    # each user's rows come in chunks of up to k (two chunks of one user may meet, making fewer runs)
    assert all(runs[u] <= math.ceil(n / k) for u, n in users.items()), (runs, users)
    singly = ParquetReader([tmp_path], default_spec(), LAYOUT, ReadOptions(batch_size=30, shuffle_rows=200, seed=1))
    alone = [int(g) for b in singly for g in b.group_ids]
    alone_runs = Counter(g for i, g in enumerate(alone) if i == 0 or alone[i - 1] != g)
    assert sum(alone_runs.values()) > sum(runs.values())  # shuffled singly, a user's rows scatter
