"""Package discovery for the layout of this repository: the top-level folders ``features``, ``embeddings``,
``ranking`` and ``jobs`` (and every folder found below them) install as ``pyramid_mixer.<folder>...``.

Namespace discovery, so that the data-only folders (``features/specs``, ``jobs/configs``) are packages too
and their YAML files install as their package data. Everything else (name, version, dependencies, console
scripts, which data files) is in ``pyproject.toml``; ``tests/test_wheel.py`` builds the wheel and checks
that it holds every module and packaged file.
"""

from setuptools import find_namespace_packages, setup

TOP_LEVEL = ("features", "embeddings", "ranking", "jobs")

setup(
    packages=[f"pyramid_mixer.{name}" for name in find_namespace_packages(
        include=[f"{top}*" for top in TOP_LEVEL], exclude=["*__pycache__*"])],
    package_dir={f"pyramid_mixer.{top}": top for top in TOP_LEVEL},
)
