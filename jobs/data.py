"""Which rows each job reads: a split by request time, or the team's own train / valid / test paths."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import pyarrow as pa
import pyarrow.compute as pc

from pyramid_mixer.embeddings.model_parallel import DistEnv
from pyramid_mixer.features.config_io import ConfigError
from pyramid_mixer.features.files import Files, resolve_files
from pyramid_mixer.features.next_item import NextItemInputs
from pyramid_mixer.features.reader import BadRowPolicy, ParquetReader, ReadOptions, time_split
from pyramid_mixer.features.spec import FeatureSpec
from pyramid_mixer.features.splits import HistoryCutoff, history_cutoffs, per_user_split
from pyramid_mixer.features.tokens import PyramidLayout
from pyramid_mixer.jobs.config import DataConfig, JobConfig


@dataclass(frozen=True)
class Source:
    """One split: its paths, its rows (a filter on them) and the bad-row policy it is read with.

    ``shared``: the paths' ``Files`` resolved once for every split of a job (``sources`` sets it), so that
    the splits, their readers and their row counts list the files and read each footer once.
    ``history_cutoff``: the split's rows read with their history cut at a time (``data.freeze_history``).
    """

    paths: Tuple[str, ...]
    row_filter: Optional[pc.Expression]
    description: str
    bad_rows: BadRowPolicy = BadRowPolicy()
    shared: Optional[Files] = dataclasses.field(default=None, compare=False, repr=False)
    history_cutoff: Optional[HistoryCutoff] = dataclasses.field(default=None, compare=False, repr=False)

    def files(self) -> Files:
        """The source's Parquet files (unreadable ones left out when the policy skips them)."""
        if self.shared is None:
            object.__setattr__(self, "shared", resolve_files(self.paths, self.bad_rows.skip_bad_files))
        return self.shared

    def reader(self, spec: FeatureSpec, layout: PyramidLayout, options: ReadOptions) -> ParquetReader:
        """A reader of this split: ``options`` with the split's row filter and bad-row policy."""
        options = dataclasses.replace(options, row_filter=self.row_filter, bad_rows=self.bad_rows,
                                      history_cutoff=self.history_cutoff)
        return ParquetReader(self.files(), spec, layout, options)


def read_options(config: JobConfig, env: DistEnv, training: bool,
                 next_item: Optional[NextItemInputs] = None) -> ReadOptions:
    """What a job's reader takes from the config: training reads ``train.batch_size`` rows a batch, shuffled
    by ``train.shuffle_rows`` with ``train.seed``; scoring reads ``eval.batch_size`` rows in file order. Both
    read this rank's share; ``Source.reader`` adds the split's rows and the config's bad-row policy.
    ``next_item``: next-item mode's catalogue; training batches carry the loss's negatives."""
    if training:
        t = config.train
        if next_item is not None:
            next_item = dataclasses.replace(next_item, negatives=config.model.next_item.batch_negatives, seed=t.seed)
        return ReadOptions(t.batch_size, shuffle_rows=t.shuffle_rows, seed=t.seed, group_rows=t.group_rows,
                           rank=env.rank, world_size=env.world_size, next_item=next_item)
    return ReadOptions(config.eval.batch_size, rank=env.rank, world_size=env.world_size, next_item=next_item)


