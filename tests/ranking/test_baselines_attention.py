"""Tests of the attention baselines (pyramid_mixer.ranking.towers.baselines.attention): DinTower and SasRecTower."""

import dataclasses
from typing import Tuple, Type

import pytest
import torch
from torch import nn
from torch.nn import functional

from pyramid_mixer.ranking.towers.baselines.attention import DinTower, SasRecTower
from pyramid_mixer.ranking.towers.baselines.config import BaselineConfig

B = 6
SMALL = BaselineConfig(num_tokens=10, num_features=4, dim=8, num_target_features=2, out_dim=12, hidden=16,
                       layers=2, heads=2)
TOWERS = [DinTower, SasRecTower]


def make_inputs(config: BaselineConfig, seed: int = 0, batch: int = B) -> Tuple[torch.Tensor, ...]:
    """Tokens (zero at padded slots), a mask with a full, an empty, a one-token and random histories with
    holes, a target."""
    g = torch.Generator().manual_seed(seed)
    S, F, D, Ft = config.num_tokens, config.num_features, config.dim, config.num_target_features
    lengths = torch.randint(0, S + 1, (batch,), generator=g)
    lengths[:3] = torch.tensor([S, 0, 1])
    mask = torch.arange(S) < lengths[:, None]  # B X S: histories are most recent first
    mask[3:] &= torch.rand(batch - 3, S, generator=g) < 0.8  # and some holes inside
    tokens = torch.randn(batch, S, F, D, generator=g) * mask[:, :, None, None]
    target = torch.randn(batch, Ft, D, generator=g)
    return tokens, mask, target


