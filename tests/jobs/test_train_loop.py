"""TorchRec's TrainPipelineSparseDist and the plain loop train the same model; filler batches add no gradient."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch._dynamo.utils import counters

from pyramid_mixer.embeddings.model_parallel import init_distributed
from pyramid_mixer.features.config_io import ConfigError
from pyramid_mixer.features.reader import ParquetReader, ReadOptions
from pyramid_mixer.features.spec import default_spec
from pyramid_mixer.jobs.build import build, cpp_compiler
from pyramid_mixer.jobs.config import load_config
from pyramid_mixer.jobs.loops import PipelineLoop, PlainLoop
from tests.logs import random_rows, write_rows

OVERRIDES = [
    "model.layout.levels=[{start: 0, end: 4, group: 1}, {start: 4, end: 12, group: 4}]",
    "model.tower.out_dim=16",
    "model.over_arch.hidden=[16]",
    "train.batch_size=32",
]


def _state(dmp) -> dict:  # type: ignore[no-untyped-def]
    out = {}
    for k, v in dmp.state_dict().items():
        out[k] = v.local_shards()[0].tensor.clone() if hasattr(v, "local_shards") else v.clone()
    return out


def _train_epoch(stepper, reader: ParquetReader) -> list:  # type: ignore[no-untyped-def]
    """One pass over ``reader`` with ``stepper`` (a PlainLoop or PipelineLoop); the losses, step by step. The
    stepper is detached at the end, so the model is the plain one again."""
    batches, losses = iter(reader), []
    while True:
        try:
            losses.append(float(stepper.progress(batches)[0]))
        except StopIteration:
            break
    stepper.detach()
    return losses


def test_pipeline_and_plain_loop_give_the_same_model(tmp_path: Path) -> None:
    env = init_distributed()
    spec = default_spec()
    write_rows(tmp_path / "a.parquet", random_rows(32 * 6, seed=31, max_history=20))
    config = load_config(None, OVERRIDES)
    results = []
    for loop in (PlainLoop, PipelineLoop):
        built = build(config, spec, env)
        reader = ParquetReader([tmp_path], spec, built.layout, ReadOptions(32))
        losses = _train_epoch(loop(built.dmp, built.optimizer, env.device), reader)
        results.append((losses, _state(built.dmp)))
    (plain_losses, plain), (pipe_losses, pipe) = results
    assert len(plain_losses) == len(pipe_losses) == 6
    assert plain_losses == pipe_losses
    assert plain.keys() == pipe.keys()
    for k in plain:
        assert torch.equal(plain[k], pipe[k]), k


def test_a_zero_weight_batch_contributes_no_gradient(tmp_path: Path) -> None:
    """What a rank past its share feeds the collectives: zero dense gradients, no embedding row updated
    (the fused optimizer steps inside backward). The dense optimizer still steps on every rank, as DDP
    requires, with this rank's zero gradient averaged in."""
    env = init_distributed()
    spec = default_spec()
    write_rows(tmp_path / "a.parquet", random_rows(32, seed=32, max_history=20))
    built = build(load_config(None, OVERRIDES), spec, env)
    batch = next(iter(ParquetReader([tmp_path], spec, built.layout, ReadOptions(32))))
    before = _state(built.dmp)
    loss, _ = built.dmp(batch.zero_weight())
    loss.backward()
    assert float(loss.detach()) == 0.0
    grads = [p.grad for n, p in built.dmp.named_parameters() if p.grad is not None]
    assert grads and all(bool((g == 0).all()) for g in grads)
    after = _state(built.dmp)
    assert all(torch.equal(before[k], after[k]) for k in before if "embedding_bags" in k)
    built.optimizer.zero_grad()
    loss, _ = built.dmp(batch)
    loss.backward()
    moved = _state(built.dmp)
    assert not all(torch.equal(before[k], moved[k]) for k in before if "embedding_bags" in k)


