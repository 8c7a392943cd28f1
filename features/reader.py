"""Streaming Parquet reader on ``pyarrow.dataset``: bounded memory, any number of files.

Every file's schema is checked against the feature spec before the first batch. Record batches are
streamed (only the columns the spec reads), checked row by row (vectorised), re-cut into batches of exactly
``batch_size`` rows (the last one may be smaller) and turned into ``RankingBatch`` es. ``stats`` accounts
for every row: rows read = rows used + rows rejected (by reason).

Splits: ``time_split(files, spec, eval_days)`` gives the filter expressions of a split by request time (the
last ``eval_days`` of requests are the eval set); explicit paths or globs for train / valid / test work too.

Example::

    >>> reader = ParquetReader(["logs/"], default_spec(), PyramidLayout(), ReadOptions(512))  # doctest: +SKIP
    >>> for batch in reader: ...                                                            # doctest: +SKIP
    >>> reader.stats.rows_read == reader.stats.rows_used + reader.stats.rows_rejected      # doctest: +SKIP
    True
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from pyramid_mixer.features.batch import RankingBatch
from pyramid_mixer.features.files import Files, PathLike, resolve_files
from pyramid_mixer.features.kjt_builder import BatchBuilder
from pyramid_mixer.features.next_item import NextItemBuilder, NextItemInputs
from pyramid_mixer.features.schema import (
    DataError,
    check_rows,
    expected_columns,
    oracle_columns,
    validate_schema,
)
from pyramid_mixer.features.spec import FeatureSpec, default_spec  # noqa: F401  (default_spec: docstring)
from pyramid_mixer.features.splits import HistoryCutoff
from pyramid_mixer.features.tokens import PyramidLayout

BAD_ROW_ACTIONS = ("reject", "fail")


@dataclass(frozen=True)
class BadRowPolicy:
    """What a reader does with rows that fail the checks (``features.schema.check_rows``).

    Args:
        on_bad_rows: ``reject`` skips them and counts them by reason; ``fail`` stops at the first one with
            an error naming the file, the reason and the count.
        max_bad_fraction: with ``reject``, a pass whose rejected share of the rows read is above this
            fails at its end (a pipeline that writes mostly garbage should not train quietly on the rest).
        on_bad_files: ``fail``: an unreadable (truncated, corrupt) Parquet file is an error naming it;
            ``skip``: such files are left out and counted (``ReadStats.skipped_files``).
    """

    on_bad_rows: str = "reject"
    max_bad_fraction: float = 0.1
    on_bad_files: str = "fail"

    @property
    def skip_bad_files(self) -> bool:
        return self.on_bad_files == "skip"

    def __post_init__(self) -> None:
        if self.on_bad_rows not in BAD_ROW_ACTIONS:
            raise ValueError(f"on_bad_rows={self.on_bad_rows!r}: use one of {list(BAD_ROW_ACTIONS)}")
        if self.on_bad_files not in ("fail", "skip"):
            raise ValueError(f"on_bad_files={self.on_bad_files!r}: use fail or skip")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction={self.max_bad_fraction}: must be in [0, 1]")


@dataclass
class ReadStats:
    """Row accounting of one pass: rows read = rows used + rows rejected."""

    files: int = 0
    skipped_files: Tuple[Tuple[str, str], ...] = ()  # (path, reason) of unreadable files left out
    rows_read: int = 0
    rows_used: int = 0
    rejected: Counter = field(default_factory=Counter)
    batches: int = 0
    truncated: int = 0  # rows used whose history was longer than the spec's cap (cut to it, still used)
    resumed_past: int = 0  # rows used, in batches a resumed run skips (trained before it was stopped)

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejected.values())

    @property
    def rows_unconsumed(self) -> int:
        """Rows read but neither used nor rejected: only when a pass is stopped early (``max_steps``)."""
        return self.rows_read - self.rows_used - self.rows_rejected

    def as_dict(self) -> Dict[str, object]:
        return {
            "files": self.files,
            "files_skipped": [f"{path}: {why}" for path, why in self.skipped_files],
            "rows_read": self.rows_read,
            "rows_used": self.rows_used,
            "rows_rejected": self.rows_rejected,
            "rows_unconsumed": self.rows_unconsumed,
            "rejected_by_reason": dict(sorted(self.rejected.items())),
            "rows_history_truncated": self.truncated,
            "rows_resumed_past": self.resumed_past,
        }


def time_split(files: Files, spec: FeatureSpec, eval_days: float) -> Tuple[pc.Expression, pc.Expression, int]:
    """(train filter, eval filter, cutoff): eval = requests in the last ``eval_days`` before the latest one.
    ``files``: the listing the splits will read (``resolve_files``), so that its footers are read once. Rows
    with a null request time go to train, where the reader rejects and counts them: none leaves the
    accounting."""
    latest = None
    for rb in files.dataset().to_batches(columns=[spec.request_time]):
        m = pc.max(rb.column(0)).as_py()
        if m is not None:
            latest = m if latest is None else max(latest, m)
    if latest is None:
        raise DataError(f"{files}: no rows with a request time; cannot split by time")
    cutoff = int(latest - eval_days * 86400)
    t = pc.field(spec.request_time)
    return (t <= cutoff) | t.is_null(), t > cutoff, cutoff


def share(dataset: ds.Dataset, rank: int, world_size: int) -> List[ds.ParquetFileFragment]:
    """This rank's row groups, in file order: all row groups dealt to ranks, balanced by rows.

    Deterministic for a file list, so every rank computes the same split without talking to the others.
    A rank may get no row group when the data has fewer row groups than there are ranks.
    """
    groups = [g for f in dataset.get_fragments() for g in f.split_by_row_group()]
    if world_size == 1:
        return groups
    rows = [g.row_groups[0].num_rows for g in groups]
    load = [0] * world_size
    mine = []
    for i in sorted(range(len(groups)), key=lambda i: (-rows[i], i)):
        r = min(range(world_size), key=lambda k: (load[k], k))
        load[r] += rows[i]
        if r == rank:
            mine.append(i)
    return [groups[i] for i in sorted(mine)]


@dataclass(frozen=True)
class ReadOptions:
    """How a ``ParquetReader`` reads: batch size, rows, order, this rank's share and the bad-row policy.

    A job builds it from its config (``jobs.data.read_options``); tests build it directly.

    Args:
        batch_size: rows per batch (the last batch of a pass may be smaller).
        row_filter: a ``pyarrow.compute`` expression selecting rows (e.g. one side of ``time_split``).
        shuffle_rows: 0 reads in file order (eval). Otherwise each pass visits the row groups in a random
            order and shuffles rows within a buffer of this many rows (training: logs are usually
            written grouped by user or time, and batches of one user's consecutive rows train badly).
        seed: the shuffle of pass ``n`` is drawn from ``(seed, n)``, so a run's data order is reproducible.
        group_rows: with a shuffle, rows of one group (the spec's ``group_key``, the user) travel in chunks of
            up to this many: each buffer's rows are drawn at random within their group, cut into chunks, and the
            chunks shuffled. A batch then holds pairs of one user's rows from different times, which a
            within-group loss compares (``ranking.ctr.model.GroupLossConfig``); 1: rows are shuffled singly.
        rank, world_size: this process's share of the data: the row groups of all files are dealt to the
            ranks, largest first to the rank with the fewest rows so far (balanced by rows), so that across
            ranks every row is read exactly once per pass.
        bad_rows: reject-and-count or fail, the rejected share above which a pass fails, and whether
            unreadable files are skipped (when the reader lists the files itself).
        next_item: next-item mode: each batch is a ``NextItemBatch`` carrying these candidates (None: CTR
            batches).
        history_cutoff: rows whose history is cut at a time (``features.splits.HistoryCutoff``; the per-user
            split's held-out rows with ``data.freeze_history``); None: every row's history as logged.

    Example::

        >>> ReadOptions(512, shuffle_rows=4096, rank=1, world_size=2).world_size
        2
    """

    batch_size: int
    row_filter: Optional[pc.Expression] = field(default=None, compare=False)
    shuffle_rows: int = 0
    seed: int = 0
    group_rows: int = 1
    rank: int = 0
    world_size: int = 1
    bad_rows: BadRowPolicy = BadRowPolicy()
    next_item: Optional[NextItemInputs] = field(default=None, compare=False)
    history_cutoff: Optional[HistoryCutoff] = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, world_size={self.world_size})")
        if self.shuffle_rows < 0:
            raise ValueError(f"shuffle_rows must be >= 0 (0: file order), got {self.shuffle_rows}")
        if self.group_rows < 1:
            raise ValueError(f"group_rows must be >= 1 (1: rows shuffled singly), got {self.group_rows}")


class ParquetReader:
    """Iterates ``RankingBatch`` es over Parquet files; re-iterable (one pass per ``iter``).

    Args:
        paths: files, directories or globs, or ``Files`` already resolved (whose dataset the reader shares).
        spec: the feature spec (column roles, tables, hashing).
        layout: the pyramid token layout.
        options: batch size, row filter, shuffling, this rank's share and the bad-row policy.
    """

    def __init__(
        self, paths: Union[Sequence[PathLike], Files], spec: FeatureSpec, layout: PyramidLayout, options: ReadOptions
    ) -> None:
        self.files = paths if isinstance(paths, Files) else resolve_files(paths, options.bad_rows.skip_bad_files)
        self.spec = spec
        self.options = options
        self.passes = 0
        self.skip_batches = 0  # the next pass skips this many batches (the steps a resumed run already took)
        self.pass_complete = False  # True once a pass has yielded its last batch
        self.builder = (BatchBuilder(spec, layout) if options.next_item is None
                        else NextItemBuilder(spec, layout, options.next_item))
        self.dataset = self.files.dataset()
        for fragment in self.dataset.get_fragments():  # Files.dataset() has read (and checked) every footer
            validate_schema(fragment.physical_schema, spec, fragment.path)
        columns = [c for c, _, _, _ in expected_columns(spec)]
        columns += list(oracle_columns(spec, self.dataset.schema).values())
        self.columns = columns
        self.groups = share(self.dataset, options.rank, options.world_size)
        self.stats = ReadStats(files=len(self.files), skipped_files=self.files.skipped)

    def _scan(self, rng: Optional[np.random.Generator]) -> Iterator[Tuple[str, pa.RecordBatch]]:
        """(file, record batch) over this rank's row groups; a corrupt row group is an error naming its file."""
        order = rng.permutation(len(self.groups)) if rng is not None else range(len(self.groups))
        for i in order:
            group = self.groups[i]
            try:
                batches = group.to_batches(columns=self.columns, filter=self.options.row_filter,
                                           batch_size=self.options.batch_size)
                for rb in batches:
                    yield group.path, rb
            except (pa.ArrowInvalid, OSError) as e:
                why = " ".join(str(e).split())
                raise DataError(f"{group.path}: row group {group.row_groups[0].id} cannot be read ({why}); the "
                                "file is corrupt: rewrite it, or leave it out of the data paths") from e

    def _checked(self, rng: Optional[np.random.Generator]) -> Iterator[pa.Table]:
        """Scanned rows that pass the row checks; the rest are counted by reason (or fail the pass)."""
        cap = self.spec.sequence.max_length
        time_column = self.spec.sequence.time_column
        for path, rb in self._scan(rng):
            if rb.num_rows == 0:
                continue
            self.stats.rows_read += rb.num_rows
            table = pa.Table.from_batches([rb])
            check = check_rows(table, self.spec)
            if check.rejected and self.options.bad_rows.on_bad_rows == "fail":
                raise DataError(f"{path}: bad rows {dict(check.rejected)} in a batch of {rb.num_rows} "
                                "(data.on_bad_rows=fail); fix the data, or set data.on_bad_rows=reject to skip "
                                "and count them")
            self.stats.rejected.update(check.rejected)
            if not check.ok.all():
                table = table.filter(pa.array(check.ok))
            if self.options.history_cutoff is not None:
                table = self.options.history_cutoff.apply(table, self.spec)
            lengths = pc.list_value_length(table.column(time_column))
            self.stats.truncated += pc.sum(pc.greater(lengths, cap)).as_py() or 0
            yield table

    def _shuffled(self, tables: Iterator[pa.Table], rng: np.random.Generator) -> Iterator[pa.Table]:
        """Rows shuffled within buffers of ``shuffle_rows`` (in chunks of one group with ``group_rows``)."""
        buffer: List[pa.Table] = []
        rows = 0
        for table in tables:
            buffer.append(table)
            rows += table.num_rows
            if rows >= self.options.shuffle_rows:
                merged = pa.concat_tables(buffer)
                yield merged.take(pa.array(self._order(merged, rng)))
                buffer, rows = [], 0
        if rows:
            merged = pa.concat_tables(buffer)
            yield merged.take(pa.array(self._order(merged, rng)))

    def _order(self, table: pa.Table, rng: np.random.Generator) -> np.ndarray:
        """A random order of ``table``'s rows; with ``group_rows > 1``, one group's rows in chunks of that many."""
        n, k = table.num_rows, self.options.group_rows
        if k == 1:
            return rng.permutation(n)
        group = pc.fill_null(table.column(self.spec.group_key), 0).to_numpy()
        order = np.lexsort((rng.random(n), group))  # by group, at random within it
        sorted_group = group[order]
        start = np.ones(n, dtype=bool)
        start[1:] = sorted_group[1:] != sorted_group[:-1]
        first = np.maximum.accumulate(np.where(start, np.arange(n), 0))  # each row's group's first position
        chunk_start = start | ((np.arange(n) - first) % k == 0)
        chunk = np.cumsum(chunk_start) - 1  # chunk id of each sorted position
        rank = rng.permutation(int(chunk[-1]) + 1)[chunk]
        return order[np.argsort(rank, kind="stable")]

    def _rebatched(self, tables: Iterator[pa.Table]) -> Iterator[pa.Table]:
        """Tables re-cut into exactly ``batch_size`` rows (the last may be smaller)."""
        pending: List[pa.RecordBatch] = []
        pending_rows = 0
        for table in tables:
            pending.extend(table.to_batches())
            pending_rows += table.num_rows
            while pending_rows >= self.options.batch_size:
                merged = pa.Table.from_batches(pending)
                yield merged.slice(0, self.options.batch_size)
                rest = merged.slice(self.options.batch_size)
                pending, pending_rows = rest.to_batches(), rest.num_rows
        if pending_rows:
            yield pa.Table.from_batches(pending)

    def sample_batch(self) -> RankingBatch:
        """One usable row of the split, from any share, as a batch; not counted in ``stats``.

        What a rank whose share is exhausted (or empty) feeds the collective ops with zero weight while
        the other ranks finish theirs.
        """
        for rb in self.dataset.to_batches(columns=self.columns, filter=self.options.row_filter, batch_size=256):
            table = pa.Table.from_batches([rb])
            ok = check_rows(table, self.spec).ok
            if ok.any():
                return self.builder.build(table.filter(pa.array(ok)).slice(0, 1))
        raise DataError(f"{self.files}: no usable row in this split")

    def __iter__(self) -> Iterator[RankingBatch]:
        self.stats = ReadStats(files=len(self.files), skipped_files=self.files.skipped)
        rng = np.random.default_rng([self.options.seed, self.passes]) if self.options.shuffle_rows else None
        self.passes += 1
        tables = self._checked(rng)
        if rng is not None:
            tables = self._shuffled(tables, rng)
        self.pass_complete = False
        skip, self.skip_batches = self.skip_batches, 0  # for this pass only
        for table in self._rebatched(tables):
            self.stats.rows_used += table.num_rows
            self.stats.batches += 1
            if skip:  # a resumed run: this batch was trained before the stop; same order, not built again
                skip -= 1
                self.stats.resumed_past += table.num_rows
                continue
            yield self.builder.build(table)
        stats = self.stats
        assert stats.rows_read == stats.rows_used + stats.rows_rejected, stats
        self.pass_complete = True
        if stats.rows_rejected > self.options.bad_rows.max_bad_fraction * stats.rows_read:
            raise DataError(
                f"{self.files}: {stats.rows_rejected} of {stats.rows_read} rows read were rejected "
                f"({stats.rows_rejected / stats.rows_read:.1%} > data.max_bad_fraction="
                f"{self.options.bad_rows.max_bad_fraction:g}): {dict(sorted(stats.rejected.items()))}. Fix the data, "
                "or raise data.max_bad_fraction if these rows are expected"
            )
