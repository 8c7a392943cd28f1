"""docs/reliability.md points at tests that exist, and every hostile-input test has its row there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"


def _test_names_of(path: Path) -> set:
    tree = ast.parse(path.read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def test_every_row_names_a_test_that_exists() -> None:
    refs = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", DOC.read_text())
    assert len(refs) >= 30
    missing = [f"{f}::{name}" for f, name in refs if name not in _test_names_of(ROOT / f)]
    assert missing == []


def test_every_hostile_input_test_has_a_row() -> None:
    named = set(re.findall(r"`tests/jobs/test_hostile_inputs\.py::(\w+)`", DOC.read_text()))
    assert sorted(_test_names_of(ROOT / "tests" / "jobs" / "test_hostile_inputs.py") - named) == []
