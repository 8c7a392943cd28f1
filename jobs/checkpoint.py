"""Checkpoints with ``torch.distributed.checkpoint``: sharded tables, fused and dense optimizer states.

A checkpoint is a directory ``run_dir/checkpoints/epoch-{n}``, written under a temporary name and renamed
when every rank has finished (then a ``MANIFEST.json`` is written last), so a directory without a manifest
is never loaded. DCP reads no pickled code; ``latest`` ignores incomplete checkpoints.

What a resume needs besides the weights and optimizer states (the learning-rate schedule's position is
part of the optimizer state): the data position is the epoch (epoch ``e`` reads in the order drawn from
``(train.seed, e - 1)``), and each rank's torch RNG state is kept in ``rng-{rank}.pt`` (a tensor, loaded
with ``weights_only=True``), restored when the world size is the same. Training draws no random numbers
after the model is built today (no dropout), so the RNG state is there for the parts that will.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.optim import Optimizer

MANIFEST = "MANIFEST.json"


def _state(model: nn.Module, optimizer: Optimizer) -> Dict[str, Any]:
    return {"model": model.state_dict(), "optim": optimizer.state_dict()}


def save(run_dir: Path, epoch: int, model: nn.Module, optimizer: Optimizer, meta: Dict[str, Any]) -> Path:
    """Writes ``epoch-{epoch}`` atomically (temporary directory, rename, manifest last)."""
    root = Path(run_dir) / "checkpoints"
    final = root / f"epoch-{epoch}"
    tmp = root / f".epoch-{epoch}.tmp"
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    if dist.is_initialized():
        dist.barrier()
    dcp.save(_state(model, optimizer), checkpoint_id=str(tmp))
    torch.save(torch.get_rng_state(), tmp / f"rng-{rank}.pt")
    if dist.is_initialized():
        dist.barrier()
    if rank == 0:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        world = dist.get_world_size() if dist.is_initialized() else 1
        (final / MANIFEST).write_text(json.dumps(dict(meta, epoch=epoch, world_size=world), indent=2))
    if dist.is_initialized():
        dist.barrier()
    return final


def latest(run_dir: Path) -> Optional[Path]:
    """The newest complete checkpoint (one with a manifest), or None."""
    root = Path(run_dir) / "checkpoints"
    done = [p for p in root.glob("epoch-*") if (p / MANIFEST).is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1])) if done else None


def load(path: Path, model: nn.Module, optimizer: Optional[Optimizer] = None) -> Dict[str, Any]:
    """Loads model (and optimizer) state in place, resharding as needed; returns the manifest."""
    manifest_path = Path(path) / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{path}: not a complete checkpoint (no {MANIFEST}); train first or pick another")
    state: Dict[str, Any] = {"model": model.state_dict()}
    if optimizer is not None:
        state["optim"] = optimizer.state_dict()
    dcp.load(state, checkpoint_id=str(path))
    model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optim"])
    manifest = json.loads(manifest_path.read_text())
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if manifest.get("world_size") == world and (Path(path) / f"rng-{rank}.pt").is_file():
        torch.set_rng_state(torch.load(Path(path) / f"rng-{rank}.pt", weights_only=True))
    return manifest
