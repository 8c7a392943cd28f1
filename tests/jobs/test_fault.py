"""Killed and stopped jobs resume to the model an uninterrupted run trains, bit for bit (1 CPU process).

- a run cut mid-epoch (``train.max_steps``) and rerun without the cut, in this process;
- ``pmx-train`` killed with SIGKILL mid-epoch (a subprocess), then rerun;
- ``pmx-train`` sent SIGTERM: it writes a checkpoint where it is, exits with status 143, and resumes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest
import torch

from pyramid_mixer.embeddings.model_parallel import init_distributed
from pyramid_mixer.features.spec import default_spec
from pyramid_mixer.jobs import checkpoint
from pyramid_mixer.jobs.build import build
from pyramid_mixer.jobs.config import load_config
from pyramid_mixer.jobs.stop import EXIT_STATUS
from pyramid_mixer.jobs.train import train
from tests.logs import TINY_TRAIN_OVERRIDES, random_rows, write_rows

OVERRIDES = TINY_TRAIN_OVERRIDES


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fault") / "data"
    write_rows(d / "a.parquet", random_rows(16 * 100, seed=41, max_history=20), row_group_size=40)
    return d


@pytest.fixture(scope="module")
def straight(data: Path) -> Dict[str, torch.Tensor]:
    run = data.parent / "straight"
    result = train(load_config(None, OVERRIDES + [f"data.path={data}", f"run_dir={run}"]))
    state = final_state(run)
    state["steps per epoch"] = torch.tensor(result.steps // 2)
    return state


def final_state(run: Path) -> Dict[str, torch.Tensor]:
    built = build(load_config(None, OVERRIDES), default_spec(), init_distributed())
    checkpoint.load(run / "checkpoints" / "epoch-2", built.dmp, built.optimizer)
    out = {}
    for k, v in built.dmp.state_dict().items():
        out[k] = v.local_shards()[0].tensor.clone() if hasattr(v, "local_shards") else v.clone()
    out.update({f"optim/{k}": v for k, v in _optimizer_tensors(built.optimizer.state_dict()).items()})
    return out


def _optimizer_tensors(state: object, prefix: str = "") -> Dict[str, torch.Tensor]:
    out: Dict[str, torch.Tensor] = {}
    if isinstance(state, torch.Tensor):
        out[prefix] = state.clone() if not hasattr(state, "local_shards") else state.local_shards()[0].tensor.clone()
    elif isinstance(state, dict):
        for k, v in state.items():
            out.update(_optimizer_tensors(v, f"{prefix}/{k}"))
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            out.update(_optimizer_tensors(v, f"{prefix}/{i}"))
    return out


def assert_identical(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different


def test_cut_mid_epoch_then_resumed_gives_the_uninterrupted_model(
    data: Path, straight: Dict[str, torch.Tensor], tmp_path: Path
) -> None:
    common = OVERRIDES + [f"data.path={data}", f"run_dir={tmp_path}"]
    per_epoch = int(straight["steps per epoch"])
    first = train(load_config(None, common + [f"train.max_steps={per_epoch + 6}"]))  # 6 steps into epoch 2
    assert first.epochs == 1 and checkpoint.latest(tmp_path) == tmp_path / "checkpoints" / "epoch-1-step-6"
    rest = train(load_config(None, common))
    assert rest.steps == 2 * per_epoch and rest.epochs == 1
    assert rest.read[-1]["rows_resumed_past"] == 6 * 16
    assert rest.read[-1]["rows_trained"] == rest.read[-1]["rows_used"]
    assert_identical(dict(final_state(tmp_path), **{"steps per epoch": straight["steps per epoch"]}), straight)


def launch(data: Path, run: Path, extra: List[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "pyramid_mixer.jobs.train", "--set", *OVERRIDES, f"data.path={data}",
           f"run_dir={run}", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_checkpoint(proc: subprocess.Popen, run: Path, name: str, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not (run / "checkpoints" / name / checkpoint.MANIFEST).is_file():
        if proc.poll() is not None:
            raise AssertionError(f"pmx-train ended (status {proc.returncode}) before {name}:\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {name} after {timeout}s")
        time.sleep(0.02)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_or_stopped_mid_epoch_resumes_to_the_uninterrupted_model(
    data: Path, straight: Dict[str, torch.Tensor], tmp_path: Path, sig: signal.Signals
) -> None:
    proc = launch(data, tmp_path, ["train.checkpoint_every=3"])
    wait_for_checkpoint(proc, tmp_path, "epoch-0-step-6")
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == EXIT_STATUS, out
        assert "stopped by SIGTERM" in out and "rerun the same command to resume" in out
    stopped_at = checkpoint.latest(tmp_path)
    assert stopped_at is not None and checkpoint.position(stopped_at) >= (0, 6)
    resumed = launch(data, tmp_path, ["train.checkpoint_every=3"])
    out, _ = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, out
    assert "resuming from" in out, out
    assert_identical(dict(final_state(tmp_path), **{"steps per epoch": straight["steps per epoch"]}), straight)


def torchrun(data: Path, run: Path, extra: List[str]) -> subprocess.Popen:
    cmd = [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node", "2", "-m",
           "pyramid_mixer.jobs.train", "--set", *OVERRIDES, f"data.path={data}", f"run_dir={run}",
           "eval.predictions=true", *extra]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group: SIGKILL reaches every rank


def test_two_processes_killed_mid_epoch_resume_to_the_same_eval_metrics(data: Path, tmp_path: Path) -> None:
    import json

    straight = torchrun(data, tmp_path / "straight", [])
    out, _ = straight.communicate(timeout=400)
    assert straight.returncode == 0, out
    run = tmp_path / "killed"
    proc = torchrun(data, run, ["train.checkpoint_every=3"])
    wait_for_checkpoint(proc, run, "epoch-0-step-9")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    resumed = torchrun(data, run, ["train.checkpoint_every=3"])
    out, _ = resumed.communicate(timeout=400)
    assert resumed.returncode == 0, out
    assert "resuming from" in out
    a, b = (json.loads((r / "eval.json").read_text()) for r in (tmp_path / "straight", run))
    for la, lb in zip(a["labels"], b["labels"]):
        for metric in ("auc", "uauc", "gauc", "logloss"):
            assert abs(la[metric] - lb[metric]) <= 1e-6, (la["label"], metric, la[metric], lb[metric])
