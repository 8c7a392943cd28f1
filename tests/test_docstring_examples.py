"""Every ``Example::`` in a module docstring runs, so the examples cannot rot."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "pyramid_mixer.features.config_io",
    "pyramid_mixer.features.spec",
    "pyramid_mixer.features.tokens",
    "pyramid_mixer.features.kjt_builder",
    "pyramid_mixer.features.reader",
    "pyramid_mixer.embeddings.tables",
    "pyramid_mixer.ranking.ctr.model",
    "pyramid_mixer.ranking.ctr.popularity",
    "pyramid_mixer.ranking.towers.init_streams",
    "pyramid_mixer.ranking.towers",
    "pyramid_mixer.ranking.towers.gate_shares",
    "pyramid_mixer.ranking.towers.baselines.attention",
    "pyramid_mixer.ranking.towers.baselines.pooling",
    "pyramid_mixer.ranking.towers.baselines.recurrent",
    "pyramid_mixer.ranking.towers.baselines.mixers",
    "pyramid_mixer.jobs.config",
    "pyramid_mixer.jobs.bench.gemm_bound",
    "pyramid_mixer.jobs.field_docs",
]


@pytest.mark.parametrize("name", MODULES)
def test_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
