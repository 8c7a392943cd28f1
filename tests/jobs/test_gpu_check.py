"""``benchmarks/speed/gpu_check.sh``, the GPU path's one script, checked on a CPU: every step runs, logs and
reports; a failing step is counted, not hidden. (On a GPU it installs the CUDA build first.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "speed" / "gpu_check.sh"
TINY = """
batch_size: 8
tower_precision: bf16
warmup: 1
repeats: 3
max_seconds: 5
towers: [mean]
lengths: [4]
pyramids:
  - levels: [{start: 0, end: 2, group: 1}, {start: 2, end: 6, group: 2}]
matmul_size: 64
loader_rows: 32
isolate: false
"""


def _run(tmp_path: Path, tests: str) -> subprocess.CompletedProcess:
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    env = dict(os.environ, PYTHON=sys.executable, PMX_SKIP_INSTALL="1", PMX_ALLOW_CPU="1", PMX_TESTS=tests,
               PMX_BENCH_CONFIG=str(config))
    return subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], env=env, capture_output=True, text=True,
                          timeout=600)


def test_the_script_runs_every_step_and_writes_the_bench_report(tmp_path: Path) -> None:
    done = _run(tmp_path, "-rs tests/jobs/test_tower_precision.py -k gpu_path")
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "out"
    summary = (out / "summary.txt").read_text()
    assert [line.split(":")[0] for line in summary.splitlines()] == ["gpu", "tests", "bench"]
    assert "FAILED" not in summary
    assert "SKIPPED [1]" in (out / "tests.log").read_text()  # the GPU test, on this CPU
    data = json.loads((out / "speed.json").read_text())
    assert data["tower_precision"] == "bf16" and data["batch_size"] == 8
    assert "towers in bf16" in (out / "speed.md").read_text()


def test_a_failing_step_is_reported_and_counted(tmp_path: Path) -> None:
    done = _run(tmp_path, "tests/no_such_file.py")
    assert done.returncode == 1
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert "tests: FAILED" in summary and "bench: ok" in summary


@pytest.mark.parametrize("path", ["requirements/gpu.txt", "requirements/torchrec.txt", "requirements/test.txt"])
def test_what_the_install_step_reads_exists(path: str) -> None:
    assert (ROOT / path).is_file()
