"""The ``bench-speed`` config and its cases: which towers, which history lengths, which pyramid layouts.

A case is one model: a tower over a layout (the token slots the embedding bags fill). Baselines read the
most recent ``L`` behaviours at full resolution (one level, ``L`` tokens), for every ``L`` of ``lengths``.
The Pyramid Mixer reads each layout of ``pyramids`` (e.g. 32 + 256 + 2,048 behaviours in 96 tokens), and
the mean-pooling tower reads the same layouts too: the same embedding reads with a near-zero tower, the
limit the pyramid is held against. ``jobs/configs/bench_speed.yaml`` is the default.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from pyramid_mixer.features.config_io import ConfigError, load_file
from pyramid_mixer.features.tokens import LevelSpec, PyramidLayout
from pyramid_mixer.ranking.encoder import TOWER_PRECISIONS
from pyramid_mixer.ranking.towers import TOWER_KINDS


@dataclass(frozen=True)
class SpeedCase:
    """One measured model: ``tower`` over ``layout``; ``name`` labels its rows and its line in the chart."""

    name: str
    tower: str
    layout: PyramidLayout
    batch_size: int = 512

    @property
    def behaviours(self) -> int:
        return self.layout.coverage

    @property
    def tokens(self) -> int:
        return self.layout.num_slots


@dataclass(frozen=True)
class SpeedConfig:
    """The whole speed benchmark.

    Args:
        out_dir: where ``speed.{json,md,png}`` go.
        spec: the feature spec (``default``: the packaged Douyin-style spec, its table sizes and dim).
        batch_size: rows per training and eval step.
        threads: torch intra-op threads of every measurement (the matmul peak is measured with as many).
        warmup: untimed steps before the timed ones.
        repeats: timed steps per measurement (the median is reported); fewer when ``max_seconds`` runs out,
            never fewer than 3.
        max_seconds: time budget of one measurement's timed steps.
        towers: the baselines (and ``pyramid_mixer``) to run over ``lengths``.
        lengths: history lengths the baselines read at full resolution.
        pyramids: the Pyramid Mixer's layouts (the mean-pooling tower runs over each too).
        matmul_size: n of the ``n X n @ n X n`` product that measures the machine's matmul peak.
        case_batch: smaller batches for cases that cannot run at ``batch_size`` here, by ``"name@behaviours"``
            (e.g. ``sasrec@2048``: its attention mask alone is ``B X 2048 X 2048`` floats, 8.6 GB at 512 rows);
            examples/s is per example, and the report names each case's batch.
        loader_rows: rows of the Parquet file the loader is timed on (histories as long as the largest layout).
        isolate: one fresh process per case, so that its peak memory (RSS) is its own; False runs every case
            in this process (faster; the smoke test) and reports this process's peak.
        tower_precision: ``fp32``, or ``bf16`` to train and evaluate every full model with its tower under bf16
            autocast (``model.tower_precision``); the tower alone is timed both ways regardless.
    """

    out_dir: str = "benchmarks/speed"
    spec: str = "default"
    batch_size: int = 512
    threads: int = 1
    warmup: int = 2
    repeats: int = 7
    max_seconds: float = 30.0
    towers: Tuple[str, ...] = ("mean", "din", "sasrec", "gru", "mixer", "mlp4rec")
    lengths: Tuple[int, ...] = (32, 128, 512, 2048)
    pyramids: Tuple[PyramidLayout, ...] = ()
    case_batch: Dict[str, int] = field(default_factory=dict)
    matmul_size: int = 2048
    loader_rows: int = 4096
    isolate: bool = True
    tower_precision: str = "fp32"
    source: str = field(default="<defaults>", compare=False)

    def __post_init__(self) -> None:
        unknown = [t for t in self.towers if t not in TOWER_KINDS]
        if unknown:
            raise ConfigError(f"bench-speed config: towers {unknown} are unknown; use some of {list(TOWER_KINDS)}")
        if not self.pyramids:
            raise ConfigError("bench-speed config: pyramids needs at least one layout")
        for name in ("batch_size", "repeats", "matmul_size", "loader_rows"):
            if getattr(self, name) < 1:
                raise ConfigError(f"bench-speed config: {name}={getattr(self, name)} must be >= 1")
        unknown_cases = set(self.case_batch) - {f"{c.name}@{c.behaviours}" for c in self.cases()}
        if unknown_cases or min(self.case_batch.values(), default=1) < 1:
            raise ConfigError(f"bench-speed config: case_batch {self.case_batch}: {sorted(unknown_cases)} name no "
                              "case, or a batch is < 1; keys are name@behaviours, e.g. sasrec@2048")
        if self.tower_precision not in TOWER_PRECISIONS:
            raise ConfigError(f"bench-speed config: tower_precision={self.tower_precision!r}: use one of "
                              f"{list(TOWER_PRECISIONS)}")
        if self.warmup < 0 or self.threads < 1 or min(self.lengths, default=1) < 1:
            raise ConfigError("bench-speed config: warmup >= 0, threads >= 1 and lengths >= 1 are required")

    def cases(self) -> List[SpeedCase]:
        """Baselines over each length, then the pyramid and mean pooling over each pyramid layout."""
        out = [
            SpeedCase(t, t, PyramidLayout(levels=(LevelSpec(0, n, 1),)))
            for t in self.towers
            if t != "pyramid_mixer"
            for n in self.lengths
        ]
        for layout in self.pyramids:
            out.append(SpeedCase("pyramid_mixer", "pyramid_mixer", layout))
            out.append(SpeedCase("mean (pyramid layout)", "mean", layout))
        return [replace(c, batch_size=self.case_batch.get(f"{c.name}@{c.behaviours}", self.batch_size)) for c in out]

    @property
    def largest(self) -> PyramidLayout:
        return max(self.pyramids, key=lambda lay: lay.coverage)

    @property
    def smallest(self) -> PyramidLayout:
        return min(self.pyramids, key=lambda lay: lay.coverage)


def default_speed_config_path() -> Path:
    return Path(str(resources.files("pyramid_mixer.jobs") / "configs" / "bench_speed.yaml"))


def load_speed_config(path: Optional[str], overrides: Optional[List[str]] = None) -> SpeedConfig:
    """Reads ``path`` (None: the packaged config) and applies ``key=value`` overrides."""
    return load_file(SpeedConfig, Path(path) if path else default_speed_config_path(), overrides)
