"""Package discovery for the layout of this repository: the top-level folders ``features``, ``embeddings``,
``ranking`` and ``jobs`` (and every subpackage found below them) install as ``pyramid_mixer.<folder>...``.

Everything else (name, version, dependencies, console scripts, package data) is in ``pyproject.toml``;
``tests/jobs/test_wheel.py`` builds the wheel and checks that it holds every module.
"""

from setuptools import find_packages, setup

TOP_LEVEL = ("features", "embeddings", "ranking", "jobs")

setup(
    packages=[f"pyramid_mixer.{name}" for name in find_packages(include=[f"{top}*" for top in TOP_LEVEL])],
    package_dir={f"pyramid_mixer.{top}": top for top in TOP_LEVEL},
)
