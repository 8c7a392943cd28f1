"""torchx components: the AppDef they build, torchx's own dry run, and (slow) a real 2-process launch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyramid_mixer.jobs import components

ROOT = Path(__file__).resolve().parents[2]
TORCHX = str(Path(sys.executable).with_name("torchx"))


def test_train_component_wraps_ddp_with_our_entry_point() -> None:
    app = components.train("--set", "train.epochs=2", j="1x2")
    (role,) = app.roles
    assert app.name == "pmx-train" and role.num_replicas == 1
    cmd = " ".join(role.args)
    assert role.entrypoint == "bash" and cmd.startswith("-c torchrun ")
    assert "--nproc_per_node 2" in cmd and "-m pyramid_mixer.jobs.train" in cmd and "train.epochs=2" in cmd
    assert "pyramid_mixer.jobs.eval" in " ".join(components.evaluate(j="2x4").roles[0].args)
    with pytest.raises(ValueError, match="NNODESxNPROC_PER_NODE"):
        components.train(j="2")


def test_torchx_dry_run_parses_the_component() -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    out = subprocess.run(
        [TORCHX, "run", "--dryrun", "-s", "local_cwd", "jobs/components.py:train", "-j", "1x2", "--",
         "--set", "train.epochs=1", "run_dir=runs/x"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )
    assert "pyramid_mixer.jobs.train" in out.stdout + out.stderr


@pytest.mark.slow  # tests/jobs/test_distributed.py covers 2-process training in the default run
def test_torchx_trains_on_two_processes(tmp_path: Path) -> None:
    from pyramid_mixer.jobs.config import load_config
    from pyramid_mixer.jobs.generate import run as generate

    data = tmp_path / "data"
    generate(load_config(None, [f"data.path={data}", "generate.rows=8000", "generate.users=400"]))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    proc = subprocess.run(
        [TORCHX, "run", "-s", "local_cwd", "jobs/components.py:train", "-j", "1x2", "--", "--set",
         f"data.path={data}", f"run_dir={tmp_path / 'run'}", "train.threads=1", "train.batch_size=256"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "click: AUC" in proc.stdout + proc.stderr
    assert (tmp_path / "run" / "eval.json").is_file()
