"""The job config: strict loading, overrides, derived tower settings, and the ablation switch levels=1."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyramid_mixer.features.config_io import ConfigError
from pyramid_mixer.features.spec import default_spec
from pyramid_mixer.jobs.cli import parser
from pyramid_mixer.jobs.config import load_config


def test_demo_config_loads_and_derives_tower_shape() -> None:
    cfg = load_config(None)
    tower = cfg.model.tower_config(default_spec())
    assert tower.level_tokens == cfg.model.layout.level_tokens
    assert tower.num_features == default_spec().num_token_features


def test_unknown_key_is_an_error_naming_it(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  epoch: 2\n")
    with pytest.raises(ConfigError, match=r"c\.yaml\.train: unknown key\(s\) \['epoch'\]"):
        load_config(str(p))


def test_overrides_and_bad_override() -> None:
    cfg = load_config(None, ["train.batch_size=64", "model.tower.cross_period=false"])
    assert cfg.train.batch_size == 64 and cfg.model.tower.cross_period is False
    with pytest.raises(ConfigError, match="expected key.path=value"):
        load_config(None, ["train.batch_size"])
    with pytest.raises(ConfigError, match="expected an integer"):
        load_config(None, ["train.batch_size=big"])


def test_levels_one_is_a_single_full_resolution_level_with_the_same_tokens() -> None:
    cfg = load_config(None, ["model.levels=1"])
    layout = cfg.model.effective_layout()
    assert layout.level_tokens == (cfg.model.layout.num_slots,)
    assert layout.levels[0].group == 1
    with pytest.raises(ConfigError, match="model.levels=2"):
        load_config(None, ["model.levels=2"]).model.effective_layout()


def test_help_explains_config_and_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser("pmx-train", "train", reads="logs", writes="a model").parse_args(["--help"])
    out = capsys.readouterr().out
    assert "--config" in out and "--set" in out and "train.epochs=2" in out
    p = parser("pmx-train", "train", reads="logs", writes="a model")
    args = p.parse_args(["--set", "a=1", "b=2", "--set", "c=3"])
    assert args.overrides == ["a=1", "b=2", "c=3"]
