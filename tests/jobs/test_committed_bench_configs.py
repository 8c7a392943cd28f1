"""The benchmark configs committed under ``benchmarks/`` load, and every trial they would run is a valid job
config: a typo fails here, not hours into a run."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyramid_mixer.jobs.bench.config import load_bench_config
from pyramid_mixer.jobs.bench.quality import trials_for
from pyramid_mixer.jobs.config import load_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "benchmarks").rglob("bench.yaml"))


def test_the_committed_bench_configs_are_found() -> None:
    assert "benchmarks/nextitem/beauty/bench.yaml" in CONFIGS and "benchmarks/quality/frozen/bench.yaml" in CONFIGS


@pytest.mark.parametrize("path", CONFIGS)
def test_every_trial_of_a_committed_bench_config_is_a_valid_job(path: str) -> None:
    bench = load_bench_config(str(ROOT / path))
    data = {ds.name: ("data.path=unused",) for ds in bench.datasets}
    trials = trials_for(bench, data, lambda seeds: seeds, lambda d, v: range(len(bench.search_for(
        next(ds for ds in bench.datasets if ds.name == d)))))
    assert len(trials) >= len(bench.variants)
    for t in trials:
        config = load_config(t.config, list(t.overrides))
        assert config.train.seed == t.seed
