"""The feature spec: which Parquet column plays which role, and which embedding table each id feature uses.

A team whose logs use other column names writes a spec YAML, not code. The default spec
(``specs/douyin.yaml``) describes Douyin-style impression logs: one row per video shown to a user in a
request, with the user's behaviour sequence (most recent first) as list columns of equal length.

Roles:
- keys and time: ``request_id``, ``user_id``, ``request_time`` (unix seconds), and the UAUC ``group_key``;
- ``sparse``: single- or multi-valued id features of the request (user, candidate item, context), each
  with its table and hashing;
- ``dense``: float features, each with a transform;
- ``labels``: one binary task each, with its loss weight and, where the data has it, the column holding the
  true probability (synthetic logs), so reports print the oracle AUC;
- ``sequence``: the behaviour history, lists of equal length per row, most recent first: the id fields
  (each with its table), and the time field from which the bucketised time gap to the request is derived;
- ``target``: the sparse features of the candidate that query the history; each must use the same table as
  the sequence field at the same position (the candidate item and the history items share a table).

Hashing of an id into a table of ``n`` rows: ``modulo`` (``id mod n``; ids must be non-negative) or
``hash`` (SplitMix64 of the id, then ``mod n``; any int64, collisions spread evenly).

Managed collisions (a table with ``managed_collision: true``): its ids are not reduced to ``n`` rows by the
reader; they reach the model in the id space ``[0, 2^63 - 1)`` (``modulo``: the id itself; ``hash``:
SplitMix64 of the id, ``mod 2^63 - 1``), and TorchRec's ``MCHManagedCollisionModule`` (LFU eviction) maps
them to rows: every id seen in training gets a row of its own while the table has free rows; when it is
full, the least frequently seen ids give theirs up to new ones every ``eviction_interval`` training
steps. An id without a row (never seen in training, or evicted) reads the table's last row. The mapping is
model state: it is checkpointed and frozen in eval.

Example::

    >>> spec = default_spec()
    >>> [f.name for f in spec.sequence.fields]
    ['hist_item', 'hist_author', 'hist_category', 'hist_action']
    >>> spec.table('t_item').num_embeddings > 0
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

from pyramid_mixer.features.config_io import ConfigError, from_dict, read_yaml

HASHINGS = ("modulo", "hash")
DENSE_TRANSFORMS = ("none", "log1p")


@dataclass(frozen=True)
class TableSpec:
    """One embedding table. All tables used by the behaviour sequence share the same ``dim``.

    Rows start uniform in ``[-init_scale, init_scale]``. Not TorchRec's default ``sqrt(1 / rows)``: for a
    large table that is nearly zero, and the mixer's LayerNorms then see noise at a tiny scale.

    ``managed_collision``: ids get rows from TorchRec's managed-collision module instead of hashing (see the
    module docstring); ``eviction_interval``: training steps between its evictions (1: every step, which
    keeps a mid-epoch resume exact; a checkpoint between two evictions forgets the ids counted since the
    last one).

    Args:
        name: the table's name (``t_item``); features refer to it, and sharding hints are keyed by it.
        num_embeddings: rows; ids are hashed to them (or given rows by the managed-collision module).
        dim: the width of a row; every table the behaviour sequence uses has the same ``dim``.
        init_scale: rows start uniform in ``[-init_scale, init_scale]``.
        managed_collision: ids get rows from TorchRec's managed-collision module (LFU eviction) instead of
            hashing; one process only.
        eviction_interval: managed tables: training steps between evictions.
    """

    name: str
    num_embeddings: int
    dim: int = 16
    init_scale: float = 0.05
    managed_collision: bool = False
    eviction_interval: int = 1


@dataclass(frozen=True)
class SparseFeature:
    """An id feature of the request. ``multi_valued`` columns are ``list<int64>`` (e.g. item tags).

    Args:
        name: the feature's name (its key in the batches); ``target`` names candidate features by it.
        column: the Parquet column: ``int64``, or ``list<int64>`` when multi-valued.
        table: the table its ids read.
        multi_valued: a list of ids per row, mean-pooled (an empty list is a zero vector).
        hashing: ``modulo`` (``id mod rows``; ids must be >= 0) or ``hash`` (SplitMix64; any int64).
    """

    name: str
    column: str
    table: str
    multi_valued: bool = False
    hashing: str = "modulo"


@dataclass(frozen=True)
class DenseFeature:
    """A float feature of the request, fed to the over arch."""

    column: str  # the Parquet column: a number per row (null or non-finite: the row is rejected)
    transform: str = "none"  # none, or log1p: log(1 + max(x, 0)), for counts and durations


@dataclass(frozen=True)
class LabelSpec:
    """One binary task: one logit and one BCE term of the loss."""

    name: str  # names the task in reports (AUC per label)
    column: str  # the Parquet column: 0 or 1 (bool or a number; null or non-finite: the row is rejected)
    weight: float = 1.0  # the task's weight in the summed loss
    oracle_column: Optional[str] = None  # the true probability, where the logs have it: reports the oracle AUC


@dataclass(frozen=True)
class SequenceField:
    """One per-behaviour id field: a ``list<int64>`` column and its table."""

    name: str  # the field's name; each token of it is one pooled bag (``hist_item@L1.t7``)
    column: str  # the Parquet column: ``list<int64>``, most recent first, as long as the time column's list
    table: str  # the table its ids read (the candidate's feature at the same position in ``target`` shares it)
    hashing: str = "modulo"  # as for sparse features


@dataclass(frozen=True)
class SequenceSpec:
    """The behaviour history: parallel list columns, most recent first, of equal length in each row."""

    fields: Tuple[SequenceField, ...]  # the per-behaviour id fields (item, author, category, action...)
    time_column: str = "hist_time"  # ``list<int64>`` unix seconds of each behaviour, none after the request
    time_gap_table: str = "t_time_gap"  # the table of the log-scale bucket of (request time - behaviour time)
    max_length: int = 2336  # longer histories are cut to the most recent max_length (counted, still used)


@dataclass(frozen=True)
class FeatureSpec:
    """Which Parquet column plays which role (see the module docstring), loaded strictly from YAML.

    Args:
        tables: the embedding tables, one ``EmbeddingBagConfig`` each.
        sparse: the request's id features (user, candidate item, author, context...).
        labels: the binary tasks, one logit each.
        sequence: the behaviour history's list columns.
        dense: the request's float features.
        target: the candidate's sparse features that query the history, in the order of the sequence
            fields whose tables they share.
        request_id / user_id / request_time: the key columns (``request_time`` in unix seconds; it splits
            the logs by time and gives the behaviours' time gaps).
        group_key: the column whose groups UAUC and GAUC average over (usually the user).
        events_after: next-item data: the int column counting the user's events after this row's (0: the
            user's last event, 1: the one before it), written by the converters; ``data.split: leave_one_out``
            reads it (test: 0, valid: 1, train: the rest). Empty: no such column.
    """

    tables: Tuple[TableSpec, ...]
    sparse: Tuple[SparseFeature, ...]
    labels: Tuple[LabelSpec, ...]
    sequence: SequenceSpec
    dense: Tuple[DenseFeature, ...] = ()
    target: Tuple[str, ...] = ("item", "author")
    request_id: str = "request_id"
    user_id: str = "user_id"
    request_time: str = "request_time"
    group_key: str = "user_id"
    events_after: str = ""
    source: str = field(default="<dataclass>", compare=False)

    def __post_init__(self) -> None:
        validate_spec(self)

    def table(self, name: str) -> TableSpec:
        for t in self.tables:
            if t.name == name:
                return t
        raise ConfigError(f"{self.source}: no table named {name!r}; tables: {[t.name for t in self.tables]}")

    @property
    def label_names(self) -> Tuple[str, ...]:
        return tuple(label.name for label in self.labels)

    @property
    def sequence_dim(self) -> int:
        return self.table(self.sequence.fields[0].table).dim

    @property
    def num_token_features(self) -> int:
        """F: per-behaviour features of a token: the sequence id fields plus the time-gap bucket."""
        return len(self.sequence.fields) + 1

    def sparse_feature(self, name: str) -> SparseFeature:
        for f in self.sparse:
            if f.name == name:
                return f
        raise ConfigError(f"{self.source}: no sparse feature named {name!r}")


def validate_spec(spec: FeatureSpec) -> None:
    """Checks the spec is self-consistent; each error names the spec file and the offending entry."""
    where = spec.source
    table_names = [t.name for t in spec.tables]
    if len(set(table_names)) != len(table_names):
        raise ConfigError(f"{where}: table names must be unique, found {table_names}")
    tables = {t.name: t for t in spec.tables}
    for t in spec.tables:
        if t.num_embeddings <= 0 or t.dim <= 0 or t.init_scale <= 0:
            raise ConfigError(f"{where}: table {t.name!r} needs num_embeddings > 0, dim > 0 and init_scale > 0")
        if t.managed_collision and (t.num_embeddings < 2 or t.eviction_interval < 1):
            raise ConfigError(
                f"{where}: managed-collision table {t.name!r} needs num_embeddings >= 2 (the last row is for ids "
                f"without a row) and eviction_interval >= 1; found {t.num_embeddings} and {t.eviction_interval}"
            )
    names = [f.name for f in spec.sparse] + [f.name for f in spec.sequence.fields]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: feature names must be unique across sparse and sequence, found {names}")
    for f in list(spec.sparse) + list(spec.sequence.fields):
        if f.table not in tables:
            raise ConfigError(
                f"{where}: feature {f.name!r} uses table {f.table!r}, which is not declared; "
                f"declared tables: {table_names}"
            )
        if f.hashing not in HASHINGS:
            raise ConfigError(f"{where}: feature {f.name!r} has hashing {f.hashing!r}; use one of {HASHINGS}")
    for d in spec.dense:
        if d.transform not in DENSE_TRANSFORMS:
            raise ConfigError(
                f"{where}: dense column {d.column!r} has transform {d.transform!r}; use one of {DENSE_TRANSFORMS}"
            )
    if not spec.labels:
        raise ConfigError(f"{where}: at least one label is required")
    label_names = [lab.name for lab in spec.labels]
    twice = sorted({n for n in label_names if label_names.count(n) > 1})
    if twice:
        raise ConfigError(f"{where}: label names must be unique, and {twice} is given more than once; each "
                          "label is scored and reported under its name")
    if spec.sequence.max_length < 1:
        raise ConfigError(f"{where}: sequence.max_length={spec.sequence.max_length}: the history cap must be >= 1 "
                          "(the behaviours kept per row)")
    if not spec.sequence.fields:
        raise ConfigError(f"{where}: the sequence needs at least one id field")
    if spec.sequence.time_gap_table not in tables:
        raise ConfigError(f"{where}: sequence.time_gap_table {spec.sequence.time_gap_table!r} is not declared")
    if tables[spec.sequence.time_gap_table].managed_collision:
        raise ConfigError(
            f"{where}: time-gap table {spec.sequence.time_gap_table!r} holds bucket numbers, not ids: "
            "set managed_collision: false for it"
        )
    seq_tables = [f.table for f in spec.sequence.fields] + [spec.sequence.time_gap_table]
    dims = {tables[t].dim for t in seq_tables}
    if len(dims) != 1:
        raise ConfigError(f"{where}: all sequence tables {seq_tables} must share one dim, found {sorted(dims)}")
    sparse_by_name = {f.name: f for f in spec.sparse}
    if len(spec.target) > len(spec.sequence.fields):
        raise ConfigError(f"{where}: target has more features than the sequence has fields")
    for i, name in enumerate(spec.target):
        if name not in sparse_by_name:
            raise ConfigError(f"{where}: target feature {name!r} is not a sparse feature")
        if sparse_by_name[name].table != spec.sequence.fields[i].table:
            raise ConfigError(
                f"{where}: target feature {name!r} uses table {sparse_by_name[name].table!r} but sequence "
                f"field {spec.sequence.fields[i].name!r} uses {spec.sequence.fields[i].table!r}; the candidate "
                f"and the history must share a table, in the same order"
            )
        if sparse_by_name[name].multi_valued:
            raise ConfigError(f"{where}: target feature {name!r} must be single-valued")


def load_spec(path: Union[str, Path]) -> FeatureSpec:
    """Loads a spec YAML strictly (unknown keys are errors) and validates it."""
    data = read_yaml(path)
    data = dict(data, source=str(Path(path).resolve()))
    return from_dict(FeatureSpec, data, where=str(path))


def default_spec_path() -> Path:
    return Path(str(resources.files("pyramid_mixer.features") / "specs" / "douyin.yaml"))


def default_spec() -> FeatureSpec:
    """The Douyin-style schema of the design (and of the synthetic generator)."""
    return load_spec(default_spec_path())


def resolve_spec(path: Optional[str]) -> FeatureSpec:
    """``None`` or ``"default"`` gives the default spec; the name of a packaged spec (``douyin``,
    ``movielens``) that is not a file here gives that spec; anything else is a path to a spec YAML."""
    if path in (None, "", "default"):
        return default_spec()
    packaged = default_spec_path().with_name(f"{path}.yaml") if "/" not in path else None
    if packaged is not None and not Path(path).exists() and packaged.is_file():
        return load_spec(packaged)
    return load_spec(path)


def tables_by_name(spec: FeatureSpec) -> Dict[str, TableSpec]:
    return {t.name: t for t in spec.tables}
