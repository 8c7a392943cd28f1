"""The pyramid token layout: which history behaviours fall into which token slot of which level.

Level k covers history positions ``[start, end)`` (most recent first) and groups ``group`` consecutive
behaviours into one token, so it has ``(end - start) // group`` tokens. Each token of each sequence field
is one KeyedJaggedTensor feature (``hist_item@L1.t7``) whose bag holds the ids of its group; the
embedding kernel pools the bag (mean), so no per-behaviour embedding is ever materialised. An empty bag
is a padded token.

With ``mode: age`` the levels are windows by the behaviour's age instead of positions: level k takes the
behaviours with age in ``[windows_hours[k-1], windows_hours[k])`` (0 for the first), and within the window
the j-th most recent goes to token ``j // group`` while that is below the level's token count.

Example::

    >>> layout = PyramidLayout()
    >>> layout.level_tokens, layout.coverage
    ((32, 32, 32), 2336)
    >>> slot_of_position(layout, np.array([0, 31, 32, 40, 287, 288, 2335, 2336]))
    array([ 0, 31, 32, 33, 63, 64, 95, -1])
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from pyramid_mixer.features.config_io import ConfigError

MODES = ("position", "age")


@dataclass(frozen=True)
class LevelSpec:
    """One level of the pyramid.

    Args:
        start / end: the history positions ``[start, end)`` it covers, most recent first (mode ``position``).
        group: behaviours pooled into one token; the level has ``(end - start) // group`` tokens.
    """

    start: int
    end: int
    group: int

    @property
    def tokens(self) -> int:
        return (self.end - self.start) // self.group


@dataclass(frozen=True)
class PyramidLayout:
    """Short / middle / long periods by default: 32 tokens each over 2,336 behaviours.

    Args:
        levels: short first; with mode ``position`` each starts where the one before ends.
        mode: ``position`` (levels are ranges of history positions) or ``age`` (windows of behaviour age).
        windows_hours: mode ``age`` only: each level's window end in hours, increasing (the first starts at 0).
    """

    levels: Tuple[LevelSpec, ...] = (LevelSpec(0, 32, 1), LevelSpec(32, 288, 8), LevelSpec(288, 2336, 64))
    mode: str = "position"
    windows_hours: Tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.levels:
            raise ConfigError("pyramid layout: at least one level is required")
        if self.mode not in MODES:
            raise ConfigError(f"pyramid layout: mode {self.mode!r}; use one of {MODES}")
        prev_end = 0
        for i, lv in enumerate(self.levels):
            if lv.group < 1 or lv.end <= lv.start or (lv.end - lv.start) % lv.group:
                raise ConfigError(
                    f"pyramid layout: level {i} [{lv.start}, {lv.end}) with group {lv.group}: "
                    f"the span must be a positive multiple of the group"
                )
            if self.mode == "position" and lv.start != prev_end:
                raise ConfigError(
                    f"pyramid layout: level {i} starts at {lv.start}, expected {prev_end} (levels must be contiguous)"
                )
            prev_end = lv.end
        if self.mode == "age":
            w = self.windows_hours
            if len(w) != len(self.levels) or any(b <= a for a, b in zip((0.0,) + tuple(w), w)):
                raise ConfigError(
                    f"pyramid layout: mode 'age' needs one increasing window end per level "
                    f"(windows_hours), got {list(w)} for {len(self.levels)} levels"
                )

    @property
    def level_tokens(self) -> Tuple[int, ...]:
        return tuple(lv.tokens for lv in self.levels)

    @property
    def num_slots(self) -> int:
        return sum(self.level_tokens)

    @property
    def coverage(self) -> int:
        """Behaviours the layout can read (position mode); the history is truncated to this."""
        return sum(lv.tokens * lv.group for lv in self.levels)

    def slot_names(self) -> List[str]:
        """``L{level}.t{token}`` for every slot, in slot order (short level first)."""
        return [f"L{k}.t{t}" for k, lv in enumerate(self.levels) for t in range(lv.tokens)]


def single_level(total_tokens: int) -> PyramidLayout:
    """The ``levels=1`` ablation: one level at full resolution over the most recent behaviours."""
    return PyramidLayout(levels=(LevelSpec(0, total_tokens, 1),))


def slot_of_position(layout: PyramidLayout, positions: np.ndarray) -> np.ndarray:
    """Slot index of each history position (position mode), -1 where no level covers it.

    One gather from the layout's position -> slot table (``coverage + 1`` entries, the last -1 for every
    position beyond the coverage), whatever the level count.
    """
    table = _slot_table(layout)
    return table[np.clip(positions, -1, layout.coverage)]


@functools.lru_cache(maxsize=16)
def slot_spans(layout: PyramidLayout) -> Tuple[np.ndarray, np.ndarray]:
    """Position mode: ``(first position, positions)`` of every slot, in slot order; read-only, cached per layout.

    Levels are contiguous from position 0, so the spans tile ``[0, coverage)``.
    """
    first = [lv.start + t * lv.group for lv in layout.levels for t in range(lv.tokens)]
    size = [lv.group for lv in layout.levels for _ in range(lv.tokens)]
    spans = np.asarray(first, dtype=np.int64), np.asarray(size, dtype=np.int64)
    for a in spans:
        a.setflags(write=False)  # shared by every batch of this layout
    return spans


@functools.lru_cache(maxsize=16)
def _slot_table(layout: PyramidLayout) -> np.ndarray:
    """``table[p]``: the slot of history position p for ``0 <= p < coverage``; -1 at ``coverage`` and at -1."""
    _, size = slot_spans(layout)
    table = np.full(layout.coverage + 2, -1, dtype=np.int64)
    table[: layout.coverage] = np.repeat(np.arange(size.size), size)
    return table


def slot_of_age(
    layout: PyramidLayout, row: np.ndarray, positions: np.ndarray, age_seconds: np.ndarray
) -> np.ndarray:
    """Slot index of each behaviour by age window (age mode), -1 where none covers it.

    Args:
        row: the row of each behaviour (non-decreasing), positions: its position in the row's history
            (most recent first), age_seconds: request time minus behaviour time.
    """
    hours = age_seconds / 3600.0
    level = np.searchsorted(np.asarray(layout.windows_hours, dtype=np.float64), hours, side="right")
    slots = np.full(positions.shape, -1, dtype=np.int64)
    offset = 0
    for k, lv in enumerate(layout.levels):
        in_level = level == k
        if not in_level.any():
            offset += lv.tokens
            continue
        # rank within the window = position minus the position of the row's first behaviour in the window
        r = row[in_level]
        p = positions[in_level]
        first = np.full(int(row.max()) + 1 if row.size else 0, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first, r, p)
        rank = p - first[r]
        tok = rank // lv.group
        ok = tok < lv.tokens
        idx = np.flatnonzero(in_level)[ok]
        slots[idx] = offset + tok[ok]
        offset += lv.tokens
    return slots


def time_gap_bucket(age_seconds: np.ndarray, num_buckets: int) -> np.ndarray:
    """Log-scale bucket of a behaviour's age: three buckets per doubling of minutes, capped."""
    x = np.maximum(age_seconds, 0).astype(np.float64)  # one float buffer, every step in place
    np.divide(x, 60.0, out=x)  # minutes
    np.add(x, 1.0, out=x)
    np.log2(x, out=x)
    np.multiply(x, 3.0, out=x)
    np.floor(x, out=x)
    np.minimum(x, num_buckets - 1, out=x)
    return x.astype(np.int64)
