"""GateShares: the adaptive fusion's cross-behaviour share, averaged over exactly the rows scored while active."""

from __future__ import annotations

import math

import pytest
import torch

from pyramid_mixer.ranking.towers.gate_shares import GateShares, gate_name
from pyramid_mixer.ranking.towers.pyramid_mixer import PyramidMixer, PyramidMixerConfig


def tower(**switches: object) -> PyramidMixer:
    torch.manual_seed(0)
    return PyramidMixer(PyramidMixerConfig(level_tokens=(3, 4), num_features=3, dim=4, num_target_features=2,
                                           out_dim=8, **switches))


def run(model: PyramidMixer, rows: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    tokens, target = torch.randn(rows, 7, 3, 4, generator=g), torch.randn(rows, 2, 4, generator=g)
    mask = torch.arange(7) < torch.randint(1, 8, (rows, 1), generator=g)
    return model(tokens, mask, target)


def test_an_untrained_tower_shares_the_gate_init_in_every_layer_and_feature() -> None:
    model = tower(gate_init=0.8, layers_per_level=2)
    with GateShares(model) as gates:
        run(model, 5)
    assert list(gates.shares()) == ["level0.layer0", "level0.layer1", "level1.layer0", "level1.layer1"]
    for shares in gates.shares().values():
        assert shares == pytest.approx([0.8] * 3, abs=1e-7)  # the bias is float32


def test_the_share_is_a_mean_over_rows_of_active_batches_only() -> None:
    model = tower()
    gate = model.levels[1].layers[0].gate
    with GateShares(model) as gates:
        gate.proj.bias.data = torch.tensor([0.0, 1.0, -2.0])
        run(model, 2, seed=1)
        gates.active = False  # a lockstep filler batch: scored, not counted
        gate.proj.bias.data = torch.tensor([5.0, 5.0, 5.0])
        run(model, 9, seed=2)
        gates.active = True
        gate.proj.bias.data = torch.tensor([2.0, 0.0, 0.0])
        run(model, 6, seed=3)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = [(2 * sig(0.0) + 6 * sig(2.0)) / 8, (2 * sig(1.0) + 6 * sig(0.0)) / 8,
                (2 * sig(-2.0) + 6 * sig(0.0)) / 8]
    assert gates.shares()["level1.layer0"] == pytest.approx(expected, abs=1e-7)  # the weights are still zero
    names, _, rows = gates.totals()
    assert dict(zip(names, rows)) == {"level0.layer0": 8, "level1.layer0": 8}
    run(model, 4)  # after the with block the hooks are gone
    assert gates.totals()[2].tolist() == [8, 8]


def test_the_hooks_change_nothing_in_the_forward_pass() -> None:
    model = tower()
    for layer in model.levels:  # a gate that depends on the example
        torch.nn.init.normal_(layer.layers[0].gate.proj.weight, std=0.3)
    plain = run(model, 6)
    with GateShares(model) as gates:
        hooked = run(model, 6)
    assert torch.equal(plain, hooked)
    shares = gates.shares()["level0.layer0"]
    assert all(0.0 < a < 1.0 for a in shares) and len(set(shares)) == 3


@pytest.mark.parametrize("switches", [{"fusion": "sum"}, {"cross_feature": False}, {"cross_behavior": False}])
def test_a_tower_without_the_gate_reports_none(switches: dict) -> None:
    model = tower(**switches)
    with GateShares(model) as gates:
        run(model, 3)
    assert gates.shares() == {} and gates.totals()[0] == []


def test_gate_names_follow_the_levels_and_layers() -> None:
    assert gate_name("module.model.encoder.tower.levels.2.layers.1.gate") == "level2.layer1"
    assert gate_name("blocks.0.gate") == "blocks.0.gate"
