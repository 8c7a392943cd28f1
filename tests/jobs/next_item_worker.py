"""Worker for the next-item multi-process test: one rank of a gloo run of next-item training and evaluation.

As ``dist_worker``: rank r of W trains on its slice of each fixed global batch of the training split (in
request-id order), a 1-process run saves its initial and trained checkpoints, a W-process run starts from the
initial one, then evaluates the 1-process trained model with the eval job's own function (each rank reads
its share of the held-out users). Rank 0 writes ``out/next-item-{world}.json``: the losses and the metrics.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist

from pyramid_mixer.embeddings.model_parallel import init_distributed
from pyramid_mixer.features.next_item import NextItemBuilder
from pyramid_mixer.features.spec import resolve_spec
from pyramid_mixer.jobs import checkpoint
from pyramid_mixer.jobs.build import build
from pyramid_mixer.jobs.config import load_config
from pyramid_mixer.jobs.data import sources
from pyramid_mixer.jobs.next_item_eval import evaluate_next_item, next_item_inputs
from tests.jobs.dist_worker import GLOBAL_BATCH, STEPS, _steps

OVERRIDES = [
    "data.spec=movielens",
    "data.split=leave_one_out",
    "model.task=next_item",
    "model.layout.levels=[{start: 0, end: 4, group: 1}, {start: 4, end: 12, group: 4}]",
    "model.tower.out_dim=16",
    "train.dense_lr=0.01",
    "train.sparse_lr=0.1",
    "eval.batch_size=4",
    "eval.sampled_negatives=5",
]


def run(rank: int, world: int, port: int, data: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    env = init_distributed()
    config = load_config(None, OVERRIDES + [f"data.path={data}", f"train.batch_size={GLOBAL_BATCH // world}",
                                            f"run_dir={out}/next-item-{world}"])
    spec = resolve_spec(config.data.spec)
    srcs = sources(config.data, spec)
    inputs = next_item_inputs(srcs, spec)
    built = build(config, spec, env)
    train = srcs["train"].files().dataset().to_table(filter=srcs["train"].row_filter).sort_by("request_id")
    builder = NextItemBuilder(spec, built.layout, dataclasses.replace(inputs, seed=0))
    root = Path(out)
    if world == 1:
        checkpoint.save(root / "next-item-init", 0, built.dmp, built.optimizer, {})
    else:
        checkpoint.load(root / "next-item-init" / "checkpoints" / "epoch-0", built.dmp, built.optimizer)
    losses = _steps(built, builder, train, rank, world, range(STEPS))
    if world == 1:
        checkpoint.save(root / "next-item-trained", 1, built.dmp, built.optimizer, {})
    else:
        checkpoint.load(root / "next-item-trained" / "checkpoints" / "epoch-1", built.dmp)
    report = evaluate_next_item(config, built.dmp, spec, env, "eval", srcs, inputs)
    if rank == 0:
        (root / f"next-item-{world}.json").write_text(json.dumps(
            {"losses": losses, "metrics": report.metrics, "users": report.users, "rows": report.rows}))
    else:
        (root / f"next-item-received-{world}.json").write_text(json.dumps(report.metrics))
    dist.destroy_process_group()
