"""The per-user temporal split: no row in two splits, each user's order kept, the counts, the job's splits, and
the held-out rows' histories frozen at their window's start."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet  # noqa: F401  (pa.parquet)
import pytest

from pyramid_mixer.features.config_io import ConfigError
from pyramid_mixer.features.files import resolve_files
from pyramid_mixer.features.reader import ReadOptions
from pyramid_mixer.features.schema import DataError
from pyramid_mixer.features.spec import default_spec
from pyramid_mixer.features.splits import assign_per_user, held_out, history_cutoffs
from pyramid_mixer.features.tokens import LevelSpec, PyramidLayout
from pyramid_mixer.jobs.config import load_config
from pyramid_mixer.jobs.data import sources
from tests.logs import random_rows, write_rows

LAYOUT = PyramidLayout(levels=(LevelSpec(0, 8, 1), LevelSpec(8, 40, 4)))


def events(seed: int, users: int = 40, rows: int = 600) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"user_id": rng.integers(0, users, rows), "request_time": rng.integers(0, 50, rows),
                     "request_id": rng.permutation(rows) + 1000})


@pytest.mark.parametrize("valid, test", [(0.1, 0.1), (0.2, 0.05), (1, 1), (0, 0.3), (2, 0.5)])
def test_each_user_holds_out_its_latest_rows(valid: float, test: float) -> None:
    table = events(seed=int(valid * 10 + test * 100))
    split = assign_per_user(table, "user_id", "request_time", "request_id", valid=valid, test=test)
    test_ids, valid_ids = set(split.test_ids.tolist()), set(split.valid_ids.tolist())
    assert not test_ids & valid_ids
    assert split.counts == {"train": table.num_rows - len(test_ids) - len(valid_ids), "valid": len(valid_ids),
                            "test": len(test_ids)}
    rows = table.to_pylist()
    for user in {r["user_id"] for r in rows}:
        mine = sorted((r for r in rows if r["user_id"] == user), key=lambda r: (r["request_time"], r["request_id"]))
        n = len(mine)
        n_test = min(math.ceil(test * n) if test < 1 else int(test), n)
        n_valid = min(math.ceil(valid * n) if 0 < valid < 1 else int(valid), n - n_test)
        kinds = ["test" if r["request_id"] in test_ids else "valid" if r["request_id"] in valid_ids else "train"
                 for r in mine]
        assert kinds == ["train"] * (n - n_test - n_valid) + ["valid"] * n_valid + ["test"] * n_test  # order kept


def test_a_share_rounds_up_and_a_count_is_a_count() -> None:
    n = np.array([1, 2, 9, 10, 11, 100])
    assert held_out(n, 0.1).tolist() == [1, 1, 1, 1, 2, 10]
    assert held_out(n, 3).tolist() == [1, 2, 3, 3, 3, 3]
    assert held_out(n, 0).tolist() == [0] * 6


def test_duplicate_request_ids_are_refused() -> None:
    table = pa.table({"user_id": [1, 1], "request_time": [1, 2], "request_id": [5, 5]})
    with pytest.raises(DataError, match="request ids occur more than once"):
        assign_per_user(table, "user_id", "request_time", "request_id", valid=0, test=0.5)


def test_the_jobs_splits_read_every_row_once_and_keep_null_keys_in_train(tmp_path: Path) -> None:
    rows = random_rows(300, seed=5, max_history=8)
    rows[7]["request_time"] = None  # a bad row: train keeps it, so the reader rejects and counts it
    write_rows(tmp_path / "logs" / "a.parquet", rows)
    config = load_config(None, [f"data.path={tmp_path / 'logs'}", "data.split=per_user", "data.user_test=0.2",
                                "data.user_valid=1"])
    srcs = sources(config.data, default_spec())
    dataset = ds.dataset(str(tmp_path / "logs"))
    got = {name: dataset.to_table(filter=src.row_filter).column("request_id").to_pylist() for name, src in srcs.items()}
    assert sorted(got["train"] + got["valid"] + got["eval"]) == sorted(r["request_id"] for r in rows)
    assert rows[7]["request_id"] in got["train"]
    assert "per user" in srcs["eval"].description and f"({len(got['eval']):,} rows)" in srcs["eval"].description


def test_bad_shares_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"data.user_test=1.5: use a share .* or a whole count"):
        load_config(None, ["data.split=per_user", "data.user_test=1.5"])
    with pytest.raises(ConfigError, match="needs a test set"):
        load_config(None, ["data.split=per_user", "data.user_test=0"])


def test_each_held_out_row_knows_its_windows_first_row() -> None:
    table = events(seed=3, users=12, rows=200)
    split = assign_per_user(table, "user_id", "request_time", "request_id", valid=0.2, test=0.2)
    rows = {r["request_id"]: r for r in table.to_pylist()}
    key = lambda i: (rows[i]["request_time"], i)  # noqa: E731  (the split's order within a user)
    for ids, firsts in ((split.valid_ids, split.valid_first), (split.test_ids, split.test_first)):
        assert ids.tolist() == sorted(ids.tolist())
        first: dict = {}
        for i in ids.tolist():
            user = rows[i]["user_id"]
            first[user] = min(first.get(user, i), i, key=key)
        assert firsts.tolist() == [first[rows[i]["user_id"]] for i in ids.tolist()]


def test_a_single_row_user_between_two_users_has_its_own_window() -> None:
    table = pa.table({"user_id": [1, 1, 2, 3, 3], "request_time": [5, 6, 1, 2, 9], "request_id": [1, 2, 3, 4, 5]})
    split = assign_per_user(table, "user_id", "request_time", "request_id", valid=0, test=0.5)
    assert split.test_ids.tolist() == [2, 3, 5] and split.test_first.tolist() == [2, 3, 5]


def test_a_frozen_history_is_the_windows_first_rows_even_within_one_second(tmp_path: Path) -> None:
    """Histories of one behaviour per earlier row (as the converters write them), many rows sharing a second:
    every held-out row gets exactly its window's first row's history."""
    spec = default_spec()
    rng = np.random.default_rng(4)
    rows = []
    for user in range(1, 9):
        times = np.sort(rng.integers(0, 6, int(rng.integers(1, 30)))) + 1_700_000_000  # many ties
        mine: list = []
        for t in times.tolist():
            rows.append({"request_id": len(rows) + 1, "user_id": user, "request_time": t,
                         "hist_time": [r["request_time"] for r in reversed(mine)],
                         "hist_item_id": [r["request_id"] for r in reversed(mine)]})
            mine.append(rows[-1])
    table = pa.table({c: [r[c] for r in rows] for c in rows[0]})
    table = table.append_column("hist_action", table.column("hist_item_id"))
    table = table.append_column("hist_author_id", table.column("hist_item_id"))
    table = table.append_column("hist_item_category", table.column("hist_item_id"))
    path = tmp_path / "a.parquet"
    pa.parquet.write_table(table, path)
    split = assign_per_user(table, "user_id", "request_time", "request_id", valid=0.3, test=0.3)
    cuts = history_cutoffs(resolve_files([str(path)]), spec, split)
    by_id = {r["request_id"]: r for r in rows}
    windows = [(split.valid_ids, split.valid_first, cuts[0]), (split.test_ids, split.test_first, cuts[1])]
    for ids, firsts, cut in windows:
        held = cut.apply(table.filter(pc.is_in(table.column("request_id"), pa.array(ids))), spec)
        assert held.column("request_id").to_pylist() == ids.tolist()
        for column in ("hist_item_id", "hist_time", "hist_action"):
            expected = [by_id[f]["hist_time" if column == "hist_time" else "hist_item_id"] for f in firsts.tolist()]
            assert held.column(column).to_pylist() == expected
    assert any(len(by_id[i]["hist_time"]) > len(by_id[f]["hist_time"])
               for i, f in zip(split.test_ids.tolist(), split.test_first.tolist()))  # not vacuous


@pytest.mark.parametrize("name", ["eval", "valid"])
def test_frozen_histories_hold_nothing_from_the_window_and_keep_every_row(tmp_path: Path, name: str) -> None:
    spec = default_spec()
    rows = random_rows(240, seed=6, max_history=60, users=5)
    write_rows(tmp_path / "logs" / "a.parquet", rows)
    overrides = [f"data.path={tmp_path / 'logs'}", "data.split=per_user", "data.user_test=0.3", "data.user_valid=0.3"]
    logged = sources(load_config(None, overrides).data, spec)[name]
    frozen = sources(load_config(None, overrides + ["data.freeze_history=true"]).data, spec)[name]
    assert "history as of the window's start" in frozen.description
    held = ds.dataset(str(tmp_path / "logs")).to_table(filter=logged.row_filter).to_pylist()  # the reader's order
    start: dict = {}
    for r in held:  # the random rows' request times are all distinct, their behaviours' times before them
        start[r["user_id"]] = min(start.get(r["user_id"], r["request_time"]), r["request_time"])
    kept = [sum(t < start[r["user_id"]] for t in r["hist_time"]) for r in held]
    assert sum(kept) < sum(len(r["hist_time"]) for r in held)  # the case is not vacuous

    def lengths(source):  # type: ignore[no-untyped-def]
        reader = source.reader(spec, LAYOUT, ReadOptions(32))
        out = [int(n) for batch in reader for n in batch.history_length]
        assert reader.stats.rows_read == reader.stats.rows_used == len(held)  # every row read and used
        return out

    assert lengths(logged) == [min(len(r["hist_time"]), LAYOUT.coverage) for r in held]
    assert lengths(frozen) == [min(k, LAYOUT.coverage) for k in kept]


def test_frozen_histories_are_for_the_per_user_split() -> None:
    with pytest.raises(ConfigError, match="data.freeze_history=true .* set data.split=per_user"):
        load_config(None, ["data.freeze_history=true"])
