"""Every docstring example of the package runs, so the examples cannot rot: the modules are discovered (not
listed), and a module whose source holds an example (one not marked ``+SKIP``) must run at least one."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
from typing import List

import pytest

PACKAGES = ("features", "embeddings", "ranking", "jobs")


def package_modules() -> List[str]:
    """Every module of the four packages, subpackages included."""
    names = []
    for top in PACKAGES:
        package = importlib.import_module(f"pyramid_mixer.{top}")
        names.append(package.__name__)
        names += [info.name for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    return names


MODULES = package_modules()


def runs_examples(name: str) -> bool:
    """Whether the module's source holds an example line that doctest is not told to skip."""
    lines = inspect.getsource(importlib.import_module(name)).splitlines()
    return any(">>> " in line and "doctest: +SKIP" not in line for line in lines)


WITH_EXAMPLES = [name for name in MODULES if runs_examples(name)]


def test_discovery_sees_the_subpackages_and_the_examples() -> None:
    assert "pyramid_mixer.ranking.towers.baselines.attention" in MODULES
    assert "pyramid_mixer.ranking.towers.pyramid_mixer" in WITH_EXAMPLES and len(WITH_EXAMPLES) >= 25


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has an example that doctest does not find (not in a docstring?)"
    assert result.failed == 0
