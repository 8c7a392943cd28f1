"""One config file for every job: data, generator, model, training and evaluation sections.

Loaded strictly (an unknown key is an error naming it and the file) and overridable from the command
line with ``--set section.key=value`` (values parsed as YAML). ``jobs/configs/demo.yaml`` is the default.

Example::

    >>> cfg = load_config(None, ["train.epochs=2", "model.tower.fusion=sum"])
    >>> cfg.train.epochs, cfg.model.tower.fusion
    (2, 'sum')
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from pyramid_mixer.embeddings.model_parallel import ScheduleConfig, ShardingConfig
from pyramid_mixer.features.config_io import ConfigError, load_file
from pyramid_mixer.features.datasets.synthetic import SyntheticConfig
from pyramid_mixer.features.reader import BadRowPolicy
from pyramid_mixer.features.spec import FeatureSpec
from pyramid_mixer.features.splits import check_share
from pyramid_mixer.features.tokens import PyramidLayout, single_level
from pyramid_mixer.jobs.selection import SelectConfig
from pyramid_mixer.ranking.ctr.model import GroupLossConfig, OverArchConfig
from pyramid_mixer.ranking.encoder import TOWER_PRECISIONS
from pyramid_mixer.ranking.next_item.model import NEEDS_CANDIDATE, NextItemConfig
from pyramid_mixer.ranking.towers import TOWER_KINDS
from pyramid_mixer.ranking.towers.baselines.config import BaselineConfig
from pyramid_mixer.ranking.towers.pyramid_mixer import PyramidMixerConfig

SPLITS = ("time", "per_user", "leave_one_out")
TASKS = ("ctr", "next_item")


@dataclass(frozen=True)
class DataConfig:
    """Where the logs are and how they split.

    ``split: per_user`` (what ranking teams evaluate on): each user's own latest rows are held out, the last
    ``user_test`` of them the test set and the ``user_valid`` before those the valid set, the rest train
    (``features.splits``); every user is in every split, so UAUC ranks each user's own next items.

    ``split: leave_one_out`` (next-item mode, the sequential-recommendation protocol): each user's last event
    is the test set, the one before it the valid set, the rest train, read from the spec's ``events_after``
    column; ``eval_days`` and ``valid_days`` are then not used.

    Otherwise, with ``train``/``valid``/``test`` empty, ``path`` is split by request time: the last ``eval_days`` of
    requests are the eval set, and with ``valid_days > 0`` the ``valid_days`` before them are a validation
    set (for choosing hyperparameters) that training does not read. Explicit paths or globs (a team's own
    split) take precedence.

    Args:
        path: the logs: Parquet files, directories or globs, local or any URI pyarrow opens (``s3://``,
            ``gs://``, ``hdfs://``); split by request time unless ``train`` is set.
        spec: the feature spec YAML naming each column's role (``default``: the packaged Douyin-style spec).
        eval_days: the last ``eval_days`` days of requests are the eval (test) set.
        valid_days: the days before the eval set that form the valid set (0: no valid set).
        train / valid / test: a team's own split, as lists of paths or globs; ``train`` needs ``test`` (or
            ``valid``) too, and then ``path`` and the day counts are not used.
        split: ``time`` (the last days are held out), ``per_user`` (each user's latest rows are held out) or
            ``leave_one_out`` (each user's last events are held out; needs the spec's ``events_after`` column).
        user_test / user_valid: ``split: per_user``: each user's rows held out as the test / valid set: a share
            in (0, 1) of the user's rows, rounded up, or a whole count >= 1 (``user_valid: 0``: no valid set).
        freeze_history: ``split: per_user``: score each held-out row with the history its user had when the
            row's window (valid or test) began, as a feed ranks one request's candidates. As logged (false),
            a held-out row's history holds the labels of the user's earlier held-out rows, and UAUC then marks
            down every model that reads recent feedback (``features.splits``).
    """

    path: str = "data/douyin"
    spec: str = "default"
    split: str = "time"
    eval_days: float = 1.0
    valid_days: float = 0.0
    user_test: float = 0.1
    user_valid: float = 0.1
    freeze_history: bool = False
    on_bad_rows: str = "reject"  # reject: skip and count by reason; fail: stop at the first bad row
    max_bad_fraction: float = 0.1  # reject: a pass with a larger rejected share of its rows fails
    on_bad_files: str = "fail"  # fail: an unreadable Parquet file is an error; skip: left out and counted
    prefetch: int = 2  # batches built ahead by a background thread (0: built in the training thread)

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"data.split={self.split!r}: use one of {list(SPLITS)}")
        for name in ("user_test", "user_valid"):
            try:
                check_share(f"data.{name}", getattr(self, name))
            except ValueError as e:
                raise ConfigError(str(e)) from None
        if self.user_test == 0:
            raise ConfigError("data.user_test=0: the per-user split needs a test set (a share in (0, 1) or a count)")
        if self.freeze_history and self.split != "per_user":
            raise ConfigError(f"data.freeze_history=true freezes the held-out rows' histories of data.split=per_user; "
                              f"data.split is {self.split!r}: set data.split=per_user or leave freeze_history false")
        if not self.valid_days >= 0 or not self.eval_days > 0:
            raise ConfigError(f"data.eval_days={self.eval_days:g} must be > 0 and data.valid_days="
                              f"{self.valid_days:g} >= 0")
        if self.prefetch < 0:
            raise ConfigError(f"data.prefetch={self.prefetch}: batches read ahead must be >= 0 (0: none)")
        try:
            self.bad_row_policy()
        except ValueError as e:
            raise ConfigError(f"data.{e}") from None

    def bad_row_policy(self) -> BadRowPolicy:
        return BadRowPolicy(self.on_bad_rows, self.max_bad_fraction, self.on_bad_files)
    train: Tuple[str, ...] = ()
    valid: Tuple[str, ...] = ()
    test: Tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelConfig:
    """``tower_kind`` picks the interaction tower (``pyramid_mixer`` or a baseline, see ``ranking.towers``);
    ``tower`` configures the Pyramid Mixer and ``baseline`` the others. Their token counts, feature counts,
    dims and target features are derived from the layout and the spec. ``levels: 1`` is the pyramid
    ablation (one level at full resolution, same token count); baselines read the layout as given.

    ``task: next_item`` makes the tower a user encoder scored against every item of the item table
    (``ranking.next_item``): the Pyramid Mixer's readout then uses its learned query (``tower.target_aware``
    is derived: off), and there is no over arch.

    Args:
        task: ``ctr`` (a candidate per row, one logit per label) or ``next_item`` (the user's next item out
            of the whole catalogue).
        next_item: next-item mode's loss and negatives.
        layout: which history behaviours pool into which token of which level (the embedding reads).
        levels: 0 keeps the layout's levels; 1 is the pyramid ablation (one level at full resolution over
            as many behaviours as the layout has tokens).
        tower_kind: the interaction tower: ``pyramid_mixer`` or a baseline (``ranking.towers``).
        tower: the Pyramid Mixer's widths and ablation switches (read when ``tower_kind: pyramid_mixer``).
        baseline: the baseline towers' widths (read by the other tower kinds).
        over_arch: the MLP from the tower's output and the request features to one logit per label.
        sharding: planner hints: allowed sharding types and kernels, per table.
    """

    task: str = field(default="ctr", metadata={"choices": TASKS})
    next_item: NextItemConfig = field(default_factory=NextItemConfig)
    layout: PyramidLayout = field(default_factory=PyramidLayout)
    levels: int = 0
    tower_kind: str = field(default="pyramid_mixer", metadata={"choices": TOWER_KINDS})
    tower: PyramidMixerConfig = field(default_factory=PyramidMixerConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)

    def __post_init__(self) -> None:
        if self.tower_kind not in TOWER_KINDS:
            raise ConfigError(f"model.tower_kind={self.tower_kind!r} is unknown; use one of {list(TOWER_KINDS)}")
        if self.tower_precision not in TOWER_PRECISIONS:
            raise ConfigError(f"model.tower_precision={self.tower_precision!r}: use one of {list(TOWER_PRECISIONS)}")
        if self.task not in TASKS:
            raise ConfigError(f"model.task={self.task!r}: use one of {list(TASKS)}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.dropout={self.dropout}: the share of input values zeroed, in [0, 1) "
                              "(0: none)")
        if self.task == "next_item" and self.tower_kind in NEEDS_CANDIDATE:
            raise ConfigError(f"model.tower_kind={self.tower_kind!r} reads the candidate and has no candidate-free "
                              f"form; with model.task=next_item use one of "
                              f"{[t for t in TOWER_KINDS if t not in NEEDS_CANDIDATE]}")
    over_arch: OverArchConfig = field(default_factory=OverArchConfig)
    group_loss: GroupLossConfig = field(default_factory=GroupLossConfig)  # a within-user ranking loss beside BCE
    sharding: ShardingConfig = field(default_factory=ShardingConfig)
    # torch.compile the tower (inductor): on this project's 2-core CPU the Pyramid Mixer's tower runs ~1.2x
    # faster (~10 % off a training step at 2,336 behaviours), after a one-off compile of a minute or more per
    # batch shape (the last, shorter batch and eval batches compile once more); same results to rounding
    compile_tower: bool = False
    # layer-norm each history token and the candidate before the tower (every tower reads the same scale)
    input_norm: bool = True
    # fp32, or bf16: the tower under bf16 autocast (weights and optimizer state stay fp32). On this project's
    # CPU it is no faster (its small matmuls and norms gain nothing from bf16) and the planted logs' AUC stays
    # within seed noise (benchmarks/speed/README.md); it is meant for GPUs.
    tower_precision: str = field(default="fp32", metadata={"choices": TOWER_PRECISIONS})
    # while training, zero this share of the tower's input values (each history token's features and the
    # candidate's, after the norm) and scale the rest up; the same for every tower kind. The published
    # sequential models use 0.5 on Amazon Beauty; there 0.25 is a small lever (benchmarks/nextitem/beauty)
    dropout: float = 0.0

    def effective_layout(self) -> PyramidLayout:
        if self.levels in (0, len(self.layout.levels)):
            return self.layout
        if self.levels == 1:
            return single_level(self.layout.num_slots)
        raise ConfigError(f"model.levels={self.levels}: use 0 (the layout's levels) or 1 (the ablation)")

    def derived(self, spec: FeatureSpec) -> Dict[str, Dict[str, Any]]:
        """The fields of ``tower`` and ``baseline`` that the layout and the spec set (a value for them in a
        config file is ignored): token counts, features per token, width, candidate features."""
        layout = self.effective_layout()
        shapes = dict(num_features=spec.num_token_features, dim=spec.sequence_dim,
                      num_target_features=len(spec.target))
        tower = dict(shapes, level_tokens=layout.level_tokens)
        if self.task == "next_item":
            tower["target_aware"] = False  # no candidate: the readout's learned query
        return {"tower": tower,
                "baseline": dict(shapes, num_tokens=layout.num_slots, candidate_free=self.task == "next_item")}

    def baseline_config(self, spec: FeatureSpec) -> BaselineConfig:
        return dataclasses.replace(self.baseline, **self.derived(spec)["baseline"])

    def tower_config(self, spec: FeatureSpec) -> PyramidMixerConfig:
        return dataclasses.replace(self.tower, **self.derived(spec)["tower"])


@dataclass(frozen=True)
class TrainConfig:
    """How the model trains: the dense parts with Adam (``dense_lr``), the embedding tables with fbgemm's
    fused row-wise Adagrad inside the backward (``sparse_lr``)."""

    epochs: int = 1  # passes over the train split (from the second on, the id embeddings memorise rows)
    batch_size: int = 512  # rows per step on each process (the global batch is batch_size x processes)
    dense_lr: float = 1e-3  # learning rate of the tower and the over arch (Adam)
    sparse_lr: float = 0.05  # learning rate of the embedding tables (fused row-wise Adagrad)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)  # learning-rate warmup and step decay
    seed: int = 0  # initial weights and the data order
    shuffle_rows: int = 32768  # rows shuffled together (row groups are visited in random order too)
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    max_steps: int = 0  # 0: no limit (a quick look at a big dataset)
    pipeline: bool = True  # TorchRec's TrainPipelineSparseDist; false: a plain loop (same results)
    checkpoint: bool = True  # at every epoch end, every checkpoint_every steps, and on SIGTERM
    checkpoint_every: int = 0  # steps between mid-epoch checkpoints; 0: epoch ends (and SIGTERM) only
    # rows of one user (the spec's group_key) shuffled in chunks of up to this many, so that a batch holds
    # pairs of one user's rows for model.group_loss; 1: rows shuffled singly
    group_rows: int = 1

    def __post_init__(self) -> None:
        at_least("train", self, {"epochs": (1, "train at least one epoch"), "batch_size": (1, "rows per step"),
                                 "shuffle_rows": (0, "0: file order"), "threads": (0, "0: torch's default"),
                                 "max_steps": (0, "0: no limit"), "checkpoint_every": (0, "0: epoch ends only"),
                                 "group_rows": (1, "1: rows shuffled singly")})
        for name in ("dense_lr", "sparse_lr"):
            value = getattr(self, name)
            if not 0 <= value < float("inf"):
                raise ConfigError(f"train.{name}={value}: a learning rate must be a number >= 0 (0: those "
                                  "weights stay as initialised)")
    select: SelectConfig = field(default_factory=SelectConfig)  # best-epoch selection on the valid split


@dataclass(frozen=True)
class EvalConfig:
    """What ``pmx-eval`` and the end of ``pmx-train`` score, and how."""

    batch_size: int = 2048  # rows per scoring step on each process
    predictions: bool = False  # also write per-row predictions to Parquet
    splits: Tuple[str, ...] = ("eval",)  # what train scores at the end: eval (= test) and/or valid
    ks: Tuple[int, ...] = (10, 20)  # next-item mode: the cut-offs K of HR@K, NDCG@K and MRR@K
    sampled_negatives: int = 100  # next-item mode: negatives of the sampled protocols (uniform, popularity)

    def __post_init__(self) -> None:
        at_least("eval", self, {"batch_size": (1, "rows per scoring step")})
        unknown = [s for s in self.splits if s not in ("eval", "valid")]
        if unknown or not self.splits:
            raise ConfigError(f"eval.splits={list(self.splits)}: use one or both of eval, valid")
        if not self.ks or min(self.ks) < 1 or self.sampled_negatives < 1:
            raise ConfigError(f"eval.ks={list(self.ks)} must be cut-offs >= 1 and eval.sampled_negatives="
                              f"{self.sampled_negatives} >= 1")


@dataclass(frozen=True)
class JobConfig:
    """One config file for every job (``pmx-generate``, ``pmx-train``, ``pmx-eval``, ``pmx-plan``).

    Args:
        run_dir: where a job writes its checkpoints, reports and TensorBoard scalars.
        data: where the logs are, how they split, what a bad row or file gets.
        generate: what ``pmx-generate`` writes (the synthetic Douyin-style logs).
        model: the tower, its widths and switches, the over arch and the sharding hints.
        train: epochs, batch, learning rates, schedule, checkpoints.
        eval: what is scored and how.
    """

    run_dir: str = "runs/demo"
    data: DataConfig = field(default_factory=DataConfig)
    generate: SyntheticConfig = field(default_factory=SyntheticConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    source: str = field(default="<defaults>", compare=False)


def at_least(section: str, obj: Any, minimums: Dict[str, Tuple[int, str]]) -> None:
    """A ``ConfigError`` for the first field of ``obj`` below its minimum, naming it and what its values
    mean."""
    for name, (low, meaning) in minimums.items():
        value = getattr(obj, name)
        if value < low:
            raise ConfigError(f"{section}.{name}={value}: must be >= {low} ({meaning})")


def default_config_path() -> Path:
    return Path(str(resources.files("pyramid_mixer.jobs") / "configs" / "demo.yaml"))


def load_config(path: Optional[str], overrides: Optional[List[str]] = None) -> JobConfig:
    """Reads ``path`` (None: the packaged demo config; the name of a packaged config that is not a file here,
    such as ``next_item``: that config), applies ``key.path=value`` overrides."""
    if not path:
        return load_file(JobConfig, default_config_path(), overrides)
    packaged = default_config_path().with_name(f"{path}.yaml") if "/" not in path else None
    if packaged is not None and not Path(path).exists() and packaged.is_file():
        return load_file(JobConfig, packaged, overrides)
    return load_file(JobConfig, Path(path), overrides)
