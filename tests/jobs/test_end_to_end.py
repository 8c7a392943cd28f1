"""Generate -> train -> eval on small planted logs: the model must beat popularity and stay below the oracle.

One module-scoped run (a few seconds of training) serves every assertion here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyramid_mixer.jobs import checkpoint
from pyramid_mixer.jobs.config import JobConfig, load_config
from pyramid_mixer.jobs.eval import main as eval_main
from pyramid_mixer.jobs.generate import run as generate
from pyramid_mixer.jobs.train import TrainResult, summary, train

SMALL = [
    "generate.rows=60000",
    "generate.users=3000",
    "generate.items=4000",
    "generate.authors=600",
    "generate.max_history=64",
    "model.layout.levels=[{start: 0, end: 8, group: 1}, {start: 8, end: 24, group: 2}, "
    "{start: 24, end: 64, group: 5}]",
    "model.tower.out_dim=32",
    "model.over_arch.hidden=[64, 32]",
    "train.batch_size=256",
    "train.epochs=1",  # CTR models overfit from the second epoch on (ids memorise rows); one pass is the norm
    "train.dense_lr=0.003",
    "eval.predictions=true",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[JobConfig, TrainResult]:
    root = tmp_path_factory.mktemp("e2e")
    config = load_config(None, SMALL + [f"data.path={root / 'data'}", f"run_dir={root / 'run'}"])
    generate(config)
    return config, train(config)


def test_model_beats_popularity_and_stays_below_oracle(run: tuple[JobConfig, TrainResult]) -> None:
    _, result = run
    report = result.report
    assert report is not None
    click = report.metric("click")
    assert report.popularity_auc is not None and click.oracle_auc is not None
    assert click.auc > report.popularity_auc + 0.01, summary(result)
    assert click.auc < click.oracle_auc
    assert click.uauc_users > 100 and 0.5 < click.uauc < 1.0
    assert 0.5 < click.calibration < 2.0


def test_every_row_is_accounted_for(run: tuple[JobConfig, TrainResult]) -> None:
    _, result = run
    for epoch in result.read:
        assert epoch["rows_read"] == epoch["rows_used"] + epoch["rows_rejected"] > 0
    rows = result.report.rows  # type: ignore[union-attr]
    assert rows["rows_read"] == rows["rows_used"] == result.report.metric("click").rows  # type: ignore[union-attr]
    used = sum(e["rows_used"] for e in result.read)
    assert result.rows_trained == used == sum(e["rows_trained"] for e in result.read)


def test_reports_and_checkpoints_are_written(run: tuple[JobConfig, TrainResult]) -> None:
    config, result = run
    run_dir = Path(config.run_dir)
    data = json.loads((run_dir / "eval.json").read_text())
    assert data["labels"][0]["label"] == "click"
    assert "| click |" in (run_dir / "eval.md").read_text()
    gate = data["fusion_gate"]  # what the adaptive fusion learned, per layer and token feature
    assert list(gate) == ["level0.layer0", "level1.layer0", "level2.layer0"]
    assert list(gate["level0.layer0"]) == ["hist_item", "hist_author", "hist_category", "hist_action", "hist_time_gap"]
    assert "| level2.layer0 |" in (run_dir / "eval.md").read_text()
    assert (run_dir / "eval.png").stat().st_size > 1000
    assert (run_dir / "predictions.parquet").is_file()
    assert list((run_dir / "tensorboard").glob("events.*"))
    assert checkpoint.latest(run_dir) == run_dir / "checkpoints" / "epoch-1"


def test_eval_job_reloads_the_checkpoint_and_reproduces_the_metrics(
    run: tuple[JobConfig, TrainResult], capsys: pytest.CaptureFixture[str]
) -> None:
    config, result = run
    before = json.loads((Path(config.run_dir) / "eval.json").read_text())
    overrides = SMALL + [f"data.path={config.data.path}", f"run_dir={config.run_dir}"]
    eval_main([arg for s in overrides for arg in ("--set", s)])
    assert json.loads((Path(config.run_dir) / "eval.json").read_text()) == before  # the run's report stays
    after = json.loads((Path(config.run_dir) / "evals" / "epoch-1" / "eval.json").read_text())
    for a, b in zip(before["labels"], after["labels"]):
        assert a["auc"] == pytest.approx(b["auc"], abs=1e-9)
        assert a["uauc"] == pytest.approx(b["uauc"], abs=1e-9)
    assert list(after["fusion_gate"]) == list(before["fusion_gate"])
    for layer, shares in before["fusion_gate"].items():
        assert after["fusion_gate"][layer] == pytest.approx(shares, abs=1e-9)
    out = capsys.readouterr().out
    assert "click: AUC" in out and "adaptive fusion, cross-behaviour share a per layer" in out


def test_eval_on_ids_never_seen_in_training(run: tuple[JobConfig, TrainResult], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Users, items, authors and history ids far outside every table (and unseen in training) are hashed
    into the tables like any other id: eval scores every row."""
    from tests.logs import random_rows, write_rows

    config, _ = run
    rows = random_rows(300, seed=77, max_history=40)
    for r in rows:
        r["user_id"] += 2**62
        r["item_id"] += 10**12
        r["author_id"] += 10**9
        r["hist_item_id"] = [i + 10**12 for i in r["hist_item_id"]]
    write_rows(tmp_path / "unseen" / "a.parquet", rows)
    overrides = SMALL + [f"data.train=['{config.data.path}']", f"data.test=['{tmp_path / 'unseen'}']",
                         f"run_dir={config.run_dir}", "eval.predictions=false"]
    eval_main([arg for s in overrides for arg in ("--set", s)])
    out = capsys.readouterr().out
    assert "rows read 300, used 300, rejected 0" in out
    report = json.loads((Path(config.run_dir) / "evals" / "epoch-1" / "eval.json").read_text())
    assert report["rows"]["rows_read"] == 300 and all(0.0 < m["auc"] < 1.0 for m in report["labels"])