def sources(data: DataConfig, spec: FeatureSpec) -> Dict[str, Source]:
    """``train`` and ``eval`` sources (and ``valid`` when given explicitly or by ``valid_days``), each
    reading with the config's bad-row policy.

    Explicit ``data.train`` + ``data.test`` (or ``data.valid``) win; otherwise ``data.path`` is split by
    request time, the last ``data.eval_days`` of requests being the eval set and the ``data.valid_days``
    before them, when set, the valid set.
    """
    if data.train:
        held_out = data.test or data.valid
        if not held_out:
            raise ConfigError("data.train is set: also set data.test (or data.valid) to evaluate on")
        out = {
            "train": Source(tuple(data.train), None, f"train: {list(data.train)}"),
            "eval": Source(tuple(held_out), None, f"eval: {list(held_out)}"),
        }
        if data.valid and data.test:
            out["valid"] = Source(tuple(data.valid), None, f"valid: {list(data.valid)}")
        return _with_policy(out, data)
    if data.split == "leave_one_out":
        out, files = leave_one_out(data, spec)
        return _with_policy(out, data, files)
    if data.split == "per_user":
        out, files = per_user(data, spec)
        return _with_policy(out, data, files)
    files = resolve_files([data.path], data.bad_row_policy().skip_bad_files)  # listed once for every split
    train_filter, eval_filter, cutoff = time_split(files, spec, data.eval_days)
    out = {
        "train": Source((data.path,), train_filter, f"{data.path}: {spec.request_time} <= {cutoff}"),
        "eval": Source((data.path,), eval_filter, f"{data.path}: {spec.request_time} > {cutoff} "
                                                  f"(last {data.eval_days:g} day(s))"),
    }
    if data.valid_days > 0:
        start = int(cutoff - data.valid_days * 86400)
        t = pc.field(spec.request_time)
        out["train"] = Source((data.path,), (t <= start) | t.is_null(),
                              f"{data.path}: {spec.request_time} <= {start}")
        out["valid"] = Source((data.path,), (t > start) & (t <= cutoff),
                              f"{data.path}: {start} < {spec.request_time} <= {cutoff} "
                              f"({data.valid_days:g} day(s) before the eval set)")
    return _with_policy(out, data, files)


def per_user(data: DataConfig, spec: FeatureSpec) -> Tuple[Dict[str, Source], Files]:
    """Each user's latest ``data.user_test`` rows are the eval (test) set, the ``data.user_valid`` before them
    the valid set (when not 0), the rest train (``features.splits``). With ``data.freeze_history`` the held-out
    rows read the history their user had when their window began."""
    files = resolve_files([data.path], data.bad_row_policy().skip_bad_files)
    split = per_user_split(files, spec, data.user_valid, data.user_test)
    train, valid, test = split.filters(spec.request_id)
    valid_cut, test_cut = history_cutoffs(files, spec, split) if data.freeze_history else (None, None)
    frozen = ", history as of the window's start" if data.freeze_history else ""
    c, where = split.counts, f"{data.path}: per user ({split.users:,} users) by {spec.request_time}"
    out = {
        "train": Source((data.path,), train, f"{where}, all but the latest rows ({c['train']:,} rows)"),
        "eval": Source((data.path,), test, f"{where}, the latest {data.user_test:g} ({c['test']:,} rows){frozen}",
                       history_cutoff=test_cut),
    }
    if data.user_valid > 0:
        out["valid"] = Source((data.path,), valid, f"{where}, the {data.user_valid:g} before the test rows "
                                                   f"({c['valid']:,} rows){frozen}", history_cutoff=valid_cut)
    return out, files


def leave_one_out(data: DataConfig, spec: FeatureSpec) -> Tuple[Dict[str, Source], Files]:
    """Each user's last event is the eval (test) set, the one before it the valid set, the rest train: the
    spec's ``events_after`` column is 0, 1 and >= 2."""
    column = spec.events_after
    if not column:
        raise ConfigError(f"data.split=leave_one_out reads the spec's events_after column (the user's events "
                          f"after each row), and {spec.source} names none; convert the data with "
                          "pmx-convert (it writes events_after) and set `events_after: events_after` in the spec")
    files = resolve_files([data.path], data.bad_row_policy().skip_bad_files)
    schema = files.dataset().schema
    if column not in schema.names or not pa.types.is_integer(schema.field(column).type):
        raise ConfigError(f"data.split=leave_one_out: {data.path} has no integer column {column!r} "
                          f"(the spec's events_after); its columns: {schema.names}")
    after = pc.field(column)
    return {
        # rows whose events_after is null or negative (no place in the user's sequence) train: none leaves the
        # accounting
        "train": Source((data.path,), (after >= 2) | (after < 0) | after.is_null(),
                        f"{data.path}: every user's events but the last two"),
        "valid": Source((data.path,), after == 1, f"{data.path}: every user's second-to-last event"),
        "eval": Source((data.path,), after == 0, f"{data.path}: every user's last event (leave-one-out)"),
    }, files


def _with_policy(out: Dict[str, Source], data: DataConfig, files: Optional[Files] = None) -> Dict[str, Source]:
    return {k: dataclasses.replace(v, bad_rows=data.bad_row_policy(), shared=files) for k, v in out.items()}
