"""Tests of the sequence baselines: MeanPoolTower, NoTower (pooling), GruTower (recurrent), MlpMixerTower and
Mlp4RecTower (mixers), all behind the Pyramid Mixer's ``forward(tokens, mask, target) -> B X out_dim``."""

from typing import Tuple, Type

import pytest
import torch
from torch import nn

from pyramid_mixer.ranking.towers.baselines.config import BaselineConfig
from pyramid_mixer.ranking.towers.baselines.mixers import Mlp4RecTower, MlpMixerTower
from pyramid_mixer.ranking.towers.baselines.pooling import MeanPoolTower, NoTower
from pyramid_mixer.ranking.towers.baselines.recurrent import GruTower, oldest_first

B = 6
CONFIG = BaselineConfig(num_tokens=12, num_features=4, dim=8, num_target_features=2, out_dim=8, hidden=16, layers=2)
TOWERS = [MeanPoolTower, NoTower, GruTower, MlpMixerTower, Mlp4RecTower]
HISTORY_TOWERS = [t for t in TOWERS if t is not NoTower]


def make_inputs(config: BaselineConfig = CONFIG, seed: int = 0, batch: int = B) -> Tuple[torch.Tensor, ...]:
    """Tokens (zero at padded slots), a prefix mask (most recent first) with a full, an empty, a one-token and
    random-length histories, and a target."""
    g = torch.Generator().manual_seed(seed)
    S, F, D, Ft = config.num_tokens, config.num_features, config.dim, config.num_target_features
    lengths = torch.randint(2, S, (batch,), generator=g)
    lengths[:3] = torch.tensor([S, 0, 1])
    mask = torch.arange(S) < lengths[:, None]  # B X S
    tokens = torch.randn(batch, S, F, D, generator=g) * mask[:, :, None, None]
    target = torch.randn(batch, Ft, D, generator=g)
    return tokens, mask, target


