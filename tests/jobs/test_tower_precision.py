"""``model.tower_precision=bf16``: the tower under bf16 autocast, in both loops (TorchRec's pipeline traces the
model), in both tasks, with fp32 weights; and the GPU path's checks, which run where a GPU is."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pyramid_mixer.embeddings.model_parallel import init_distributed
from pyramid_mixer.features.config_io import ConfigError
from pyramid_mixer.features.reader import ParquetReader, ReadOptions
from pyramid_mixer.features.spec import default_spec
from pyramid_mixer.jobs.build import build
from pyramid_mixer.jobs.config import load_config
from pyramid_mixer.jobs.loops import PipelineLoop, PlainLoop
from pyramid_mixer.ranking.encoder import run_tower
from tests.jobs.test_train_loop import OVERRIDES
from tests.logs import random_rows, write_rows


def _losses(config_overrides: list, data: Path, loop: type, steps: int = 4) -> tuple:
    env = init_distributed()
    spec = default_spec()
    built = build(load_config(None, OVERRIDES + config_overrides), spec, env)
    stepper = loop(built.dmp, built.optimizer, env.device)
    batches = iter(ParquetReader([data], spec, built.layout, ReadOptions(32)))
    losses = [float(stepper.progress(batches)[0]) for _ in range(steps)]
    if hasattr(stepper, "detach"):
        stepper.detach()
    return losses, built


@pytest.mark.parametrize("loop", [PlainLoop, PipelineLoop])
def test_bf16_trains_in_both_loops_close_to_fp32_with_fp32_weights(tmp_path: Path, loop: type) -> None:
    write_rows(tmp_path / "a.parquet", random_rows(32 * 4, seed=41, max_history=20))
    fp32, _ = _losses([], tmp_path, loop)
    bf16, built = _losses(["model.tower_precision=bf16"], tmp_path, loop)
    assert all(torch.isfinite(torch.tensor(bf16)))
    assert bf16 != fp32  # the tower really ran in bf16
    assert bf16 == pytest.approx(fp32, rel=0.05)  # but computes the same model to bf16's precision
    tower = built.dmp.module.model.encoder.tower
    assert all(p.dtype == torch.float32 for p in tower.parameters())  # the master weights stay fp32
    assert built.dmp.module.model.encoder.tower_precision == "bf16"


def test_run_tower_returns_fp32_and_runs_the_tower_in_bf16() -> None:
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, tokens, mask, target):  # type: ignore[no-untyped-def]
            out = torch.nn.functional.linear(tokens.flatten(1), torch.ones(2, tokens[0].numel()))
            seen.append(out.dtype)
            return out

    tokens, mask, target = torch.randn(3, 4, 2, 2), torch.ones(3, 4, dtype=torch.bool), torch.randn(3, 1, 2)
    assert run_tower(Probe(), tokens, mask, target, "bf16").dtype == torch.float32
    assert run_tower(Probe(), tokens, mask, target, "fp32").dtype == torch.float32
    assert seen == [torch.bfloat16, torch.float32]


def test_bf16_next_item_model_trains(tmp_path: Path) -> None:
    from pyramid_mixer.features.datasets.movielens import convert_movielens
    from pyramid_mixer.jobs.train import train
    from tests.jobs.test_next_item_job import TINY, write_ratings

    write_ratings(tmp_path / "raw", users=12, items=30, events=240)
    convert_movielens(tmp_path / "raw", tmp_path / "data", row_group_rows=100)
    config = load_config(None, TINY + [f"data.path={tmp_path / 'data'}", f"run_dir={tmp_path / 'run'}",
                                       "model.tower_precision=bf16"])
    result = train(config)
    assert result.rows_trained > 0 and torch.isfinite(torch.tensor(result.final_loss))
    assert all(0.0 <= v <= 1.0 for v in result.reports["eval"].metrics["full"].values())


def test_an_unknown_precision_is_an_error_that_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="tower_precision='fp16'.*'fp32', 'bf16'"):
        load_config(None, ["model.tower_precision=fp16"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/speed/gpu_check.sh)")
def test_the_gpu_path_nccl_row_wise_fused_optimizer_bf16(tmp_path: Path) -> None:
    """On a GPU: nccl on one process, fbgemm's CUDA TBE kernels with the fused row-wise optimizer, row-wise
    sharding, TorchRec's pipeline with its CUDA streams, the tower in bf16."""
    write_rows(tmp_path / "a.parquet", random_rows(32 * 4, seed=42, max_history=20))
    env = init_distributed()
    assert env.device.type == "cuda" and env.backend == "nccl"
    losses, built = _losses(["model.tower_precision=bf16", "model.sharding.sharding_types=[row_wise]"], tmp_path,
                            PipelineLoop)
    assert all(torch.isfinite(torch.tensor(losses)))
    plan = str(built.dmp.plan)
    assert "row_wise" in plan and "FUSED" in plan.upper()