def test_resuming_after_an_epoch_gives_the_uninterrupted_model(tmp_path: Path) -> None:
    """Two epochs in one run and one epoch + a resumed second epoch: bit-identical parameters."""
    from pyramid_mixer.jobs import checkpoint
    from pyramid_mixer.jobs.train import train

    write_rows(tmp_path / "data" / "a.parquet", random_rows(32 * 5, seed=33, max_history=20), row_group_size=40)
    common = OVERRIDES + [f"data.path={tmp_path / 'data'}", "data.eval_days=2", "train.shuffle_rows=64"]
    train(load_config(None, common + ["train.epochs=2", f"run_dir={tmp_path / 'straight'}"]))
    train(load_config(None, common + ["train.epochs=1", f"run_dir={tmp_path / 'resumed'}"]))
    resumed = train(load_config(None, common + ["train.epochs=2", f"run_dir={tmp_path / 'resumed'}"]))
    assert resumed.epochs == 1  # only the second epoch ran
    env = init_distributed()
    states = []
    for run in ("straight", "resumed"):
        built = build(load_config(None, OVERRIDES), default_spec(), env)
        checkpoint.load(tmp_path / run / "checkpoints" / "epoch-2", built.dmp, built.optimizer)
        states.append(_state(built.dmp))
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_learning_rate_schedule_drives_dense_and_table_optimizers_and_is_checkpointed(tmp_path: Path) -> None:
    from pyramid_mixer.jobs import checkpoint

    env = init_distributed()
    spec = default_spec()
    write_rows(tmp_path / "a.parquet", random_rows(32 * 6, seed=34, max_history=20))
    schedule = ["train.schedule.warmup_steps=4", "train.schedule.warmup_start=0.5",
                "train.schedule.decay_every=5", "train.schedule.decay_gamma=0.5",
                "train.dense_lr=0.01", "train.sparse_lr=0.2"]
    config = load_config(None, OVERRIDES + schedule)
    built = build(config, spec, env)
    fused, dense = built.optimizer.optimizers[0][1], built.optimizer.optimizers[1][1]
    stepper = PlainLoop(built.dmp, built.optimizer, env.device)
    batches = iter(ParquetReader([tmp_path], spec, built.layout, ReadOptions(32)))
    seen = []
    for _ in range(5):
        stepper.progress(batches)
        seen.append((dense.param_groups[0]["lr"], fused.param_groups[0]["lr"]))
    # the schedule counts from 1 (one step at build time creates its state): steps 2..6 after 5 steps
    expected = [0.5 + 0.5 * 2 / 4, 0.5 + 0.5 * 3 / 4, 1.0, 0.5, 0.5]
    assert [round(d / 0.01, 6) for d, _ in seen] == expected
    assert [round(s / 0.2, 6) for _, s in seen] == expected
    checkpoint.save(tmp_path / "run", 1, built.dmp, built.optimizer, {})
    again = build(config, spec, env)
    checkpoint.load(tmp_path / "run" / "checkpoints" / "epoch-1", again.dmp, again.optimizer)
    assert again.optimizer.optimizers[1][1].param_groups[0]["lr"] == pytest.approx(0.5 * 0.01)


def test_checkpoint_restores_the_rng_state(tmp_path: Path) -> None:
    from pyramid_mixer.jobs import checkpoint

    env = init_distributed()
    built = build(load_config(None, OVERRIDES), default_spec(), env)
    torch.manual_seed(123)
    checkpoint.save(tmp_path, 1, built.dmp, built.optimizer, {})
    expected = torch.rand(3)
    torch.manual_seed(999)
    checkpoint.load(tmp_path / "checkpoints" / "epoch-1", built.dmp)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.skipif(cpp_compiler() is None, reason="torch.compile's CPU backend needs a C++ compiler")
def test_a_compiled_tower_trains_the_model_the_plain_one_does(tmp_path: Path) -> None:
    """``model.compile_tower``: torch.compile (inductor) of the tower, through the pipeline; a shorter last batch
    and an eval batch compile again. Same losses and weights as the plain tower, to rounding."""
    env = init_distributed()
    spec = default_spec()
    write_rows(tmp_path / "a.parquet", random_rows(32 * 3 + 7, seed=32, max_history=20))
    results = []
    for compiled in (False, True):
        config = load_config(None, OVERRIDES + [f"model.compile_tower={str(compiled).lower()}"])
        built = build(config, spec, env)
        tower = next(m for n, m in built.dmp.named_modules() if n.endswith(".tower"))
        assert (getattr(tower, "_compiled_call_impl", None) is not None) == compiled
        frames = counters["stats"]["unique_graphs"]  # graphs dynamo has compiled in this process so far
        stepper = PipelineLoop(built.dmp, built.optimizer, env.device)
        losses = _train_epoch(stepper, ParquetReader([tmp_path], spec, built.layout, ReadOptions(32)))
        built.dmp.eval()
        with torch.no_grad():
            _, (_, logits, _, _) = built.dmp(next(iter(ParquetReader([tmp_path], spec, built.layout, ReadOptions(50)))))
        assert (counters["stats"]["unique_graphs"] > frames) == compiled  # the compiled tower really ran
        results.append((losses, _state(built.dmp), logits))
    (plain_losses, plain, plain_logits), (losses, state, logits) = results
    assert len(losses) == 4 and losses == pytest.approx(plain_losses, abs=1e-5)
    for k in plain:
        torch.testing.assert_close(state[k], plain[k], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(logits, plain_logits, atol=1e-5, rtol=1e-4)


def test_compile_tower_without_a_cpp_compiler_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert cpp_compiler() is None
    config = load_config(None, OVERRIDES + ["model.compile_tower=true"])
    with pytest.raises(ConfigError, match="no compiler is on the PATH.*model.compile_tower=false"):
        build(config, default_spec(), init_distributed())
