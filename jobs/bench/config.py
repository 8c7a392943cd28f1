"""The ``bench-quality`` config: which datasets, which towers and ablations, which seeds, what search budget.

Every trial is one ``train`` job: the dataset's job config (``config``, the packaged demo config by
default) plus the dataset's overrides, the variant's overrides, one search candidate's overrides and a
seed. ``jobs/configs/bench_quality.yaml`` is the default; ``--set`` overrides it like the other jobs'.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from pyramid_mixer.features.config_io import ConfigError, load_file
from pyramid_mixer.features.datasets.registry import DATASETS
from pyramid_mixer.jobs.selection import parse_metric

DATASET_KINDS = ("planted",) + tuple(DATASETS)  # the synthetic logs, and every convertible dataset


@dataclass(frozen=True)
class Published:
    """A number published on exactly a dataset of the benchmark: shown beside the measured ones, never run.

    Args:
        model: the model as its source names it (with its loss where that matters).
        protocol: ``full`` (every item, seen items masked) or ``sampled_uniform`` (the target among 99 unseen
            items drawn uniformly): the report's protocol names.
        metrics: metric name (``HR@10``, ``NDCG@10``, ...) -> value.
        source: where the number is published.
    """

    model: str
    protocol: str
    metrics: Dict[str, float]
    source: str

    def __post_init__(self) -> None:
        if self.protocol not in ("full", "sampled_uniform"):
            raise ConfigError(f"published[{self.model}].protocol={self.protocol!r}: use full or sampled_uniform")


@dataclass(frozen=True)
class BenchDataset:
    """One dataset of the benchmark.

    Args:
        name: names the rows of the tables and the data directory (``work_dir/data/<name>``).
        kind: ``planted`` (generated from the job config's ``generate`` section), or a dataset of
            ``features.datasets.registry`` (converted from the files in ``source``, read with its packaged spec).
        config: the job config the trials start from (None: the packaged demo config).
        source: movielens: a directory with ``ml-100k.{inter,item,user}`` (empty: fetch the recbole wheel from
            PyPI into ``work_dir/data/<name>/source``); the other datasets: the directory with their files.
        overrides: job-config overrides for every trial on this dataset (``key.path=value``).
        seeds: training seeds on this dataset (the first runs the search); empty: the benchmark's ``seeds``.
            More seeds where the differences to resolve are small against the seed-to-seed spread.
        search: the search candidates on this dataset, the same for every variant; empty: the benchmark's
            ``search``.
        published: next-item benchmarks: numbers others published on exactly this data, shown beside the
            measured ones (marked as published, with their protocol).
    """

    name: str
    kind: str = field(metadata={"choices": DATASET_KINDS})
    config: Optional[str] = None
    source: str = ""
    overrides: Tuple[str, ...] = ()
    seeds: Tuple[int, ...] = ()
    search: Tuple[Tuple[str, ...], ...] = ()
    published: Tuple[Published, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in DATASET_KINDS:
            raise ConfigError(f"datasets[{self.name}].kind={self.kind!r}: use one of {list(DATASET_KINDS)}")


@dataclass(frozen=True)
class BenchVariant:
    """A tower (``role: tower``) or an ablation of the Pyramid Mixer (``role: ablation``), by overrides."""

    name: str  # names its rows in the tables
    role: str = "tower"  # tower: compared with the reference as a baseline; ablation: as a removed component
    overrides: Tuple[str, ...] = ()  # job-config overrides that make it (``model.tower_kind=din``)

    def __post_init__(self) -> None:
        if self.role not in ("tower", "ablation"):
            raise ConfigError(f"variants[{self.name}].role={self.role!r}: use tower or ablation")


@dataclass(frozen=True)
class BenchConfig:
    """The whole benchmark.

    Args:
        out_dir: where ``quality.{json,md,png}`` go.
        work_dir: data, per-trial run directories and the trial cache (a rerun skips finished trials).
        trial_cache: where the trial cache is instead (one small JSON per finished trial); empty:
            ``work_dir/trials``. A folder in the repository carries a benchmark longer than one machine's
            life across machines: commit it as trials finish, and a run elsewhere takes each trial whose
            settings and code (the package, and its own tower kind's modules) are the same.
        seeds: training seeds; the first also runs the hyperparameter search. A dataset may name its own,
            unless ``seeds`` is overridden (see ``load_bench_config``).
        search: the search budget, the same for every variant: a list of candidates, each a list of
            overrides (a dataset may name its own). Each candidate trains once (first seed) and is scored on
            the valid split; the best valid ``select`` wins and trains with the other seeds. Test metrics are
            reported for the winner.
        select: the valid metric that chooses among the search candidates, in ``train.select.metric``'s
            form (``"click AUC"``, ``"click AUC+UAUC"``: the mean of both); a trial that selects its epoch
            (``train.select.metric`` in its overrides) is scored with the epoch it chose.
        reference: the variant the ablations and baselines are compared with.
        workers: trials run at once, each a process with ``threads`` torch threads.
        threads: torch intra-op threads per trial.
        datasets / variants: what to run.
    """

    out_dir: str = "benchmarks/quality"
    work_dir: str = "runs/bench-quality"
    trial_cache: str = ""
    seeds: Tuple[int, ...] = (0, 1, 2)
    search: Tuple[Tuple[str, ...], ...] = ((),)
    select: str = "click AUC"
    reference: str = "pyramid_mixer"
    workers: int = 2
    threads: int = 1
    datasets: Tuple[BenchDataset, ...] = ()
    variants: Tuple[BenchVariant, ...] = ()
    source: str = field(default="<defaults>", compare=False)

    @property
    def trials_dir(self) -> Path:
        """The trial cache's folder: ``trial_cache``, or ``work_dir/trials``."""
        return Path(self.trial_cache) if self.trial_cache else Path(self.work_dir) / "trials"

    def __post_init__(self) -> None:
        if not self.seeds or not self.search or not self.datasets or not self.variants:
            raise ConfigError("bench config: seeds, search, datasets and variants must each have an entry")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names) or len({d.name for d in self.datasets}) != len(self.datasets):
            raise ConfigError(f"bench config: variant and dataset names must be unique, got {names}")
        if self.reference not in names:
            raise ConfigError(f"bench config: reference={self.reference!r} is not a variant; variants: {names}")
        if parse_metric(self.select).label is None:
            raise ConfigError(f"bench config: select={self.select!r}: the quality benchmark chooses on a CTR "
                              "metric ('click AUC', 'click AUC+UAUC', ...)")
        if self.workers < 1 or self.threads < 0:
            raise ConfigError(f"bench config: workers={self.workers} must be >= 1, threads={self.threads} >= 0")
        for where, seeds in [("seeds", self.seeds)] + [(f"datasets[{d.name}].seeds", d.seeds) for d in self.datasets]:
            if len(set(seeds)) != len(seeds):
                raise ConfigError(f"{where}={list(seeds)}: seeds must be distinct (a repeated seed repeats a trial)")

    def seeds_for(self, dataset: BenchDataset) -> Tuple[int, ...]:
        """The training seeds on ``dataset``: its own, else the benchmark's."""
        return dataset.seeds or self.seeds

    def search_for(self, dataset: BenchDataset) -> Tuple[Tuple[str, ...], ...]:
        """The search candidates on ``dataset``: its own, else the benchmark's."""
        return dataset.search or self.search


def default_bench_config_path() -> Path:
    return Path(str(resources.files("pyramid_mixer.jobs") / "configs" / "bench_quality.yaml"))


def load_bench_config(path: Optional[str], overrides: Optional[List[str]] = None) -> BenchConfig:
    """Reads ``path`` (None: the packaged benchmark config) and applies ``key=value`` overrides.

    An override of ``seeds`` (without one of ``datasets``) sets the seeds of every dataset: the datasets'
    own seeds in the file are dropped, so that ``--set seeds=[0]`` runs one seed everywhere.
    """
    bench = load_file(BenchConfig, Path(path) if path else default_bench_config_path(), overrides)
    keys = {o.split("=", 1)[0].strip() for o in overrides or []}
    if "seeds" in keys and "datasets" not in keys:
        bench = replace(bench, datasets=tuple(replace(d, seeds=()) for d in bench.datasets))
    return bench
