"""``effective_tower_config``: a field a tower does not read never changes the tower, and one it reads does.

This is what lets the quality benchmark run a search candidate that changes nothing for a tower only once.
"""

import dataclasses
from typing import Dict, Tuple

import pytest
import torch

from pyramid_mixer.ranking.towers import BASELINES, WIDTHS, effective_tower_config, make_tower
from pyramid_mixer.ranking.towers.baselines.config import BaselineConfig
from pyramid_mixer.ranking.towers.pyramid_mixer import PyramidMixerConfig

S, F, D, FT = 6, 3, 4, 2
PYRAMID = PyramidMixerConfig(level_tokens=(2, 4), num_features=F, dim=D, num_target_features=FT, low_rank=2,
                             out_dim=8, readout_hidden=8)
BASELINE = BaselineConfig(num_tokens=S, num_features=F, dim=D, num_target_features=FT, out_dim=8, hidden=8,
                          layers=1, heads=2)
OTHER_WIDTH = {"hidden": 16, "layers": 2, "heads": 4, "mask_prob": 0.5}


def outputs(kind: str, pyramid: PyramidMixerConfig, baseline: BaselineConfig) -> Tuple[Dict, torch.Tensor]:
    """The tower's initial weights and its output on fixed inputs, built from seed 0."""
    torch.manual_seed(0)
    tower = make_tower(kind, pyramid, baseline)
    g = torch.Generator().manual_seed(1)
    mask = torch.rand(5, S, generator=g) < 0.7
    tokens = torch.randn(5, S, F, D, generator=g) * mask[:, :, None, None]
    return tower.state_dict(), tower(tokens, mask, torch.randn(5, FT, D, generator=g))


def same_tower(kind: str, a: Tuple, b: Tuple) -> bool:
    (wa, ya), (wb, yb) = outputs(kind, *a), outputs(kind, *b)
    same_weights = wa.keys() == wb.keys() and all(
        wa[k].shape == wb[k].shape and torch.equal(wa[k], wb[k]) for k in wa)
    return same_weights and ya.shape == yb.shape and torch.equal(ya, yb)


@pytest.mark.parametrize("kind", list(BASELINES))
@pytest.mark.parametrize("width", WIDTHS)
def test_a_baseline_width_changes_the_tower_exactly_when_the_tower_reads_it(kind: str, width: str) -> None:
    wider = dataclasses.replace(BASELINE, **{width: OTHER_WIDTH[width]})
    read = width in BASELINES[kind].reads
    assert same_tower(kind, (PYRAMID, BASELINE), (PYRAMID, wider)) is not read
    same_effective = effective_tower_config(kind, PYRAMID, BASELINE) == effective_tower_config(kind, PYRAMID, wider)
    assert same_effective is not read
    # a baseline never reads the Pyramid Mixer's config, nor the Pyramid Mixer a baseline's
    other = dataclasses.replace(PYRAMID, readout_hidden=32)
    assert effective_tower_config(kind, PYRAMID, BASELINE) == effective_tower_config(kind, other, BASELINE)
    assert effective_tower_config("pyramid_mixer", PYRAMID, BASELINE) == effective_tower_config(
        "pyramid_mixer", PYRAMID, wider)


UNUSED = [  # (switches, a field they leave unread, another value for it)
    (dict(target_aware=False), "readout_hidden", 32),
    (dict(target_aware=False), "query_norm", False),
    (dict(cross_feature=False), "gate_init", 0.5),
    (dict(cross_feature=False), "fusion", "sum"),
    (dict(cross_behavior=False), "fusion", "sum"),
    (dict(cross_behavior=False), "carry_tokens", 3),
    (dict(fusion="sum"), "gate_init", 0.5),
]


@pytest.mark.parametrize("switches, name, value", UNUSED)
def test_a_field_the_switches_leave_unread_never_changes_the_pyramid_mixer(switches, name, value) -> None:
    base = dataclasses.replace(PYRAMID, **switches)
    changed = dataclasses.replace(base, **{name: value})
    assert base.without_unused() == changed.without_unused()
    assert same_tower("pyramid_mixer", (base, BASELINE), (changed, BASELINE))
    # with the default switches the same field is read: it changes the tower and the effective config
    read = dataclasses.replace(PYRAMID, **{name: value})
    assert PYRAMID.without_unused() != read.without_unused()
    assert not same_tower("pyramid_mixer", (PYRAMID, BASELINE), (read, BASELINE))
