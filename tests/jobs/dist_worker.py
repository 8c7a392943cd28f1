"""Worker for the multi-process tests: one rank of a gloo run over fixed batches.

Rank r of W trains on rows ``[s*G + r*G/W, s*G + (r+1)*G/W)`` of step s (G = global batch), so 1-process and
W-process runs see the same global batches. A 1-process run saves its initial and trained checkpoints
(``out/init-{sharding}``, ``out/trained-{sharding}``); a W-process run starts from the initial one of the same
sharding, saves its own trained state (``out/trained2-{sharding}``), trains two more batches (what a resumed
run must reproduce) and evaluates the *table-wise* trained 1-process model, resharded. Results:
``out/result-{world}-{sharding}.json``. ``resume`` continues the 2-process table-wise state on 1 or 2
processes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List

import numpy as np
import pyarrow.dataset as ds
import torch
import torch.distributed as dist

from pyramid_mixer.embeddings.model_parallel import init_distributed
from pyramid_mixer.features.kjt_builder import BatchBuilder
from pyramid_mixer.features.spec import default_spec
from pyramid_mixer.jobs import checkpoint
from pyramid_mixer.jobs.build import build
from pyramid_mixer.jobs.config import load_config
from pyramid_mixer.jobs.distributed import from_main, gather_arrays, lockstep
from pyramid_mixer.jobs.eval import Predictions, gate_shares_over_ranks, report_for
from pyramid_mixer.ranking.towers.gate_shares import GateShares

GLOBAL_BATCH = 64
STEPS = 3

OVERRIDES = [
    "model.layout.levels=[{start: 0, end: 4, group: 1}, {start: 4, end: 12, group: 4}]",
    "model.tower.out_dim=16",
    "model.over_arch.hidden=[16]",
    "train.dense_lr=0.01",
    "train.sparse_lr=0.1",
]


def resume(rank: int, world: int, port: int, data: str, out: str) -> None:
    """Loads the 2-process table-wise run's final checkpoint (weights and optimizer states) on ``world``
    processes and trains two more global batches; rank 0 writes the losses to ``out/resume-{world}.json``."""
    env, config, built, builder, table = _setup(rank, world, port, data, out, ["table_wise"], ["fused"])
    checkpoint.load(Path(out) / "trained2-table_wise" / "checkpoints" / "epoch-1", built.dmp, built.optimizer)
    losses = _steps(built, builder, table, rank, world, range(STEPS, STEPS + 2))
    if rank == 0:
        (Path(out) / f"resume-{world}.json").write_text(json.dumps({"losses": losses}))
    dist.destroy_process_group()


def _setup(rank: int, world: int, port: int, data: str, out: str, sharding: List[str], kernels: List[str]):  # type: ignore[no-untyped-def]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    env = init_distributed()
    config = load_config(None, OVERRIDES + [
        f"model.sharding.sharding_types={sharding}", f"model.sharding.compute_kernels={kernels}",
        f"train.batch_size={GLOBAL_BATCH // world}", f"run_dir={out}/run-{world}-{sharding[0]}",
    ])
    built = build(config, default_spec(), env)
    builder = BatchBuilder(default_spec(), built.layout)
    return env, config, built, builder, ds.dataset(data, format="parquet").to_table()


def _steps(built, builder, table, rank: int, world: int, steps: Iterable[int]) -> List[float]:  # type: ignore[no-untyped-def]
    """Trains on global batches ``steps`` (this rank's slice of each); returns the mean loss over ranks."""
    share = GLOBAL_BATCH // world
    losses: List[float] = []
    for s in steps:
        batch = builder.build(table.slice(s * GLOBAL_BATCH + rank * share, share))
        loss, _ = built.dmp(batch)
        loss.backward()
        built.optimizer.step()
        built.optimizer.zero_grad()
        mean = loss.detach().clone()
        if world > 1:
            dist.all_reduce(mean)
            mean /= world
        losses.append(float(mean))
    return losses


def run(rank: int, world: int, port: int, data: str, out: str, sharding: List[str], kernels: List[str]) -> None:
    env, config, built, builder, table = _setup(rank, world, port, data, out, sharding, kernels)
    spec = default_spec()
    root = Path(out)
    tag = sharding[0]
    if world == 1:
        checkpoint.save(root / f"init-{tag}", 0, built.dmp, built.optimizer, {})
    else:
        checkpoint.load(root / f"init-{tag}" / "checkpoints" / "epoch-0", built.dmp, built.optimizer)

    losses = _steps(built, builder, table, rank, world, range(STEPS))

    if world == 1:
        checkpoint.save(root / f"trained-{tag}", 1, built.dmp, built.optimizer, {})
    else:  # keep this run's state for the resume test, then evaluate the 1-process table-wise model
        checkpoint.save(root / f"trained2-{tag}", 1, built.dmp, built.optimizer, {})
        continued = _steps(built, builder, table, rank, world, range(STEPS, STEPS + 2))  # as if never stopped
        checkpoint.load(root / "trained-table_wise" / "checkpoints" / "epoch-1", built.dmp)
    eval_rows = table.slice(STEPS * GLOBAL_BATCH)
    # an uneven split on purpose: rank 0 takes 2 batches more than the others
    n = eval_rows.num_rows
    cuts = [0] + [n // 2 + (n // 2) * r // world for r in range(1, world)] + [n] if world > 1 else [0, n]
    mine = eval_rows.slice(cuts[rank], cuts[rank + 1] - cuts[rank])
    batches = [builder.build(mine.slice(i, 16)) for i in range(0, mine.num_rows, 16)]
    parts = []
    built.dmp.eval()
    with torch.no_grad(), GateShares(built.dmp) as gates:
        for batch, real in lockstep(batches, env, lambda: builder.build(eval_rows.slice(0, 1))):
            gates.active = real
            _, (_, logits, labels, _) = built.dmp(batch)
            if real:
                parts.append([torch.sigmoid(logits).double().numpy(), labels.numpy(), batch.oracle.numpy(),
                              batch.group_ids.numpy(), batch.request_ids.numpy(), batch.history_length.numpy()])
    gathered = gather_arrays([np.concatenate(c) for c in zip(*parts)], env, dst=0)  # as the eval job does
    shares = gate_shares_over_ranks(gates, env)
    if rank > 0:  # only rank 0 holds the predictions; the others receive its report
        assert gathered is None, "gather_arrays(dst=0) gave predictions to another rank"
        received = from_main(None, env)
        (root / f"received-{world}-{sharding[0]}.json").write_text(json.dumps(received))
    else:
        preds = Predictions(*gathered, gate_shares=shares)
        order = np.argsort(preds.request_ids, kind="stable")
        report = report_for(preds.take(order), spec,
                            {"rows_read": 0, "rows_used": 0, "rows_rejected": 0}, "eval")
        metrics = from_main({m.label: [m.auc, m.uauc, m.gauc] for m in report.labels}, env)
        result: Dict[str, Any] = {
            "losses": losses,
            "continued": continued if world > 1 else [],
            "metrics": metrics,
            "rows": int(preds.scores.shape[0]),
            "fusion_gate": report.fusion_gate,
            "scores": preds.scores[order][:, 0].tolist(),
        }
        (root / f"result-{world}-{sharding[0]}.json").write_text(json.dumps(result))
    dist.destroy_process_group()
