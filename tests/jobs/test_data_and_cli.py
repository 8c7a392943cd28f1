"""Splits (by time or explicit paths) and the command lines' behaviour on user errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pyramid_mixer.embeddings.model_parallel import DistEnv
from pyramid_mixer.features.config_io import ConfigError
from pyramid_mixer.features.reader import ReadOptions
from pyramid_mixer.features.schema import DataError
from pyramid_mixer.features.spec import default_spec
from pyramid_mixer.jobs.config import load_config
from pyramid_mixer.jobs.data import read_options, sources
from pyramid_mixer.jobs.train import count_rows
from tests.logs import random_rows, write_rows


def test_time_split_puts_the_last_day_in_eval(tmp_path: Path) -> None:
    rows = random_rows(200, seed=12)
    write_rows(tmp_path / "a.parquet", rows)
    srcs = sources(load_config(None, [f"data.path={tmp_path}", "data.eval_days=2"]).data, default_spec())
    latest = max(r["request_time"] for r in rows)
    expected_eval = sum(r["request_time"] > latest - 2 * 86400 for r in rows)
    assert count_rows(srcs["eval"]) == expected_eval > 0
    assert count_rows(srcs["train"]) == 200 - expected_eval


def test_the_splits_of_a_job_share_one_listing_and_one_dataset(tmp_path: Path) -> None:
    """Every split of a split by time reads the same ``Files``: listed once, each footer read once (on an
    object store with many files, a job used to list them and read every footer 7 times or more)."""
    write_rows(tmp_path / "a.parquet", random_rows(50, seed=14))
    write_rows(tmp_path / "b.parquet", random_rows(50, seed=15))
    cfg = load_config(None, [f"data.path={tmp_path}", "data.eval_days=1", "data.valid_days=1"])
    srcs = sources(cfg.data, default_spec())
    files = srcs["train"].files()
    assert srcs["valid"].files() is files and srcs["eval"].files() is files
    assert files.dataset() is files.dataset()
    reader = srcs["eval"].reader(default_spec(), cfg.model.effective_layout(), ReadOptions(16))
    assert reader.dataset is files.dataset()
    assert sum(count_rows(s) for s in srcs.values()) == 100  # the filters still split the shared rows


def test_valid_days_take_the_days_before_eval_out_of_train(tmp_path: Path) -> None:
    rows = random_rows(300, seed=13)
    write_rows(tmp_path / "a.parquet", rows)
    cfg = load_config(None, [f"data.path={tmp_path}", "data.eval_days=1", "data.valid_days=1.5"])
    srcs = sources(cfg.data, default_spec())
    latest = max(r["request_time"] for r in rows)
    cut_eval, cut_valid = latest - 86400, latest - 86400 - int(1.5 * 86400)
    n_eval = sum(r["request_time"] > cut_eval for r in rows)
    n_valid = sum(cut_valid < r["request_time"] <= cut_eval for r in rows)
    assert count_rows(srcs["eval"]) == n_eval > 0
    assert count_rows(srcs["valid"]) == n_valid > 0
    assert count_rows(srcs["train"]) == 300 - n_eval - n_valid > 0
    with pytest.raises(ConfigError, match="valid_days=-1 >= 0"):
        sources(load_config(None, [f"data.path={tmp_path}", "data.valid_days=-1"]).data, default_spec())
    with pytest.raises(ConfigError, match="eval.splits"):
        load_config(None, ["eval.splits=[test]"])


def test_train_job_skips_unreadable_files_when_told_and_reports_them(tmp_path: Path) -> None:
    from pyramid_mixer.jobs.train import summary, train

    write_rows(tmp_path / "data" / "a.parquet", random_rows(120, seed=14, max_history=20))
    (tmp_path / "data" / "b.parquet").write_bytes(b"PAR1 truncated")
    small = ["model.layout.levels=[{start: 0, end: 4, group: 1}, {start: 4, end: 12, group: 4}]",
             "model.tower.out_dim=8", "model.over_arch.hidden=[8]", "train.batch_size=32", "data.eval_days=2",
             f"data.path={tmp_path / 'data'}", f"run_dir={tmp_path / 'run'}", "train.checkpoint=false"]
    with pytest.raises(DataError, match=r"b\.parquet: not a readable Parquet file"):
        train(load_config(None, small))
    result = train(load_config(None, small + ["data.on_bad_files=skip"]))
    assert result.read[0]["files_skipped"][0].startswith(str(tmp_path / "data" / "b.parquet"))
    assert result.rows_trained + result.report.rows["rows_used"] == 120  # type: ignore[union-attr]
    assert "unreadable files skipped (1)" in summary(result)
    with pytest.raises(ConfigError, match="on_bad_files='maybe'"):
        load_config(None, ["data.on_bad_files=maybe"])


def test_explicit_paths_win_and_need_a_held_out_set(tmp_path: Path) -> None:
    write_rows(tmp_path / "train" / "a.parquet", random_rows(30))
    write_rows(tmp_path / "test" / "b.parquet", random_rows(20))
    cfg = load_config(None, [f"data.train=['{tmp_path}/train/*.parquet']", f"data.test=['{tmp_path}/test']"])
    srcs = sources(cfg.data, default_spec())
    assert (count_rows(srcs["train"]), count_rows(srcs["eval"])) == (30, 20)
    with pytest.raises(ConfigError, match="also set data.test"):
        sources(load_config(None, [f"data.train=['{tmp_path}/train']"]).data, default_spec())


@pytest.mark.parametrize("job", ["generate", "train", "eval"])
def test_help(job: str) -> None:
    out = subprocess.run([sys.executable, "-m", f"pyramid_mixer.jobs.{job}", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--config" in out and "--set" in out


def test_user_errors_are_one_line_not_a_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pyramid_mixer.jobs.train", "--set", f"data.path={tmp_path}/missing"],
        capture_output=True, text=True,
    )
    assert proc.returncode != 0
    assert "error:" in proc.stderr and "no Parquet files found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_read_options_come_from_the_config(tmp_path: Path) -> None:
    """Training reads shuffled ``train.batch_size`` batches with the train seed; scoring reads
    ``eval.batch_size`` rows in file order; both read this rank's share of the split's rows with the config's
    bad-row policy."""
    write_rows(tmp_path / "a.parquet", random_rows(50, seed=16))
    cfg = load_config(None, ["train.batch_size=64", "train.shuffle_rows=128", "train.seed=5", f"data.path={tmp_path}",
                             "eval.batch_size=100", "data.on_bad_rows=fail"])
    env = DistEnv(rank=1, world_size=2, local_world_size=2, device=torch.device("cpu"), backend="gloo")
    srcs = sources(cfg.data, default_spec())
    layout = cfg.model.effective_layout()
    train = srcs["train"].reader(default_spec(), layout, read_options(cfg, env, training=True)).options
    score = srcs["eval"].reader(default_spec(), layout, read_options(cfg, env, training=False)).options
    assert (train.batch_size, train.shuffle_rows, train.seed) == (64, 128, 5)
    assert (score.batch_size, score.shuffle_rows) == (100, 0)
    for opts, src in ((train, srcs["train"]), (score, srcs["eval"])):
        assert (opts.rank, opts.world_size, opts.bad_rows.on_bad_rows) == (1, 2, "fail")
        assert opts.row_filter is src.row_filter
    with pytest.raises(ValueError, match="batch_size must be positive"):
        ReadOptions(0)
    with pytest.raises(ValueError, match="shuffle_rows must be >= 0"):
        ReadOptions(8, shuffle_rows=-1)
