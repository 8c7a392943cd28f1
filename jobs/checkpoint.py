"""Checkpoints with ``torch.distributed.checkpoint``: sharded tables, fused and dense optimizer states.

A checkpoint is a directory ``run_dir/checkpoints/epoch-{n}`` (after ``n`` complete epochs) or
``epoch-{n}-step-{k}`` (``k`` steps into epoch ``n + 1``), written under a temporary name and renamed
when every rank has finished (then a ``MANIFEST.json`` is written last), so a directory without a manifest
is never loaded. The manifest lists every file with its size and SHA-1; ``latest`` returns the newest
checkpoint that matches its manifest and warns about each newer one that does not (partial, truncated or
corrupt), so a resume falls back to the previous good checkpoint. The manifest guards against accidents,
not against whoever hands over a checkpoint (they bring its manifest too): what keeps a crafted checkpoint
from running code is ``jobs.safe_checkpoint``, which reads DCP's pickled metadata and values without
building anything but plain data.

What a resume needs besides the weights and optimizer states (the learning-rate schedule's position is
part of the optimizer state): the data position is the epoch and the steps into it (epoch ``e`` reads in
the order drawn from ``(train.seed, e - 1)``; a resume skips the steps already taken), and each rank's
torch RNG state is kept in ``rng-{rank}.pt`` (a tensor, loaded
with ``weights_only=True``), restored when the world size is the same. Training draws no random numbers
after the model is built today (no dropout), so the RNG state is there for the parts that will.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.api import CheckpointException
from torch.optim import Optimizer

from pyramid_mixer.jobs.safe_checkpoint import CheckpointError, failure_causes, read_state

MANIFEST = "MANIFEST.json"
BEST = "best"  # the model best-epoch selection chose (jobs.selection)
LOW_SPACE = 64 << 20  # bytes free below which a failed write is taken for a full disk
log = logging.getLogger(__name__)


def _state(model: nn.Module, optimizer: Optimizer) -> Dict[str, Any]:
    return {"model": model.state_dict(), "optim": optimizer.state_dict()}


def name(epoch: int, step: int = 0) -> str:
    """``epoch-{epoch}`` after ``epoch`` complete epochs; ``epoch-{epoch}-step-{step}`` mid-epoch."""
    return f"epoch-{epoch}" if step == 0 else f"epoch-{epoch}-step-{step}"


def position(path: Path) -> Tuple[int, int]:
    """(complete epochs, steps into the next) of a checkpoint directory, from its name."""
    parts = Path(path).name.split("-")
    return int(parts[1]), int(parts[3]) if len(parts) == 4 else 0


def save(run_dir: Path, epoch: int, model: nn.Module, optimizer: Optimizer, meta: Dict[str, Any],
         step: int = 0) -> Path:
    """Writes ``name(epoch, step)`` atomically (temporary directory, rename, manifest last); then removes
    mid-epoch checkpoints older than the newest two (epoch ends are kept)."""
    root = Path(run_dir) / "checkpoints"
    final = _write(root / name(epoch, step), _state(model, optimizer), dict(meta, epoch=epoch, epoch_steps=step))
    if _rank() == 0:
        mid = sorted((p for p in root.glob("epoch-*-step-*") if p.is_dir()), key=position)
        for old in mid[:-2]:
            shutil.rmtree(old, ignore_errors=True)
    if dist.is_initialized():
        dist.barrier()
    return final


def save_best(run_dir: Path, model: nn.Module, meta: Dict[str, Any]) -> Path:
    """Writes the model alone (no optimizer state: it is only scored) to ``run_dir/checkpoints/best``,
    atomically, replacing the best before; ``latest`` never resumes from it."""
    return _write(Path(run_dir) / "checkpoints" / BEST, {"model": model.state_dict()}, meta)


def best(run_dir: Path) -> Optional[Path]:
    """``run_dir/checkpoints/best`` when it matches its manifest, else None."""
    path = Path(run_dir) / "checkpoints" / BEST
    return path if path.is_dir() and problem(path) is None else None


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _write(final: Path, state: Dict[str, Any], meta: Dict[str, Any]) -> Path:
    """``state`` written with DCP to a temporary directory renamed to ``final`` once every rank is done, each
    rank's RNG state beside it, and the manifest (``meta`` + every file's size and SHA-1) last."""
    tmp = final.parent / f".{final.name}.tmp"
    rank = _rank()
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    if dist.is_initialized():
        dist.barrier()
    try:
        dcp.save(state, checkpoint_id=str(tmp))
        torch.save(torch.get_rng_state(), tmp / f"rng-{rank}.pt")
    except Exception as e:
        shutil.rmtree(tmp, ignore_errors=True)  # a half-written checkpoint would only fill the disk further
        if not isinstance(e, OSError) and shutil.disk_usage(final.parent).free < LOW_SPACE:
            # torch's writers report a full disk as a bare position mismatch ("unexpected pos ...")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(final.parent)) from e
        raise
    if dist.is_initialized():
        dist.barrier()
    if rank == 0:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        world = dist.get_world_size() if dist.is_initialized() else 1
        files = {p.name: _fingerprint(p) for p in sorted(final.iterdir()) if p.is_file()}
        manifest = dict(meta, world_size=world, files=files)
        (final / f".{MANIFEST}.tmp").write_text(json.dumps(manifest, indent=2))
        os.replace(final / f".{MANIFEST}.tmp", final / MANIFEST)
    if dist.is_initialized():
        dist.barrier()
    return final


def _fingerprint(path: Path) -> Dict[str, Any]:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return {"bytes": path.stat().st_size, "sha1": h.hexdigest()}


def problem(path: Path) -> Optional[str]:
    """Why checkpoint ``path`` cannot be used (no or unreadable manifest, a file missing, truncated or
    changed), or None when every file matches its manifest."""
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text())
    except FileNotFoundError:
        return f"no {MANIFEST} (the job stopped while writing it)"
    except (OSError, ValueError) as e:
        return f"{MANIFEST} is unreadable ({e})"
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or ".metadata" not in files:
        return f"{MANIFEST} lists no .metadata (not a checkpoint this project wrote)"
    unlisted = sorted(p.name for p in Path(path).iterdir() if p.is_file() and p.name != MANIFEST
                      and p.name not in files)
    if unlisted:
        return f"{', '.join(unlisted)} not in its {MANIFEST}"
    for name, want in files.items():
        f = Path(path) / name
        if not f.is_file():
            return f"{name} is missing"
        got = _fingerprint(f)
        if got != want:
            return f"{name} is damaged ({got['bytes']} bytes, expected {want['bytes']}; SHA-1 differs)"
    return None


def latest(run_dir: Path) -> Optional[Path]:
    """The newest checkpoint that matches its manifest, or None; warns about each newer unusable one."""
    root = Path(run_dir) / "checkpoints"
    found = sorted((p for p in root.glob("epoch-*") if p.is_dir()), key=position, reverse=True)
    for path in found:
        why = problem(path)
        if why is None:
            return path
        log.warning("checkpoint %s is not usable: %s; trying the previous one", path, why)
    return None


def read_manifest(path: Path) -> Dict[str, Any]:
    """The manifest of checkpoint ``path`` once every file matches it (``FileNotFoundError`` saying why
    not otherwise)."""
    why = problem(path)
    if why is not None:
        raise FileNotFoundError(f"{path}: not a usable checkpoint: {why}; train first or pick another")
    return json.loads((Path(path) / MANIFEST).read_text())


def load(path: Path, model: nn.Module, optimizer: Optional[Optimizer] = None,
         manifest: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Loads model (and optimizer) state in place, resharding as needed; returns the manifest.
    ``manifest``: the one ``read_manifest`` just returned (its files are not hashed again); None: read here.

    Raises:
        FileNotFoundError: the checkpoint does not match its manifest.
        CheckpointError: it holds more than plain data, or tensors that do not fit ``model`` (another spec or
            widths).
    """
    manifest = manifest if manifest is not None else read_manifest(path)
    state: Dict[str, Any] = {"model": model.state_dict()}
    if optimizer is not None:
        state["optim"] = optimizer.state_dict()
    try:
        read_state(state, Path(path))
    except CheckpointException as e:  # a key or a shape the model does not have
        raise CheckpointError(f"{path}: does not fit this model ({_first_failure(e)}); it was trained with "
                              "another spec or other widths: load it with the config it was trained with") from None
    model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optim"])
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if manifest.get("world_size") == world and (Path(path) / f"rng-{rank}.pt").is_file():
        torch.set_rng_state(torch.load(Path(path) / f"rng-{rank}.pt", weights_only=True))
    return manifest


def _first_failure(e: CheckpointException) -> str:
    """The first rank's exception of a DCP failure, in one line."""
    for cause in failure_causes(e):
        return " ".join(str(cause).split())[:300] or type(cause).__name__
    return "no detail"
