"""The per-user temporal split: no row in two splits, each user's order kept, the counts, and the job's splits."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from pyramid_mixer.features.config_io import ConfigError
from pyramid_mixer.features.schema import DataError
from pyramid_mixer.features.spec import default_spec
from pyramid_mixer.features.splits import assign_per_user, held_out
from pyramid_mixer.jobs.config import load_config
from pyramid_mixer.jobs.data import sources
from tests.logs import random_rows, write_rows


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
