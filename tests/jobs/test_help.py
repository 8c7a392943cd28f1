"""Every console script answers ``--help`` with what it does, what it reads and what it writes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def console_scripts() -> dict:
    """name -> entry point, from pyproject.toml's [project.scripts]."""
    text = (ROOT / "pyproject.toml").read_text().split("[project.scripts]")[1].split("\n[")[0]
    return dict(re.findall(r'^(pmx-[\w-]+)\s*=\s*"([^"]+)"', text, flags=re.M))


def test_every_console_script_says_what_it_reads_and_writes() -> None:
    scripts = console_scripts()
    assert {"pmx-generate", "pmx-train", "pmx-eval", "pmx-plan", "pmx-convert", "pmx-bench-quality",
            "pmx-bench-speed", "pmx-docs"} <= set(scripts)
    bin_dir = Path(sys.executable).parent
    procs = {name: subprocess.Popen([str(bin_dir / name), "--help"], stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True) for name in scripts}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name} --help failed:\n{out}"
        assert out.startswith(f"usage: {name}"), out[:200]
        reads = re.search(r"^reads:\s+\S", out, flags=re.M)
        writes = re.search(r"^writes:\s+\S", out, flags=re.M)
        assert reads and writes, f"{name} --help does not say what it reads and writes:\n{out}"
