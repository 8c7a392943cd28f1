"""bench-speed: a smoke run on tiny cases (every tower, two pyramid layouts) and the arithmetic of its targets."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc
import pytest

from pyramid_mixer.features.config_io import ConfigError
from pyramid_mixer.features.kjt_builder import BatchBuilder
from pyramid_mixer.features.spec import default_spec
from pyramid_mixer.features.tokens import LevelSpec, PyramidLayout
from pyramid_mixer.jobs.bench.speed import full_history_logs, run_bench
from pyramid_mixer.jobs.bench.speed_config import SpeedConfig, load_speed_config
from pyramid_mixer.jobs.bench.speed_tables import targets

SMALL = PyramidLayout(levels=(LevelSpec(0, 2, 1), LevelSpec(2, 4, 1), LevelSpec(4, 6, 1)))  # 6 behaviours
LARGE = PyramidLayout(levels=(LevelSpec(0, 2, 1), LevelSpec(2, 6, 2), LevelSpec(6, 14, 4)))  # 14, same 6 tokens


def tiny(out: Path) -> SpeedConfig:
    return SpeedConfig(out_dir=str(out), batch_size=8, warmup=1, repeats=3, max_seconds=5.0, lengths=(4, 8),
                       pyramids=(SMALL, LARGE), matmul_size=64, loader_rows=32, isolate=False)


def test_smoke_run_measures_every_case_and_writes_the_report(tmp_path: Path) -> None:
    cfg = tiny(tmp_path / "out")
    data = run_bench(cfg)
    names = {(r["name"], r["behaviours"]) for r in data["cases"]}
    assert names == {(t, n) for t in cfg.towers for n in (4, 8)} | {
        (n, b) for n in ("pyramid_mixer", "mean (pyramid layout)") for b in (6, 14)}
    for r in data["cases"]:
        assert r["train"]["examples_per_s"] > 0 and r["eval"]["examples_per_s"] > 0, r["name"]
        assert r["tower_alone"]["fp32"]["runs"] >= 3 and r["peak_rss_bytes"] > 0
    by = {(r["name"], r["behaviours"]): r for r in data["cases"]}
    flops = {k: r["tower_alone"]["flops"] for k, r in by.items()}
    assert flops[("sasrec", 8)] > flops[("sasrec", 4)] > 0  # counted from the shapes: more tokens, more FLOPs
    # the pyramid reads 14 behaviours in the tokens it reads 6 with: the tower's work does not grow
    assert flops[("pyramid_mixer", 14)] == flops[("pyramid_mixer", 6)] > 0
    for k, r in by.items():  # the replayed matmuls are the step's matmuls: the same FLOPs the counter saw
        alone = r["tower_alone"]["matmuls_alone"]
        assert alone["flops"] == flops[k] and alone["gflops"] > 0, k
    assert data["loader"]["rows"] == 32 and data["loader"]["rows_per_s"] > 0
    assert data["matmul_peak_gflops"]["fp32"] > 0 and data["matmul_peak_gflops"]["bf16"] > 0
    assert [t["value"] is None for t in data["targets"]] == [False, False, True, True, False, False]  # no sasrec@512
    saved = json.loads((tmp_path / "out" / "speed.json").read_text())
    assert saved["targets"] == data["targets"] and saved["machine"]["versions"]["torch"]
    text = (tmp_path / "out" / "speed.md").read_text()
    assert "| pyramid_mixer | 14 | 6 | 8 |" in text and "Matmul peak" in text and "its matmuls alone" in text
    assert (tmp_path / "out" / "speed.png").stat().st_size > 0
    # the pyramid against its former tower code, timed in turn: the full model and the tower alone
    for b in (6, 14):
        r = by[("pyramid_mixer", b)]
        assert r["train_former_tower"]["examples_per_s"] > 0 and r["train_former_tower"]["runs"] >= 3
        assert r["tower_alone"]["former_fp32"]["seconds"] > 0
        assert r["tower_alone"]["former_fp32"]["runs"] == r["tower_alone"]["fp32"]["runs"]
        assert by[("mean (pyramid layout)", b)]["train_former_tower"] is None
    assert "against its former code" in text and "| 14 |" in text.split("against its former code")[1]
    # where the largest pyramid's tower step goes, by kind of work: its matmuls among them
    prof = by[("pyramid_mixer", 14)]["tower_alone"]["profile"]
    assert prof["ms_per_step"]["matmul"] > 0 and prof["ms_per_step"]["layer norm"] > 0
    assert prof["total_ms"] == pytest.approx(sum(prof["ms_per_step"].values()))
    assert "Where the Pyramid Mixer's tower step goes (14 behaviours" in text


def case(name: str, behaviours: int, train: float, tower_s: float = 1.0, gflops: float = 1.0) -> dict:
    return {"name": name, "behaviours": behaviours, "train": {"examples_per_s": train},
            "tower_alone": {"fp32": {"seconds": tower_s, "gflops": gflops}}}


def test_targets_are_ratios_of_the_run_s_measurements() -> None:
    results = [case("pyramid_mixer", 2336, 900.0, tower_s=0.11, gflops=60.0), case("pyramid_mixer", 96, 950.0,
               tower_s=0.10), case("mean (pyramid layout)", 2336, 1000.0), case("sasrec", 512, 100.0),
               case("sasrec", 2048, 30.0)]
    got = {t["target"]: t for t in targets(results, {"fp32": 100.0}, {"rows_per_s": 2000.0}, 2336, 96)}
    assert got["pyramid / mean pooling, same embedding reads"]["value"] == pytest.approx(0.9)
    assert got["pyramid / mean pooling, same embedding reads"]["met"] is True
    assert got["pyramid tower / fp32 matmul peak"]["value"] == pytest.approx(0.6)
    assert got["pyramid / sasrec@512"]["value"] == pytest.approx(9.0) and got["pyramid / sasrec@512"]["met"]
    assert got["pyramid / sasrec@2048"]["value"] == pytest.approx(30.0) and got["pyramid / sasrec@2048"]["met"] is False
    flat = got["pyramid tower time, 2336 / 96 behaviours"]
    assert flat["value"] == pytest.approx(1.1) and flat["met"] is True and flat["goal"] == "<= 1.2"
    assert got["loader / pyramid training"]["value"] == pytest.approx(2000 / 900) and not got[
        "loader / pyramid training"]["met"]


def test_full_history_logs_fill_every_slot_of_the_layout() -> None:
    table = full_history_logs(5, 14)
    assert pc.all(pc.equal(pc.list_value_length(table.column("hist_time")), 14)).as_py()
    batch = BatchBuilder(default_spec(), LARGE).build(table)
    assert int(batch.history_length.min()) == 14
    lengths = batch.sparse_features["hist_item@L2.t1"].lengths()
    assert lengths.tolist() == [4] * 5  # the long level's tokens each pool 4 behaviours


def test_config_checks_and_the_packaged_config() -> None:
    cfg = load_speed_config(None)
    assert cfg.largest.coverage == 2336 and cfg.smallest.coverage == 96
    assert {c.tokens for c in cfg.cases() if c.tower == "pyramid_mixer"} == {96}
    with pytest.raises(ConfigError, match="unknown"):
        SpeedConfig(towers=("transformer",), pyramids=(SMALL,))
    with pytest.raises(ConfigError, match="pyramids"):
        SpeedConfig()
    batches = {(c.name, c.behaviours): c.batch_size for c in cfg.cases()}
    assert batches[("sasrec", 2048)] == 32 and batches[("sasrec", 512)] == cfg.batch_size == 512
    with pytest.raises(ConfigError, match="name@behaviours"):
        SpeedConfig(pyramids=(SMALL,), case_batch={"sasrec@100": 8})
    with pytest.raises(ConfigError, match="tower_precision='fp16'.*fp32"):
        SpeedConfig(pyramids=(SMALL,), tower_precision="fp16")


def test_the_gpu_config_asks_for_bf16_at_batch_4096_over_2336_behaviours() -> None:
    from importlib import resources

    cfg = load_speed_config(str(resources.files("pyramid_mixer.jobs") / "configs" / "bench_speed_gpu.yaml"))
    assert cfg.tower_precision == "bf16" and cfg.batch_size == 4096 and cfg.largest.coverage == 2336
    assert {c.name for c in cfg.cases()} >= {"pyramid_mixer", "mean (pyramid layout)"}
    assert cfg.out_dir == "benchmarks/speed/gpu"


def test_matmul_replay_records_forward_and_backward_with_their_layouts() -> None:
    import torch

    from pyramid_mixer.jobs.bench.gemm_bound import matmul_flops, record_matmuls, replay_seconds

    linear = torch.nn.Linear(8, 4)
    x = torch.randn(8, 18, requires_grad=True)
    calls = record_matmuls(lambda: linear(x.t()).sum().backward())  # 18 X 8, a transposed input
    # forward addmm; backward: the input's gradient and the weight's (the bias's is a sum, no matmul)
    assert sorted(c.op for c in calls) == ["addmm", "mm", "mm"] and {c.device for c in calls} == {"cpu"}
    assert matmul_flops(calls) == 3 * 2 * 18 * 8 * 4
    assert any(layout[1] != torch.empty(layout[0]).stride() for c in calls for layout in c.inputs)  # a transposed one
    assert replay_seconds(calls, repeats=2) > 0
    assert record_matmuls(lambda: torch.randn(3).add_(1.0)) == []
