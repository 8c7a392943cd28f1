"""Tests of the Pyramid Mixer tower (pyramid_mixer.ranking.towers.pyramid_mixer) and its mixer layer (mixer_layer)."""

import dataclasses
from typing import Dict, Tuple

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional

from pyramid_mixer.ranking.towers import mixer_layer
from pyramid_mixer.ranking.towers.mixer_layer import MixerLayer, MixerLayerConfig
from pyramid_mixer.ranking.towers.pyramid_mixer import PyramidMixer, PyramidMixerConfig
from pyramid_mixer.ranking.towers.readouts import LearnedQueryReadout, TargetAwareReadout

B, D = 4, 8
SMALL = PyramidMixerConfig(level_tokens=(8, 8, 8), num_features=4, dim=D, low_rank=4, out_dim=16)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from threads, and on a busy 2-core machine OpenMP threads make them ~8x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_inputs(config: PyramidMixerConfig, seed: int = 0, batch: int = B) -> Tuple[torch.Tensor, ...]:
    """Tokens (zero at padded slots), a mask with a full, an empty, a short-only and a random history, a target."""
    g = torch.Generator().manual_seed(seed)
    S, F, Ft = sum(config.level_tokens), config.num_features, config.num_target_features
    lengths = torch.randint(0, S + 1, (batch,), generator=g)
    lengths[:3] = torch.tensor([S, 0, min(3, config.level_tokens[0])])[: min(3, batch)]
    mask = torch.arange(S) < lengths[:, None]  # B X S: histories are most recent first
    mask[3:] &= torch.rand(batch - 3, S, generator=g) < 0.8  # and some holes (empty bags) inside
    tokens = torch.randn(batch, S, F, config.dim, generator=g) * mask[:, :, None, None]
    target = torch.randn(batch, Ft, config.dim, generator=g)
    return tokens, mask, target


def build(config: PyramidMixerConfig, seed: int = 0) -> PyramidMixer:
    torch.manual_seed(seed)
    return PyramidMixer(config)


@pytest.mark.parametrize("level_tokens", [(8,), (8, 8), (8, 8, 8), (1, 3, 1)])
@pytest.mark.parametrize("carry_tokens", [0, 2])
@pytest.mark.parametrize("low_rank", [0, 4])
def test_output_shape(level_tokens: Tuple[int, ...], carry_tokens: int, low_rank: int) -> None:
    config = dataclasses.replace(SMALL, level_tokens=level_tokens, carry_tokens=carry_tokens, low_rank=low_rank)
    out = build(config)(*make_inputs(config))
    assert out.shape == (B, config.out_dim)
    assert torch.isfinite(out).all()


ABLATIONS: Dict[str, dict] = {
    "cross_behavior": dict(cross_behavior=False),
    "cross_feature": dict(cross_feature=False),
    "fusion_sum": dict(fusion="sum"),
    "full_rank": dict(low_rank=0),
    "one_level": dict(level_tokens=(24,)),
    "cross_period": dict(cross_period=False),
    "target_aware": dict(target_aware=False),
    "query_norm": dict(query_norm=False),
    "no_carry": dict(carry_tokens=0),
}


@pytest.mark.parametrize("name", [None, *ABLATIONS])
def test_padding_never_leaks(name: str) -> None:
    config = dataclasses.replace(SMALL, **ABLATIONS.get(name, {}))
    model = build(config)
    tokens, mask, target = make_inputs(config)
    garbage = torch.randn(tokens.shape) * 1e3
    garbage[1, 0, 0, 0], garbage[1, 1, 0, 0] = float("nan"), float("inf")  # row 1 is empty
    dirty = torch.where(mask[:, :, None, None], tokens, garbage)
    assert not torch.equal(dirty, tokens)
    out = model(tokens, mask, target)
    assert torch.isfinite(out).all()
    assert torch.equal(model(dirty, mask, target), out)
    masks = mask.split(config.level_tokens, 1)
    for clean, noisy, m in zip(model.encode_levels(tokens, mask), model.encode_levels(dirty, mask), masks):
        assert torch.equal(clean[m], noisy[m])
        assert torch.equal(clean[~m], torch.zeros_like(clean[~m]))


