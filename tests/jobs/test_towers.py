"""Every tower trains inside the full model (tables, DMP, over arch) through the same config switch."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from pyramid_mixer.embeddings.model_parallel import init_distributed
from pyramid_mixer.features.config_io import ConfigError
from pyramid_mixer.features.reader import ParquetReader, ReadOptions
from pyramid_mixer.features.spec import default_spec
from pyramid_mixer.jobs.build import build
from pyramid_mixer.jobs.config import load_config
from pyramid_mixer.jobs.loops import PlainLoop
from pyramid_mixer.ranking.towers import BASELINES, TOWER_KINDS
from pyramid_mixer.ranking.towers.pyramid_mixer import PyramidMixer
from tests.logs import random_rows, write_rows

OVERRIDES = [
    "model.layout.levels=[{start: 0, end: 12, group: 1}]",
    "model.tower.out_dim=16",
    "model.baseline.out_dim=16",
    "model.baseline.hidden=16",
    "model.over_arch.hidden=[16]",
]


@pytest.mark.parametrize("kind", TOWER_KINDS)
def test_each_tower_trains_in_the_full_model(tmp_path: Path, kind: str) -> None:
    env = init_distributed()
    spec = default_spec()
    write_rows(tmp_path / "a.parquet", random_rows(64, seed=41, max_history=20))
    built = build(load_config(None, OVERRIDES + [f"model.tower_kind={kind}"]), spec, env)
    tower = built.dmp.module.model.encoder.tower
    assert type(tower) is (PyramidMixer if kind == "pyramid_mixer" else BASELINES[kind]) and tower.config.out_dim == 16
    before = [p.detach().clone() for p in tower.parameters()]
    stepper = PlainLoop(built.dmp, built.optimizer, env.device)
    batches = iter(ParquetReader([tmp_path], spec, built.layout, ReadOptions(32)))
    losses = [float(stepper.progress(batches)[0]) for _ in range(2)]
    assert all(math.isfinite(x) and x > 0 for x in losses)
    assert any(not torch.equal(b, p) for b, p in zip(before, tower.parameters()))  # the tower trained


def test_unknown_tower_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="model.tower_kind='transformer' is unknown"):
        load_config(None, ["model.tower_kind=transformer"])
