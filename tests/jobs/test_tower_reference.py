"""The rewritten tower equals the one it replaced (``jobs.bench.tower_reference``): same weights, same outputs and
gradients to 1e-5, for every ablation switch, with padded slots, empty histories and an empty level."""

import dataclasses
from typing import Optional

import pytest
import torch

from pyramid_mixer.jobs.bench import tower_reference
from pyramid_mixer.jobs.bench.tower_reference import reference_tower
from pyramid_mixer.ranking.towers.baselines.attention import DinTower
from pyramid_mixer.ranking.towers.baselines.config import BaselineConfig
from pyramid_mixer.ranking.towers.pyramid_mixer import PyramidMixer
from tests.ranking.test_pyramid_mixer import ABLATIONS, SMALL, make_inputs

CASES = {**ABLATIONS, "two_layers": dict(layers_per_level=2), "expansion_3": dict(expansion=3)}


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Every parameter away from its start (the gate's projection starts at zero), so each one matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def _close(new: torch.Tensor, old: torch.Tensor, name: str = "") -> None:
    """Equal to 1e-5 of the tensor's own scale (a gradient summed over a batch is large in places; float
    sums in another order round apart by ~1e-7 of it)."""
    scale = max(1.0, float(old.abs().max()))
    assert float((new - old).abs().max()) <= 1e-5 * scale, (name, float((new - old).abs().max()), scale)


def _outputs_and_grads(tower: torch.nn.Module, tokens: torch.Tensor, mask: torch.Tensor, target: torch.Tensor):
    tokens = tokens.clone().requires_grad_(True)
    target = target.clone().requires_grad_(True)
    out = tower(tokens, mask, target)
    weights = torch.linspace(-1.0, 1.0, out.numel()).view_as(out)  # a gradient that differs per output
    (out * weights).sum().backward()
    grads = {name: p.grad for name, p in tower.named_parameters()}
    return out, tokens.grad, target.grad, grads


@pytest.mark.parametrize("name", [None, *CASES])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_rewritten_tower_equals_the_former_one(name: Optional[str], seed: int) -> None:
    config = dataclasses.replace(SMALL, **CASES.get(name, {}))
    torch.manual_seed(seed)
    tower = PyramidMixer(config)
    _randomise(tower, seed)
    former = reference_tower(tower)
    assert type(former.levels[0].layers[0]) is not type(tower.levels[0].layers[0])  # the former code really runs
    tokens, mask, target = make_inputs(config, seed=seed, batch=6)
    mask[4, : config.level_tokens[0]] = False  # a history whose first level is empty
    new, old = _outputs_and_grads(tower, tokens, mask, target), _outputs_and_grads(former, tokens, mask, target)
    torch.testing.assert_close(new[0], old[0], rtol=1e-5, atol=1e-5)  # the output, element by element
    _close(new[1], old[1], "tokens")  # the gradients
    if config.target_aware:
        _close(new[2], old[2], "target")
    assert new[3].keys() == old[3].keys()
    for key in new[3]:
        if old[3][key] is None:
            assert new[3][key] is None, key
            continue
        _close(new[3][key], old[3][key], key)


def test_the_rewritten_tower_is_not_a_copy_of_the_former_one() -> None:
    """The two run different code: a deliberately broken former gate changes the former tower alone."""
    tower = PyramidMixer(SMALL)
    _randomise(tower, 0)
    former = reference_tower(tower)
    tokens, mask, target = make_inputs(SMALL)
    before = former(tokens, mask, target)
    with torch.no_grad():
        former.levels[0].layers[0].gate.proj.bias.add_(3.0)
    assert not torch.allclose(former(tokens, mask, target), before)
    torch.testing.assert_close(tower(tokens, mask, target), reference_tower(tower)(tokens, mask, target))


def test_din_with_the_rewritten_attention_unit_equals_the_former_one() -> None:
    config = BaselineConfig(num_tokens=12, num_features=3, dim=4, num_target_features=2, out_dim=8, hidden=16)
    tower = DinTower(config)
    _randomise(tower, 2)
    g = torch.Generator().manual_seed(2)
    mask = torch.rand(5, 12, generator=g) < 0.7
    tokens = torch.randn(5, 12, 3, 4, generator=g) * mask[:, :, None, None]
    target = torch.randn(5, 2, 4, generator=g)
    new, old = _outputs_and_grads(tower, tokens, mask, target), _outputs_and_grads(reference_tower(tower), tokens,
                                                                                     mask, target)
    torch.testing.assert_close(new[0], old[0], rtol=1e-5, atol=1e-5)
    for a, b in zip(new[1:3], old[1:3]):
        _close(a, b)
    for key in new[3]:
        _close(new[3][key], old[3][key], key)




def test_former_code_swaps_in_place_and_back() -> None:
    tower = PyramidMixer(SMALL)
    _randomise(tower, 4)
    tokens, mask, target = make_inputs(SMALL)
    layer_type = type(tower.levels[0].layers[0])
    with tower_reference.former_code(tower):
        assert type(tower.levels[0].layers[0]) is not layer_type
        inside = tower(tokens, mask, target)
    assert type(tower.levels[0].layers[0]) is layer_type
    torch.testing.assert_close(inside, tower(tokens, mask, target), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(inside, reference_tower(tower)(tokens, mask, target), rtol=0, atol=0)


def test_levels_time_major_gradient_and_padding() -> None:
    """The input's custom backward against autograd's numerical gradient, and NaN at a padded slot stays out."""
    from pyramid_mixer.ranking.towers.pyramid_mixer import LevelsTimeMajor

    g = torch.Generator().manual_seed(5)
    tokens = torch.randn(3, 5, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(3, 5, generator=g) < 0.6
    assert torch.autograd.gradcheck(lambda x: LevelsTimeMajor.apply(x, mask, [2, 3]), (tokens,))
    dirty = tokens.detach().clone()
    dirty[~mask] = float("nan")
    levels = LevelsTimeMajor.apply(dirty, mask, [2, 3])
    assert [tuple(x.shape) for x in levels] == [(2, 3, 2, 2), (3, 3, 2, 2)] and all(x.is_contiguous() for x in levels)
    assert torch.equal(torch.cat(levels).transpose(0, 1), torch.where(mask[:, :, None, None], dirty, 0.0))