def build(cls: Type[nn.Module], config: BaselineConfig = SMALL, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return cls(config)


@pytest.mark.parametrize("cls", TOWERS)
@pytest.mark.parametrize("num_target_features", [1, 2, 4])
def test_output_shape(cls: Type[nn.Module], num_target_features: int) -> None:
    config = dataclasses.replace(SMALL, num_target_features=num_target_features)
    tower = build(cls, config)
    out = tower(*make_inputs(config))
    assert tower.config is config
    assert out.shape == (B, config.out_dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("cls", TOWERS)
@pytest.mark.parametrize("garbage", ["random", "nan", "inf"])
def test_padding_never_leaks(cls: Type[nn.Module], garbage: str) -> None:
    tower = build(cls)
    tokens, mask, target = make_inputs(SMALL)
    fill = {"random": torch.randn_like(tokens) * 100, "nan": torch.full_like(tokens, float("nan")),
            "inf": torch.full_like(tokens, float("inf"))}[garbage]
    dirty = torch.where(mask[:, :, None, None], tokens, fill)
    with torch.no_grad():
        assert torch.equal(tower(tokens, mask, target), tower(dirty, mask, target))


@pytest.mark.parametrize("cls", TOWERS)
def test_empty_rows_finite_with_finite_gradients(cls: Type[nn.Module]) -> None:
    tower = build(cls)
    tokens, mask, target = make_inputs(SMALL)
    mask[:] = False
    tokens = torch.full_like(tokens, float("nan")).requires_grad_()  # every slot padded, holding NaN
    target.requires_grad_()
    out = tower(tokens, mask, target)
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    assert torch.isfinite(target.grad).all()
    assert torch.equal(tokens.grad, torch.zeros_like(tokens))  # padded slots never reach the output
    for name, p in tower.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("cls", TOWERS)
def test_every_parameter_gets_a_gradient(cls: Type[nn.Module]) -> None:
    tower = build(cls)
    tower(*make_inputs(SMALL)).square().sum().backward()
    for name, p in tower.named_parameters():
        assert p.grad is not None, f"{name} gets no gradient (DistributedDataParallel would fail)"
        assert p.grad.abs().sum() > 0, f"{name} gets an all-zero gradient"
        assert torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("cls", TOWERS)
def test_target_matters(cls: Type[nn.Module]) -> None:
    tower = build(cls)
    tokens, mask, target = make_inputs(SMALL)
    with torch.no_grad():
        a = tower(tokens, mask, target)
        b = tower(tokens, mask, target + torch.randn_like(target))
    # every row with a real token: the readout's weights are unnormalised, so even a single token's weight
    # depends on the target (a softmax would give it weight 1 whatever the target)
    assert (a - b)[mask.any(1)].abs().amax(1).gt(1e-5).all()
    empty = ~mask.any(1)
    assert torch.equal(a[empty], b[empty])  # no history to attend over: the target has nothing to weigh


@pytest.mark.parametrize("cls", TOWERS)
def test_history_matters(cls: Type[nn.Module]) -> None:
    tower = build(cls)
    tokens, mask, target = make_inputs(SMALL)
    with torch.no_grad():
        a = tower(tokens, mask, target)
        b = tower(torch.randn_like(tokens), mask, target)
    real = mask.any(1)
    assert (a - b)[real].abs().amax(1).gt(1e-5).all()


@pytest.mark.parametrize("cls", TOWERS)
def test_rows_are_independent(cls: Type[nn.Module]) -> None:
    """Row b's output depends on row b only (vectorised code must not mix rows)."""
    tower = build(cls)
    tokens, mask, target = make_inputs(SMALL)
    with torch.no_grad():
        full = tower(tokens, mask, target)
        for b in range(B):
            one = tower(tokens[b : b + 1], mask[b : b + 1], target[b : b + 1])
            torch.testing.assert_close(one, full[b : b + 1], rtol=1e-5, atol=1e-6)


def din_reference(tower: DinTower, tokens: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DIN written plainly: the attention MLP on the literal concatenation ``[t, x, t - a, t * a]``."""
    Bt, S, F, D = tokens.shape
    x = tokens.masked_fill(~mask[:, :, None, None], 0.0).reshape(Bt, S, F * D)
    t = target.reshape(Bt, 1, -1).expand(Bt, S, -1)
    a = x[:, :, : t.size(2)]
    h = functional.gelu(tower.unit.att_in(torch.cat([t, x, t - a, t * a], 2)))
    w = tower.unit.att_out(h).squeeze(-1) * mask
    weighted = (w[:, :, None] * x).sum(1)
    mean = (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
    return tower.out(torch.cat([weighted, mean], 1))


@pytest.mark.parametrize("num_target_features", [1, 2, 4])
def test_din_fast_attention_equals_reference(num_target_features: int) -> None:
    config = dataclasses.replace(SMALL, num_target_features=num_target_features)
    tower = build(DinTower, config)
    inputs = make_inputs(config)
    with torch.no_grad():
        torch.testing.assert_close(tower(*inputs), din_reference(tower, *inputs), rtol=1e-5, atol=1e-5)


def test_sasrec_is_causal() -> None:
    """Position i attends to itself and older positions (larger index): changing token j leaves the encodings of
    positions i > j bit-identical and changes those of positions i <= j."""
    tower = build(SasRecTower)
    S = SMALL.num_tokens
    tokens, _, _ = make_inputs(SMALL)
    mask = torch.ones(B, S, dtype=torch.bool)
    tokens = torch.randn_like(tokens)
    with torch.no_grad():
        base = tower.encode(tokens, mask)
        for j in (0, 3, S - 1):
            changed = tokens.clone()
            changed[:, j] += torch.randn_like(changed[:, j])
            h = tower.encode(changed, mask)
            assert torch.equal(h[:, j + 1 :], base[:, j + 1 :]), f"an older position reads token {j}"
            assert (h[:, : j + 1] - base[:, : j + 1]).abs().amax(2).gt(1e-6).all(), f"token {j} is not read"


def test_sasrec_attention_mask() -> None:
    tower = build(SasRecTower)
    mask = torch.tensor([[True, False, True, False]])
    expected = torch.tensor([[1, 0, 1, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.bool)
    assert torch.equal(tower.attention_mask(mask), expected[None, None])


def test_sasrec_encode_zero_at_padding() -> None:
    tower = build(SasRecTower)
    tokens, mask, _ = make_inputs(SMALL)
    with torch.no_grad():
        h = tower.encode(tokens, mask)
    assert h.shape == (B, SMALL.num_tokens, SMALL.hidden)
    assert torch.equal(h[~mask], torch.zeros_like(h[~mask]))


def test_sasrec_reads_most_recent_real_token() -> None:
    """The readout's second half is the encoding of the first real slot, also when leading slots are holes."""
    tower = build(SasRecTower)
    tokens, mask, target = make_inputs(SMALL)
    mask[:, :2] = torch.tensor([False, False])  # holes at the front: the most recent real token is later
    mask[:, 2] = True
    captured = {}
    tower.out.register_forward_hook(lambda m, args, out: captured.setdefault("x", args[0]))
    with torch.no_grad():
        tower(tokens, mask, target)
        h = tower.encode(tokens, mask)
    torch.testing.assert_close(captured["x"][:, -SMALL.hidden :], h[:, 2], rtol=0, atol=0)


def test_sasrec_readout_is_dins_unit_over_token_and_encoding() -> None:
    """The readout written plainly: DIN's MLP on ``[t, z, t - a, t * a]`` with ``z = [token, encoding]`` and ``a``
    the token's first Ft features; unnormalised weights; the most recent real encoding appended."""
    tower = build(SasRecTower)
    tokens, mask, target = make_inputs(SMALL)
    with torch.no_grad():
        h = tower.encode(tokens, mask)
        x = tokens.masked_fill(~mask[:, :, None, None], 0.0).flatten(2)
        z = torch.cat([x, h], 2)
        t = target.reshape(B, 1, -1).expand(B, SMALL.num_tokens, -1)
        a = z[:, :, : t.size(2)]
        w = tower.unit.att_out(functional.gelu(tower.unit.att_in(torch.cat([t, z, t - a, t * a], 2)))).squeeze(-1)
        pooled = (w * mask)[:, :, None].mul(z).sum(1)
        recent = h[torch.arange(B), mask.to(torch.uint8).argmax(1)]
        expected = tower.out(torch.cat([pooled, recent], 1))
        torch.testing.assert_close(tower(tokens, mask, target), expected, rtol=1e-5, atol=1e-5)


def test_sasrec_hidden_not_divisible_by_heads() -> None:
    with pytest.raises(ValueError, match="hidden=10 is not divisible by heads=3"):
        SasRecTower(dataclasses.replace(SMALL, hidden=10, heads=3))


@pytest.mark.parametrize("cls", TOWERS)
def test_shape_errors(cls: Type[nn.Module]) -> None:
    tower = build(cls)
    tokens, mask, target = make_inputs(SMALL)
    with pytest.raises(ValueError, match=r"tokens has shape .* expected B X 10 X 4 X 8"):
        tower(tokens[:, :-1], mask[:, :-1], target)
    with pytest.raises(ValueError, match=r"mask is torch.float32 .* expected bool"):
        tower(tokens, mask.float(), target)
    with pytest.raises(ValueError, match=r"target has shape \(6, 3, 8\), expected B X Ft X D = \(6, 2, 8\)"):
        tower(tokens, mask, torch.randn(B, 3, SMALL.dim))