def build(tower: Type[nn.Module], config: BaselineConfig = CONFIG, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return tower(config)


@pytest.mark.parametrize("tower", TOWERS)
def test_output_shape(tower: Type[nn.Module]) -> None:
    module = build(tower)
    out = module(*make_inputs())
    assert module.config is CONFIG
    assert out.shape == (B, CONFIG.out_dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("tower", TOWERS)
def test_padding_never_leaks(tower: Type[nn.Module]) -> None:
    module = build(tower)
    tokens, mask, target = make_inputs()
    garbage = torch.randn(tokens.shape) * 100
    garbage[1, 0, 0, 0] = float("nan")  # the empty row
    garbage[3, -1, -1, -1] = float("nan")
    garbage[4, -1, 0, 0] = float("inf")
    dirty = torch.where(mask[:, :, None, None], tokens, garbage)
    assert torch.equal(module(dirty, mask, target), module(tokens, mask, target))


@pytest.mark.parametrize("tower", TOWERS)
def test_empty_rows_finite(tower: Type[nn.Module]) -> None:
    module = build(tower)
    tokens, mask, target = make_inputs()
    for m in (mask, torch.zeros_like(mask)):  # one empty row; every row empty
        module.zero_grad(set_to_none=True)
        x = tokens.clone().requires_grad_()
        t = target.clone().requires_grad_()
        out = module(x, m, t)
        assert torch.isfinite(out).all()
        out.square().sum().backward()
        x_grad = torch.zeros_like(x) if x.grad is None else x.grad  # NoTower never reads the tokens
        assert torch.isfinite(x_grad).all() and torch.isfinite(t.grad).all()
        assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)
    assert torch.equal(x_grad, torch.zeros_like(x_grad))  # no real token: nothing flows into the history


@pytest.mark.parametrize("tower", TOWERS)
def test_every_parameter_gets_a_gradient(tower: Type[nn.Module]) -> None:
    module = build(tower)
    module(*make_inputs()).square().sum().backward()
    missing = [name for name, p in module.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("tower", HISTORY_TOWERS)
@pytest.mark.parametrize("slot", [0, 4])  # the most recent token; an older one
def test_history_matters(tower: Type[nn.Module], slot: int) -> None:
    module = build(tower)
    tokens, mask, target = make_inputs()
    assert mask[0, slot]  # row 0 is a full history
    changed = tokens.clone()
    changed[0, slot] += torch.randn(changed[0, slot].shape)
    before, after = module(tokens, mask, target), module(changed, mask, target)
    assert not torch.allclose(before[0], after[0])
    assert torch.equal(before[1:], after[1:])  # rows are independent


def test_no_tower_ignores_the_history() -> None:
    module = build(NoTower)
    tokens, mask, target = make_inputs()
    other_tokens, other_mask, _ = make_inputs(seed=1)
    out = module(tokens, mask, target)
    assert torch.equal(out, module(other_tokens, other_mask, target))
    assert not torch.allclose(out, module(tokens, mask, target + 1))


def test_gru_depends_on_order_mean_pool_does_not() -> None:
    tokens, mask, target = make_inputs()
    swapped = tokens.clone()
    swapped[0, [2, 7]] = tokens[0, [7, 2]]  # two real tokens of the full history
    gru, mean = build(GruTower), build(MeanPoolTower)
    assert not torch.allclose(gru(tokens, mask, target)[0], gru(swapped, mask, target)[0])
    torch.testing.assert_close(mean(swapped, mask, target), mean(tokens, mask, target))


def test_gru_matches_a_per_row_reference() -> None:
    """The GRU's last state equals a plain run over each row's real tokens, oldest first (a loop over rows)."""
    module = build(GruTower)
    tokens, mask, target = make_inputs()
    F, D = CONFIG.num_features, CONFIG.dim
    rows = []
    for b in range(B):
        real = tokens[b, mask[b]].flip(0).reshape(1, -1, F * D)  # 1 X L X (F·D), oldest first
        if real.size(1) == 0:
            last = torch.zeros(CONFIG.hidden)
        else:
            _, state = module.gru(module.embed(real))  # layers X 1 X H
            last = state[-1, 0]
        rows.append(module.out(torch.cat([last, target[b].reshape(-1)])))
    torch.testing.assert_close(module(tokens, mask, target), torch.stack(rows), rtol=1e-5, atol=1e-6)


def test_gru_skips_holes() -> None:
    """Real tokens need not be a prefix: the GRU reads them in order, skipping the padded slots between them."""
    module = build(GruTower)
    tokens, mask, target = make_inputs()
    holes = torch.zeros_like(tokens)
    hole_mask = torch.zeros_like(mask)
    for b in range(B):  # spread row b's real tokens over the even slots
        L = int(mask[b].sum())
        slots = torch.arange(L) * 2 if 2 * L <= CONFIG.num_tokens else torch.arange(L)
        holes[b, slots], hole_mask[b, slots] = tokens[b, :L], True
    assert not torch.equal(hole_mask, mask)
    assert torch.equal(module(holes, hole_mask, target), module(tokens, mask, target))


def test_oldest_first() -> None:
    mask = torch.tensor([[True, True, True], [False, False, False], [False, True, True], [True, False, True]])
    order = oldest_first(mask)  # B X S
    assert order[0].tolist() == [2, 1, 0]
    assert order[2, :2].tolist() == [2, 1] and order[3, :2].tolist() == [2, 0]  # then filler


def test_mean_pool_matches_a_reference() -> None:
    module = build(MeanPoolTower)
    tokens, mask, target = make_inputs()
    counts = mask.sum(1).clamp(min=1)[:, None]
    mean = tokens.flatten(2).sum(1) / counts  # B X (F·D), tokens are zero at padded slots
    expected = module.mlp(torch.cat([mean, target.flatten(1)], 1))
    torch.testing.assert_close(module(tokens, mask, target), expected)


@pytest.mark.parametrize("tower", TOWERS)
def test_builds_on_meta(tower: Type[nn.Module]) -> None:
    module = tower(CONFIG, device=torch.device("meta"))
    assert all(p.is_meta for p in module.parameters())


@pytest.mark.parametrize("tower", TOWERS)
def test_shape_errors(tower: Type[nn.Module]) -> None:
    module = build(tower)
    tokens, mask, target = make_inputs()
    with pytest.raises(ValueError, match=r"tokens has shape \(6, 11, 4, 8\), expected B X 12 X 4 X 8"):
        module(tokens[:, :11], mask[:, :11], target)
    with pytest.raises(ValueError, match=r"mask is torch.float32 \(6, 12\), expected bool"):
        module(tokens, mask.float(), target)
    with pytest.raises(ValueError, match=r"target has shape \(6, 3, 8\), expected B X Ft X D = \(6, 2, 8\)"):
        module(tokens, mask, torch.zeros(B, 3, CONFIG.dim))
