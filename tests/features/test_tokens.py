"""Pyramid token layout: slot assignment by position and by age, and layout validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pyramid_mixer.features.config_io import ConfigError
from pyramid_mixer.features.kjt_builder import BatchBuilder, hash_ids
from pyramid_mixer.features.spec import default_spec
from pyramid_mixer.features.tokens import (
    LevelSpec,
    PyramidLayout,
    single_level,
    slot_of_age,
    slot_of_position,
    time_gap_bucket,
)


def test_slot_of_position_matches_loop() -> None:
    layout = PyramidLayout()
    positions = np.arange(0, 2500)
    expected = []
    for p in positions:
        slot, offset = -1, 0
        for lv in layout.levels:
            if lv.start <= p < lv.end:
                slot = offset + (p - lv.start) // lv.group
            offset += lv.tokens
        expected.append(slot)
    assert slot_of_position(layout, positions).tolist() == expected
    assert layout.level_tokens == (32, 32, 32) and layout.coverage == 2336


def test_slot_of_age_windows() -> None:
    layout = PyramidLayout(
        levels=(LevelSpec(0, 4, 1), LevelSpec(4, 8, 2)), mode="age", windows_hours=(24.0, 24.0 * 7)
    )
    hour = 3600
    # one row, most recent first: 3 behaviours in the last day, 5 in the last week, 1 older
    ages = np.array([1, 2, 3, 30, 40, 50, 60, 70, 24 * 30]) * hour
    row = np.zeros(ages.size, dtype=np.int64)
    slots = slot_of_age(layout, row, np.arange(ages.size), ages)
    # level 0 (day): tokens 0,1,2 (group 1); level 1 (week, group 2, 2 tokens): 4,4,5,5, then full
    assert slots.tolist() == [0, 1, 2, 4, 4, 5, 5, -1, -1]


def test_layout_validation() -> None:
    with pytest.raises(ConfigError, match="multiple of the group"):
        PyramidLayout(levels=(LevelSpec(0, 10, 3),))
    with pytest.raises(ConfigError, match="contiguous"):
        PyramidLayout(levels=(LevelSpec(0, 8, 1), LevelSpec(16, 32, 2)))
    with pytest.raises(ConfigError, match="windows_hours"):
        PyramidLayout(mode="age")
    assert single_level(96).level_tokens == (96,)


def test_time_gap_buckets_are_monotone_and_capped() -> None:
    ages = np.array([0, 60, 120, 3600, 86400, 86400 * 365 * 50])
    b = time_gap_bucket(ages, 64)
    assert b[0] == 0 and (np.diff(b) >= 0).all() and b[-1] == 63


def test_hashing() -> None:
    ids = np.array([0, 5, 12, 2**62, -7], dtype=np.int64)
    assert hash_ids(ids[:3], 10, "modulo").tolist() == [0, 5, 2]
    h = hash_ids(ids, 1000, "hash")
    assert ((h >= 0) & (h < 1000)).all()
    assert h.tolist() == hash_ids(ids, 1000, "hash").tolist()  # deterministic
    spread = np.bincount(hash_ids(np.arange(100_000, dtype=np.int64) * 1000, 100, "hash"), minlength=100)
    assert spread.min() > 800  # sequential ids spread evenly


@pytest.mark.parametrize("seed", range(6))
def test_position_order_is_the_stable_sort_by_slot_then_row(seed: int) -> None:
    """The builder's run-based KJT order equals the definition: every behaviour's slot from its position,
    histories cut to the cap, then a stable sort by ``slot * B + row``; lengths and ages follow."""
    rng = np.random.default_rng(seed)
    layout = PyramidLayout(levels=(LevelSpec(0, 3, 1), LevelSpec(3, 11, 2), LevelSpec(11, 35, 6)))
    max_length = int(rng.choice([5, 20, 35, 100]))  # below, inside and beyond the coverage (35)
    spec = default_spec()
    spec = dataclasses.replace(spec, sequence=dataclasses.replace(spec.sequence, max_length=max_length))
    B = int(rng.integers(1, 9))
    hist = rng.integers(0, 50, size=B)
    hist[0] = 0  # an empty history
    times = rng.integers(0, 10_000, size=int(hist.sum()))
    request_time = rng.integers(10_000, 20_000, size=B)
    take, lengths, age = BatchBuilder(spec, layout)._position_order(hist, times, request_time)

    row = np.repeat(np.arange(B), hist)
    position = np.arange(row.size) - (np.cumsum(hist) - hist)[row]
    slot = np.where(position < min(max_length, layout.coverage), slot_of_position(layout, position), -1)
    keep = np.flatnonzero(slot >= 0)
    key = slot[keep] * B + row[keep]
    expected = keep[np.argsort(key, kind="stable")]
    assert np.array_equal(take, expected)
    assert np.array_equal(lengths, np.bincount(key, minlength=layout.num_slots * B))
    assert np.array_equal(age, request_time[row[expected]] - times[expected])