def test_empty_and_short_histories_are_finite() -> None:
    model = build(SMALL)
    tokens, mask, target = make_inputs(SMALL)  # row 1: empty history, row 2: three real tokens in the short level
    assert not mask[1].any() and mask[2].sum() == 3 and not mask[2, 8:].any()
    tokens.requires_grad_(True)
    out = model(tokens, mask, target)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(tokens.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    # all-masked levels contribute zeros (pooled vectors and period tokens): an empty history gives the bias
    assert torch.equal(out[1], model.out.bias)


def lacks(model: PyramidMixer, name: str) -> bool:
    """Whether ``model`` really lacks the component that ablation ``name`` removes."""
    names = [n for n, _ in model.named_parameters()]
    layers = [layer for level in model.levels for layer in level.layers]
    merges = [level.merge for level in model.levels if level.merge is not None]
    if name == "cross_behavior":
        no_cb = all(layer.cb is None and layer.gate is None for layer in layers) and not any(".cb." in n for n in names)
        return no_cb and merges == []  # only the token mixing reads carried tokens
    if name == "cross_feature":
        return all(layer.cf is None and layer.gate is None for layer in layers) and not any(".cf." in n for n in names)
    if name == "fusion_sum":
        return all(layer.gate is None and layer.cb is not None and layer.cf is not None for layer in layers)
    if name == "full_rank":
        return all(layer.cb.token_down.weight.shape[0] == layer.cb.token_down.weight.shape[1] for layer in layers)
    if name == "one_level":
        return len(model.levels) == 1 and merges == []
    if name == "cross_period":
        return model.cross_period is None and not any(n.startswith("cross_period") for n in names)
    if name == "target_aware":
        return isinstance(model.readout, LearnedQueryReadout) and not any("attention" in n for n in names)
    if name == "query_norm":
        return isinstance(model.readout, TargetAwareReadout) and model.readout.target_norm is None
    if name == "no_carry":
        return merges == [] and all(layer.cb.token_down.in_features == 8 for layer in layers)
    raise KeyError(name)


@pytest.mark.parametrize("name", list(ABLATIONS))
@pytest.mark.parametrize("seed", [0, 1])
def test_each_ablation_changes_the_computation(name: str, seed: int) -> None:
    ablated_config = dataclasses.replace(SMALL, **ABLATIONS[name])
    full, ablated = build(SMALL, seed), build(ablated_config, seed)
    assert not lacks(full, name) and lacks(ablated, name)
    shapes = {n: p.shape for n, p in ablated.state_dict().items()}
    shared = {n: p for n, p in full.state_dict().items() if shapes.get(n) == p.shape}
    ablated.load_state_dict(shared, strict=False)
    inputs = make_inputs(SMALL, seed)
    assert not torch.equal(full(*inputs), ablated(*inputs))


@pytest.mark.parametrize("name", ["cross_behavior", "cross_feature", "fusion_sum", "cross_period", "target_aware",
                                  "query_norm"])
def test_an_ablation_starts_what_it_keeps_from_the_full_towers_weights(name: str) -> None:
    """Each part draws from its own named stream: an ablation changes the component, not the other parts' draw."""
    full, ablated = build(SMALL, seed=3), build(dataclasses.replace(SMALL, **ABLATIONS[name]), seed=3)
    kept = {n: p for n, p in full.state_dict().items()}
    shared = [n for n, p in ablated.state_dict().items() if n in kept and kept[n].shape == p.shape]
    assert len(shared) >= len(ablated.state_dict()) - 2  # everything but what the ablation adds in its place
    assert any(".cb." in n or ".cf." in n for n in shared) and "out.weight" in shared
    for n in shared:
        assert torch.equal(ablated.state_dict()[n], kept[n]), n
    other = build(SMALL, seed=4)
    assert not torch.equal(other.out.weight, full.out.weight)  # the run's seed still matters


def test_building_a_tower_leaves_the_global_stream_alone() -> None:
    """The over arch and the tables are drawn after the tower: which tower was built must not move them."""
    from pyramid_mixer.ranking.towers import make_tower
    from pyramid_mixer.ranking.towers.baselines.config import BaselineConfig

    baseline = BaselineConfig(num_tokens=24, num_features=4, dim=D, num_target_features=2, out_dim=16)
    after = []
    for kind, config in [("pyramid_mixer", SMALL), ("pyramid_mixer", dataclasses.replace(SMALL, cross_feature=False)),
                         ("sasrec", SMALL)]:
        torch.manual_seed(0)
        make_tower(kind, config, baseline)
        after.append(torch.randn(4))
    assert torch.equal(after[0], after[1]) and torch.equal(after[0], after[2])


def test_target_awareness() -> None:
    tokens, mask, target = make_inputs(SMALL)
    other = torch.randn(target.shape)
    aware = build(SMALL)
    assert not torch.allclose(aware(tokens, mask, target)[0], aware(tokens, mask, other)[0])
    blind = build(dataclasses.replace(SMALL, target_aware=False))
    assert torch.equal(blind(tokens, mask, target), blind(tokens, mask, other))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(cross_behavior=False, cross_feature=False), "at least one branch"),
        (dict(fusion="concat"), r"fusion='concat' is not one of \('gate', 'sum'\)"),
        (dict(level_tokens=()), "one or more levels"),
        (dict(level_tokens=(8, 0)), "each >= 1 token"),
        (dict(dim=0), "dim=0: must be >= 1"),
        (dict(layers_per_level=0), "layers_per_level=0"),
        (dict(low_rank=-1), "low_rank=-1: must be >= 0"),
        (dict(carry_tokens=-2), "carry_tokens=-2: must be >= 0"),
    ],
)
def test_invalid_config_raises(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(SMALL, **overrides)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(num_tokens=0), "num_tokens=0"),
        (dict(low_rank=-1), "low_rank=-1"),
        (dict(cross_behavior=False, cross_feature=False), "at least one branch"),
        (dict(fusion="max"), "fusion='max'"),
    ],
)
def test_invalid_layer_config_raises(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MixerLayerConfig(**{**dict(num_tokens=4, num_features=2, dim=3), **overrides})


def test_bad_inputs_raise() -> None:
    model = build(SMALL)
    tokens, mask, target = make_inputs(SMALL)
    with pytest.raises(ValueError, match=r"expected B X 24 X 4 X 8"):
        model(tokens[:, :20], mask[:, :20], target)
    with pytest.raises(ValueError, match="expected bool"):
        model(tokens, mask.float(), target)
    with pytest.raises(ValueError, match="target has shape"):
        model(tokens, mask, target[:, :1])


def test_config_details() -> None:
    assert PyramidMixerConfig(level_tokens=[8, 8]).level_tokens == (8, 8)  # a YAML list is accepted
    # low_rank >= T is allowed: that level's token mixing is full rank (rank min(r, T))
    model = PyramidMixer(PyramidMixerConfig(level_tokens=(3, 40), low_rank=16, carry_tokens=2))
    assert [level.layers[0].cb.token_down.out_features for level in model.levels] == [3, 16]
    meta = PyramidMixer(SMALL, device=torch.device("meta"))
    assert all(p.is_meta for p in meta.parameters())


@pytest.mark.parametrize("name", [None, *ABLATIONS])
def test_gradients_reach_every_parameter(name: str) -> None:
    """No unused parameter, in the default switches and in every ablation, and every gradient in its
    parameter's layout (DistributedDataParallel needs both; a gradient with other strides, such as the one
    einsum gave the single period's 1 X 2 cross-period weight, makes it warn and copy at every step)."""
    config = PyramidMixerConfig(level_tokens=(8, 8, 8), dim=D, out_dim=16)  # default switches, small shapes
    config = dataclasses.replace(config, **ABLATIONS.get(name, {}))
    model = build(config)
    model(*make_inputs(config, batch=6)).square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    assert [n for n, p in model.named_parameters() if p.grad.stride() != p.stride()] == []


def reference_layer(layer: MixerLayer, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A slow MixerLayer in the batch-major layout, with Python loops over examples and (feature, channel)."""
    z = z.transpose(0, 1)  # B X T X F X D
    m = mask.t()[:, :, None, None].to(z.dtype)  # B X T X 1 X 1
    h = layer.norm(z) * m

    def channel(mlp: mixer_layer.ChannelMlp, x: torch.Tensor) -> torch.Tensor:
        return x + mlp.fc2(functional.gelu(mlp.fc1(mlp.norm(x))))

    def cross_behavior(cb: mixer_layer.CrossBehaviorMixer) -> torch.Tensor:
        u = torch.zeros_like(z)
        Bz, _, F, D = z.shape
        for b in range(Bz):
            for f in range(F):
                for d in range(D):
                    u[b, :, f, d] = cb.token_up(functional.gelu(cb.token_down(h[b, :, f, d])))
        return channel(cb.channel, z + u * m)

    def cross_feature(cf: mixer_layer.CrossFeatureMixer) -> torch.Tensor:
        flat = h.flatten(2)  # B X T X (F·D)
        return z + cf.feature_up(functional.gelu(cf.feature_down(flat))).view(z.shape)

    if layer.cf is None:
        y = cross_behavior(layer.cb)
    elif layer.cb is None:
        y = cross_feature(layer.cf)
    else:
        cb, cf = cross_behavior(layer.cb), cross_feature(layer.cf)
        if layer.gate is None:
            y = cb + cf - z
        else:
            n = m.sum(1).clamp(min=1)  # B X 1 X 1
            summary = torch.cat([((cb * m).sum(1) / n).flatten(1), ((cf * m).sum(1) / n).flatten(1)], 1)
            a = torch.sigmoid(layer.gate.proj(summary))[:, None, :, None]  # B X 1 X F X 1
            y = a * cb + (1 - a) * cf
    return y.transpose(0, 1)  # T X B X F X D


@settings(max_examples=25, deadline=None)
@given(
    T=st.integers(1, 7),
    F=st.integers(1, 3),
    dim=st.integers(1, 4),
    low_rank=st.integers(0, 8),
    branches=st.sampled_from([(True, True), (True, False), (False, True)]),
    fusion=st.sampled_from(["gate", "sum"]),
    seed=st.integers(0, 2**16),
)
def test_mixer_layer_matches_slow_reference(T, F, dim, low_rank, branches, fusion, seed) -> None:
    torch.manual_seed(seed)
    config = MixerLayerConfig(T, F, dim, low_rank, 2, branches[0], branches[1], fusion)
    layer = MixerLayer(config)
    for p in layer.parameters():  # the gate starts at zero; make every parameter matter
        torch.nn.init.normal_(p, std=0.5)
    mask = torch.rand(T, 3) < 0.7
    z = torch.randn(T, 3, F, dim) * mask[:, :, None, None]
    out = layer(z, mask)
    real = mask[:, :, None, None].expand_as(out)
    torch.testing.assert_close(out[real], reference_layer(layer, z, mask)[real], rtol=1e-5, atol=1e-5)


@settings(max_examples=15, deadline=None)
@given(
    level_tokens=st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple),
    carry_tokens=st.integers(0, 3),
    layers=st.integers(1, 2),
    seed=st.integers(0, 2**16),
)
def test_padding_invariance_sweep(level_tokens, carry_tokens, layers, seed) -> None:
    config = PyramidMixerConfig(
        level_tokens=level_tokens, num_features=2, dim=4, carry_tokens=carry_tokens, layers_per_level=layers, out_dim=8
    )
    model = build(config, seed)
    tokens, mask, target = make_inputs(config, seed)
    dirty = torch.where(mask[:, :, None, None], tokens, torch.full_like(tokens, -7.5e5))
    out = model(tokens, mask, target)
    assert torch.isfinite(out).all()
    assert torch.equal(model(dirty, mask, target), out)


def test_query_starts_aligned_with_the_candidates_own_features() -> None:
    """Target feature f reads token feature f at initialisation (they share tables), for every level."""
    config = PyramidMixerConfig(level_tokens=(4, 4), num_features=3, dim=8, num_target_features=2, out_dim=8)
    tower = PyramidMixer(config)
    target = torch.randn(5, 2, 8)
    q = tower.readout.query(target.reshape(5, 16)).view(5, 2, 3, 8)  # B X K X F X D
    for k in range(2):
        assert torch.equal(q[:, k, :2], target)
        assert torch.equal(q[:, k, 2], torch.zeros(5, 8))


@pytest.mark.parametrize("init", [0.5, 0.95, 0.2])
def test_fusion_gate_starts_at_its_configured_share_for_every_input(init: float) -> None:
    from pyramid_mixer.ranking.towers.mixer_layer import FusionGate

    gate = FusionGate(num_features=3, dim=4, init=init)
    cb, cf = torch.randn(5, 2, 3, 4), torch.randn(5, 2, 3, 4)
    mask = torch.ones(5, 2, dtype=torch.bool)
    torch.testing.assert_close(gate(cb, cf, mask), init * cb + (1 - init) * cf)


def test_gate_init_outside_the_unit_interval_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"gate_init=1.0: must be in \(0, 1\)"):
        PyramidMixer(PyramidMixerConfig(level_tokens=(4,), num_features=2, dim=4, gate_init=1.0))
