"""The packages import one way only: features -> embeddings -> ranking -> jobs (docs/design.md)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["features", "embeddings", "ranking", "jobs"]


def imported_packages(path: Path) -> set:
    """The project packages a module imports (``pyramid_mixer.X...`` or a bare top-level ``X``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
        for name in names:
            parts = name.split(".")
            top = parts[1] if parts[0] == "pyramid_mixer" and len(parts) > 1 else parts[0]
            if top in ORDER:
                out.add(top)
    return out


def test_no_package_imports_a_package_after_it() -> None:
    wrong = []
    for rank, package in enumerate(ORDER):
        for path in sorted((ROOT / package).rglob("*.py")):
            later = imported_packages(path) & set(ORDER[rank + 1:])
            if later:
                wrong.append(f"{path.relative_to(ROOT)} imports {sorted(later)}")
    assert wrong == [], "data flows features -> embeddings -> ranking -> jobs:\n" + "\n".join(wrong)


def test_the_check_sees_an_import_that_goes_back(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import torch\nfrom pyramid_mixer.jobs.config import JobConfig\nif True:\n    import ranking.x\n")
    assert imported_packages(module) == {"jobs", "ranking"}
