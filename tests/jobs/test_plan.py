"""The plan job: TorchRec's planner as a report, for this machine or a cluster it is not."""

from __future__ import annotations

import json

import pytest

from pyramid_mixer.features.spec import default_spec
from pyramid_mixer.jobs.plan import main


def _plan(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    main(list(args) + ["--json"])
    return json.loads(capsys.readouterr().out)


def test_cpu_plan_places_every_table_once(capsys: pytest.CaptureFixture[str]) -> None:
    report = _plan(capsys, "--world-size", "2")
    tables = {t["table"]: t for t in report["tables"]}
    assert set(tables) == {t.name for t in default_spec().tables}
    assert all(t["sharding_type"] == "table_wise" and len(t["ranks"]) == 1 for t in tables.values())
    assert {r["rank"] for r in report["ranks"]} <= {0, 1}
    # costs follow the pooling factors: the history tables cost more than a one-id-per-row table
    assert tables["t_item"]["perf_ms"] > 10 * tables["t_device"]["perf_ms"]
    assert sum(r["perf_ms"] for r in report["ranks"]) == pytest.approx(sum(t["perf_ms"] for t in tables.values()))


def test_dry_run_for_a_gpu_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    report = _plan(capsys, "--world-size", "64", "--local-world-size", "8", "--device", "cuda", "--hbm-gb", "80",
                   "--set", "model.sharding.sharding_types=[column_wise, table_wise]")
    assert report["world_size"] == 64 and report["compute_device"] == "cuda"
    ranks = {r for t in report["tables"] for r in t["ranks"]}
    assert ranks <= set(range(64)) and len(ranks) > 1
    assert all(t["hbm_gb"] > 0 for t in report["tables"])


def test_markdown_output(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--world-size", "2"])
    out = capsys.readouterr().out
    assert "| t_item | table_wise | fused |" in out and "| rank |" in out


def test_uvm_caching_is_planned_for_gpus(capsys: pytest.CaptureFixture[str]) -> None:
    report = _plan(capsys, "--world-size", "8", "--device", "cuda", "--hbm-gb", "16", "--set",
                   "model.sharding.compute_kernels=[fused_uvm_caching]",
                   "model.sharding.cache_load_factor={t_item: 0.1}")
    item = next(t for t in report["tables"] if t["table"] == "t_item")
    assert item["compute_kernel"] == "fused_uvm_caching"
    assert item["ddr_gb"] > 0  # the table itself lives in host memory; its cache in HBM
