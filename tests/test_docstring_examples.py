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
    "pyramid_mixer.ranking.model",
    "pyramid_mixer.ranking.popularity",
    "pyramid_mixer.ranking.init_streams",
    "pyramid_mixer.ranking.towers",
    "pyramid_mixer.ranking.gate_shares",
    "pyramid_mixer.ranking.baselines.attention",
    "pyramid_mixer.ranking.baselines.pooling",
    "pyramid_mixer.ranking.baselines.recurrent",
    "pyramid_mixer.ranking.baselines.mixers",
    "pyramid_mixer.jobs.config",
    "pyramid_mixer.jobs.gemm_bound",
    "pyramid_mixer.jobs.field_docs",
]


@pytest.mark.parametrize("name", MODULES)
def test_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
