"""The package works as a wheel: ``pip wheel .`` holds every module of the four packages and the packaged
specs and configs, and once installed (non-editable, into an empty environment) every module imports from
there and every console script answers ``--help`` with what it does, reads and writes.

The empty environment is a venv without pip whose only other path is the test environment's site-packages,
added by a ``.pth`` line, so the dependencies come from there but not this checkout's editable install (a
``.pth`` file in a directory that a ``.pth`` line adds is not read).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Dict, List

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("features", "embeddings", "ranking", "jobs")


def console_scripts() -> Dict[str, str]:
    """name -> entry point, from pyproject.toml's [project.scripts]."""
    text = (ROOT / "pyproject.toml").read_text().split("[project.scripts]")[1].split("\n[")[0]
    return dict(re.findall(r'^(pmx-[\w-]+)\s*=\s*"([^"]+)"', text, flags=re.M))


def source_files() -> List[str]:
    """The files the wheel must hold, as paths inside it: every module and the packaged YAML files."""
    out = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*")):
            relative = path.relative_to(ROOT)
            if "__pycache__" in relative.parts or not path.is_file():
                continue
            if path.suffix == ".py" or (path.suffix == ".yaml" and path.parent.name in ("specs", "configs")):
                out.append(f"pyramid_mixer/{relative.as_posix()}")
    return out


def run(args: List[str], cwd: Path, timeout: float = 600) -> str:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a copy, so that the build neither writes into the checkout nor reads its build/
    for name in PACKAGES:
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir",
         str(tmp / "dist"), str(source)], cwd=tmp)
    (wheel,) = (tmp / "dist").glob("pyramid_mixer-*.whl")
    env = tmp / "env"
    run([sys.executable, "-m", "venv", "--without-pip", str(env)], cwd=tmp)
    python = env / "bin" / "python"
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp).strip())
    (site / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", "--no-index",
         str(wheel)], cwd=tmp)
    return {"wheel": wheel, "env": env, "python": python, "site": site, "cwd": tmp}


def test_the_wheel_holds_every_module_and_packaged_file(installed: Dict[str, Path]) -> None:
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    expected = source_files()
    assert len(expected) > 60 and "pyramid_mixer/ranking/towers/baselines/attention.py" in expected
    assert [f for f in expected if f not in names] == []
    assert not [n for n in names if n.startswith(("tests/", "pyramid_mixer/tests"))]


def test_every_module_imports_from_the_installed_wheel(installed: Dict[str, Path]) -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        "seen = []\n"
        f"for top in {PACKAGES!r}:\n"
        "    package = importlib.import_module('pyramid_mixer.' + top)\n"
        "    seen.append(package)\n"
        "    for info in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
        "        seen.append(importlib.import_module(info.name))\n"
        "outside = [m.__name__ for m in seen if not m.__file__.startswith(sys.argv[1])]\n"
        "assert not outside, outside\n"
        "print(len(seen))\n"
    )
    count = int(run([str(installed["python"]), "-c", code, str(installed["site"])], cwd=installed["cwd"]))
    assert count == len([f for f in source_files() if f.endswith(".py")])


def test_every_console_script_of_the_wheel_says_what_it_reads_and_writes(installed: Dict[str, Path]) -> None:
    scripts = console_scripts()
    assert {"pmx-generate", "pmx-train", "pmx-eval", "pmx-plan", "pmx-convert", "pmx-bench-quality",
            "pmx-bench-speed", "pmx-bench-nextitem", "pmx-docs"} <= set(scripts)
    bin_dir = installed["env"] / "bin"
    procs = {name: subprocess.Popen([str(bin_dir / name), "--help"], cwd=installed["cwd"], stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True) for name in scripts}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name} --help failed:\n{out}"
        assert out.startswith(f"usage: {name}"), out[:200]
        reads = re.search(r"^reads:\s+\S", out, flags=re.M)
        writes = re.search(r"^writes:\s+\S", out, flags=re.M)
        assert reads and writes, f"{name} --help does not say what it reads and writes:\n{out}"
