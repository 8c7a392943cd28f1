"""What a resume and an eval may change against the config and spec a run was trained with."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pyramid_mixer.features.config_io import ConfigError
from pyramid_mixer.features.spec import default_spec
from pyramid_mixer.jobs import run_record
from pyramid_mixer.jobs.config import load_config


def record(*overrides: str) -> dict:
    return run_record.record(load_config(None, list(overrides)), default_spec())


def test_a_resume_may_change_how_long_and_where_but_not_what() -> None:
    trained = record("train.epochs=1")
    run_record.check(trained, record("train.epochs=3", "train.threads=2", "run_dir=elsewhere", "eval.batch_size=8"),
                     "resume", "runs/x")
    for override in ("train.seed=1", "train.dense_lr=0.01", "data.split=per_user", "model.tower.out_dim=8",
                     "train.batch_size=64"):
        with pytest.raises(ConfigError, match=f"runs/x was trained with another config: {override.split('=')[0]}"):
            run_record.check(trained, record(override), "resume", "runs/x")


def test_eval_may_score_other_data_but_not_with_another_model_or_spec() -> None:
    trained = record()
    run_record.check(trained, record("data.path=other", "data.eval_days=3", "train.dense_lr=0.5",
                                     "model.tower_precision=bf16"), "eval", "ckpt")
    with pytest.raises(ConfigError, match="model.tower.fusion: 'gate' -> 'sum'"):
        run_record.check(trained, record("model.tower.fusion=sum"), "eval", "ckpt")
    spec = default_spec()
    other = dataclasses.replace(spec, tables=tuple(dataclasses.replace(t, dim=t.dim * 2) for t in spec.tables))
    with pytest.raises(ConfigError, match=r"spec.tables"):
        run_record.check(trained, run_record.record(load_config(None), other), "eval", "ckpt")


def test_a_record_from_before_specs_were_kept_compares_the_config_alone(tmp_path: Path) -> None:
    config = load_config(None, [f"run_dir={tmp_path}"])
    run_record.write(tmp_path, config, default_spec())
    (tmp_path / run_record.SPEC).unlink()
    old = run_record.recorded(tmp_path)
    assert old is not None and "spec" not in old
    run_record.check(old, run_record.record(config, default_spec()), "resume", str(tmp_path))


def test_the_record_is_written_once(tmp_path: Path) -> None:
    run_record.write(tmp_path, load_config(None, ["train.epochs=1"]), default_spec())
    run_record.write(tmp_path, load_config(None, ["train.epochs=5"]), default_spec())
    recorded = run_record.recorded(tmp_path)
    assert recorded is not None and recorded["train"]["epochs"] == 1 and recorded["spec"]["labels"]
