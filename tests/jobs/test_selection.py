"""Best-epoch selection (``train.select``): the valid split scored as training goes, the best model kept and
used for the test split, which is read once at the end; early stop after ``patience``; resume; config errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import pytest

from pyramid_mixer.features.config_io import ConfigError
from pyramid_mixer.jobs import checkpoint
from pyramid_mixer.jobs import train as train_job
from pyramid_mixer.jobs.config import load_config
from pyramid_mixer.jobs.eval import main as eval_main
from pyramid_mixer.jobs.selection import SelectConfig, Selector, parse_metric
from tests.logs import random_rows, write_rows

TINY = [
    "model.layout.levels=[{start: 0, end: 4, group: 1}, {start: 4, end: 12, group: 4}]",
    "model.tower.out_dim=8",
    "model.over_arch.hidden=[8]",
    "train.batch_size=64",
    "data.split=per_user",
    "data.user_test=0.2",
    "data.user_valid=0.2",
    "eval.splits=[valid, eval]",
]


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("logs") / "data"
    write_rows(path / "a.parquet", random_rows(640, seed=8, max_history=16, users=20))
    return path


def run(logs: Path, run_dir: Path, *extra: str):  # type: ignore[no-untyped-def]
    return train_job.train(load_config(None, TINY + [f"data.path={logs}", f"run_dir={run_dir}", *extra]))


def test_the_best_valid_epoch_scores_the_test_split_once(logs: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    calls: List[tuple] = []
    evaluate = train_job.evaluate

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append((kwargs["split"], kwargs.get("write_files", True)))
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(train_job, "evaluate", spy)
    result = run(logs, tmp_path / "run", "train.epochs=3", "train.select.metric=click AUC+UAUC",
                 "train.dense_lr=0.01")
    s = result.selection
    assert [h["at"] for h in s["history"]] == ["epoch-1", "epoch-2", "epoch-3"]
    best = max(s["history"], key=lambda h: h["value"])
    assert s["best_at"] == best["at"] and s["best"] == best["value"] and not s["stopped_early"]
    # the valid split is scored once per epoch without files; the test split once, after training, with files
    assert calls == [("valid", False)] * 3 + [("valid", True), ("eval", True)]
    # the reports are the chosen model's: its valid score is the best one, and pmx-eval (which loads the
    # selected checkpoint) gives the same test metrics
    valid = result.reports["valid"].metric("click")
    assert (valid.auc + valid.uauc) / 2 == pytest.approx(s["best"], abs=1e-12)
    assert json.loads((checkpoint.best(tmp_path / "run") / checkpoint.MANIFEST).read_text())["at"] == s["best_at"]
    eval_main(["--set", *TINY, f"data.path={logs}", f"run_dir={tmp_path / 'run'}"])
    again = json.loads((tmp_path / "run" / "evals" / "best" / "eval.json").read_text())["labels"][0]
    assert again["auc"] == pytest.approx(result.reports["eval"].metric("click").auc, abs=1e-12)


def test_patience_stops_training_when_the_valid_score_stops_improving(logs: Path, tmp_path: Path) -> None:
    # nothing learns (both learning rates 0): every score equals the first, so patience 1 stops after epoch 2
    result = run(logs, tmp_path / "run", "train.epochs=5", "train.select.metric=click AUC",
                 "train.select.patience=1", "train.dense_lr=0", "train.sparse_lr=0")
    s = result.selection
    assert result.epochs == 2 and [h["at"] for h in s["history"]] == ["epoch-1", "epoch-2"]
    assert s["best_at"] == "epoch-1" and s["stopped_early"]
    assert "stopped early, patience spent" in train_job.summary(result)


def test_every_steps_scores_within_the_epoch(logs: Path, tmp_path: Path) -> None:
    result = run(logs, tmp_path / "run", "train.epochs=1", "train.select.metric=click UAUC",
                 "train.select.every_steps=4", "train.pipeline=true")
    assert result.steps == 6  # 360 training rows in batches of 64
    assert [h["at"] for h in result.selection["history"]] == ["epoch-0-step-4", "epoch-1"]
    # TorchRec's pipeline, detached for the score and attached again mid-epoch, trains what the plain loop does
    plain = run(logs, tmp_path / "plain", "train.epochs=1", "train.select.metric=click UAUC",
                "train.select.every_steps=4", "train.pipeline=false")
    assert [h["value"] for h in plain.selection["history"]] == pytest.approx(
        [h["value"] for h in result.selection["history"]], abs=1e-6)


def test_a_resumed_run_goes_on_selecting(logs: Path, tmp_path: Path) -> None:
    first = run(logs, tmp_path / "run", "train.epochs=1", "train.select.metric=click AUC")
    second = run(logs, tmp_path / "run", "train.epochs=2", "train.select.metric=click AUC")
    assert [h["at"] for h in second.selection["history"]] == ["epoch-1", "epoch-2"]
    assert second.selection["history"][0] == first.selection["history"][0]


def test_selection_needs_a_valid_split_and_a_known_metric(logs: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="has none: set data.valid_days > 0"):
        run(logs, tmp_path / "a", "data.user_valid=0", "eval.splits=[eval]", "train.select.metric=click AUC")
    with pytest.raises(ConfigError, match=r"one of the spec's labels \['click', 'finish', 'like'\]"):
        run(logs, tmp_path / "b", "train.select.metric=clicks AUC")
    with pytest.raises(ConfigError, match="use '<label> AUC'"):
        load_config(None, ["train.select.metric=click accuracy"])


def test_the_selector_counts_scores_without_a_gain() -> None:
    s = Selector(SelectConfig(metric="NDCG@10", patience=2, min_delta=0.01))
    assert [s.update(v, str(i)) for i, v in enumerate([0.1, 0.105, float("nan"), 0.2])] == [True, False, False, True]
    assert s.best_at == "3" and not s.stop and parse_metric("NDCG@10").k == 10
    s.update(0.1, "4")
    s.update(0.1, "5")
    assert s.stop


def test_next_item_mode_selects_on_a_ranking_metric(tmp_path: Path) -> None:
    from pyramid_mixer.features.datasets.movielens import convert_movielens
    from tests.jobs.test_next_item_job import TINY as NEXT_ITEM
    from tests.jobs.test_next_item_job import write_ratings

    write_ratings(tmp_path / "raw", users=20, items=30, events=300, walk=True)
    convert_movielens(tmp_path / "raw", tmp_path / "data", row_group_rows=100)
    result = train_job.train(load_config(None, NEXT_ITEM + [
        f"data.path={tmp_path / 'data'}", f"run_dir={tmp_path / 'run'}", "train.epochs=2",
        "train.select.metric=NDCG@10"]))
    s = result.selection
    assert [h["at"] for h in s["history"]] == ["epoch-1", "epoch-2"]
    assert result.reports["valid"].metrics["full"]["NDCG@10"] == pytest.approx(s["best"], abs=1e-12)
    with pytest.raises(ConfigError, match="K one of eval.ks"):
        train_job.train(load_config(None, NEXT_ITEM + [f"data.path={tmp_path / 'data'}", "train.select.metric=NDCG@5",
                                                       f"run_dir={tmp_path / 'other'}"]))
