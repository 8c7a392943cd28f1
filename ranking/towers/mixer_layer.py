"""One mixer layer of the Pyramid Mixer: cross-behaviour mixer, cross-feature mixer, adaptive fusion.

The slides of Gong et al. (SIGIR 2025) name the parts: a **cross-behavior** mixer and a **cross-feature**
mixer inside each mixer layer, an **adaptive fusion** module that combines them, and a **low-rank
decomposition** against over-parameterisation. The equations are ours (``docs/design.md`` tells the slides'
parts from our choices):

- CB, cross-behaviour: ``Z + U act(V LN(Z))`` mixes the T tokens for every (feature, channel) pair, with
  ``V: r X T`` and ``U: T X r`` (rank r), then a channel MLP along D shared by all tokens and features.
- CF, cross-feature: per token, a residual MLP on the flattened ``F·D`` vector, so it mixes the features
  and their channels in one step (it is CF's channel MLP too). Its hidden width is ``expansion·F·min(r, D)``
  (the low-rank factorisation: r per feature), or ``expansion·F·D`` when ``r = 0``.
- Fusion: ``Y = a * CB(Z) + (1 - a) * CF(Z)`` with ``a = sigmoid(W [pool(CB(Z)), pool(CF(Z))] + b)`` per
  example and per feature; the pooled summaries are masked means over the real tokens (our choice of gate
  input); ``W`` starts at zero and ``b`` at ``logit(gate_init)`` (0.95: the layer starts mostly on CB).
  ``"sum"`` adds both branches' updates to one skip path, ``Y = Z + (CB(Z) - Z) + (CF(Z) - Z)``.

Layout: tokens are **time-major**, ``T X B X F X D`` (as ``nn.GRU`` without ``batch_first``), so that the token
mixing is one plain matmul ``(r X T) @ (T X B·F·D)`` and every per-token MLP one matmul over ``T·B`` rows,
with no permute copy anywhere. Both branches share the layer's pre-norm ``LN(Z)`` (over F X D per token).
Padded tokens are zeroed after the norm, so the token mixing never reads them. A padded slot of a layer's
output holds a finite value that no real token ever reads; pool with the mask. The residual adds are fused
into the second matmul of the MLPs and of the token mixing (``addmm``), which therefore has no bias.
"""

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn import functional

from pyramid_mixer.ranking.towers.init_streams import init_stream

FUSIONS = ("gate", "sum")


def check_branches(cross_behavior: bool, cross_feature: bool, fusion: str) -> None:
    """Raises ValueError unless at least one branch is on and ``fusion`` is one of ``FUSIONS``."""
    if not (cross_behavior or cross_feature):
        raise ValueError(
            "cross_behavior=False and cross_feature=False: a mixer layer needs at least one branch; "
            "to ablate a branch, switch off only that one"
        )
    if fusion not in FUSIONS:
        raise ValueError(f"fusion={fusion!r} is not one of {FUSIONS} ('gate': adaptive fusion, 'sum': plain sum)")


@dataclass(frozen=True)
class MixerLayerConfig:
    """Shape and switches of one mixer layer.

    Args:
        num_tokens: T, tokens the layer mixes (a level's tokens plus the tokens carried into it).
        num_features: F, features per token.
        dim: D, channels per feature.
        low_rank: r of the token mixing; 0 = full rank (T X T). ``r >= T`` is allowed and is full rank
            too (the rank is ``min(r, T)``), so a short level needs no special config.
        expansion: hidden multiplier of the channel MLPs.
        cross_behavior: build the CB branch.
        cross_feature: build the CF branch.
        fusion: ``"gate"`` or ``"sum"``; used only when both branches are on.
        gate_init: the gate's starting share of the CB branch (the CF branch gets the rest).
    """

    num_tokens: int
    num_features: int
    dim: int
    low_rank: int = 8
    expansion: int = 2
    cross_behavior: bool = True
    cross_feature: bool = True
    fusion: str = "gate"
    gate_init: float = 0.95

    def __post_init__(self) -> None:
        for name in ("num_tokens", "num_features", "dim", "expansion"):
            if getattr(self, name) < 1:
                raise ValueError(f"MixerLayerConfig.{name}={getattr(self, name)}: must be >= 1")
        if self.low_rank < 0:
            raise ValueError(f"MixerLayerConfig.low_rank={self.low_rank}: must be >= 0 (0 = full rank)")
        check_branches(self.cross_behavior, self.cross_feature, self.fusion)
        if not 0.0 < self.gate_init < 1.0:
            raise ValueError(f"MixerLayerConfig.gate_init={self.gate_init}: must be in (0, 1)")


def pool_tokens(x: Tensor, weights: Tensor) -> Tensor:
    """K weighted sums over the tokens: ``x: T X B X C``, ``weights: T X B X K`` -> ``B X K X C`` (one bmm)."""
    return torch.bmm(weights.permute(1, 2, 0), x.transpose(0, 1))  # B X K X T @ B X T X C -> B X K X C


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x: T X B X C`` over the tokens where ``mask: T X B`` is True -> ``B X C``; zeros where none is."""
    w = mask.to(x.dtype)  # T X B
    w = w / w.sum(0).clamp(min=1.0)
    return (x * w[:, :, None]).sum(0)  # T X B X C -> B X C


def masked_softmax(logits: Tensor, mask: Tensor, dim: int) -> Tensor:
    """Softmax of ``logits`` along ``dim`` over the True entries of ``mask`` (broadcastable); an all-False
    slice gives all-zero weights, never NaN."""
    w = logits.masked_fill(~mask, torch.finfo(logits.dtype).min).softmax(dim)
    return w * mask


class ChannelMlp(nn.Module):
    """Residual MLP along the channels: ``z + W2 act(W1 LN(z) + b1)``, W1: D -> expansion·D, shared by every token
    and feature; LN is over F X D per token. The residual add is fused into the second matmul (``addmm``),
    which therefore has no bias.

    Args:
        num_features (int): F.
        dim (int): D.
        expansion (int): hidden multiplier.
        device (Optional[torch.device]): where to allocate parameters.

    Shapes: ``T X B X F X D -> T X B X F X D``.
    """

    def __init__(self, num_features: int, dim: int, expansion: int, device: Optional[torch.device] = None) -> None:
        super().__init__()
        self.norm = nn.LayerNorm((num_features, dim), device=device)
        self.fc1 = nn.Linear(dim, expansion * dim, device=device)
        self.fc2 = nn.Linear(expansion * dim, dim, bias=False, device=device)

    def forward(self, z: Tensor) -> Tensor:
        T, B, F, D = z.shape
        hidden = functional.gelu(self.fc1(self.norm(z))).view(T * B * F, -1)  # (T·B·F) X expansion·D
        return torch.addmm(z.reshape(T * B * F, D), hidden, self.fc2.weight.t()).view(T, B, F, D)


class CrossBehaviorMixer(nn.Module):
    """CB: low-rank token mixing along T for every (feature, channel), then a channel MLP.

    The token mixing is two matmuls over all B·F·D columns at once, ``V @ h`` and ``Z + U @ act(.)``, with
    ``h = LN(Z)`` (padded tokens zero) and the residual fused into the second (``addmm``). Its output at a
    padded token is finite and read by no real token (every reader masks), so it is left unmasked.

    Args:
        config (MixerLayerConfig): shape and rank.
        device (Optional[torch.device]): where to allocate parameters.
    """

    def __init__(self, config: MixerLayerConfig, device: Optional[torch.device] = None) -> None:
        super().__init__()
        T = config.num_tokens
        rank = min(config.low_rank, T) if config.low_rank > 0 else T
        self.token_down = nn.Linear(T, rank, device=device)  # V: r X T
        self.token_up = nn.Linear(rank, T, bias=False, device=device)  # U: T X r
        self.channel = ChannelMlp(config.num_features, config.dim, config.expansion, device)

    def forward(self, z: Tensor, h: Tensor) -> Tensor:
        """
        Args:
            z (Tensor): T X B X F X D, the layer input.
            h (Tensor): T X B X F X D, ``LN(z)`` with padded tokens zeroed.

        Returns:
            Tensor: T X B X F X D.
        """
        T, B, F, D = z.shape
        u = torch.addmm(self.token_down.bias[:, None], self.token_down.weight, h.view(T, B * F * D))  # r X (B·F·D)
        u = torch.addmm(z.view(T, B * F * D), self.token_up.weight, functional.gelu(u))  # Z + U act(V h)
        return self.channel(u.view(T, B, F, D))


class CrossFeatureMixer(nn.Module):
    """CF: per token, a residual MLP on the flattened F·D vector (mixes features and channels).

    Hidden width ``expansion·F·min(r, D)`` when ``config.low_rank = r > 0``, else ``expansion·F·D``.

    Args:
        config (MixerLayerConfig): shape and rank.
        device (Optional[torch.device]): where to allocate parameters.
    """

    def __init__(self, config: MixerLayerConfig, device: Optional[torch.device] = None) -> None:
        super().__init__()
        F, D, r = config.num_features, config.dim, config.low_rank
        hidden = config.expansion * F * (min(r, D) if r > 0 else D)
        self.feature_down = nn.Linear(F * D, hidden, device=device)
        self.feature_up = nn.Linear(hidden, F * D, bias=False, device=device)

    def forward(self, z: Tensor, h: Tensor) -> Tensor:
        """``z, h: T X B X F X D`` (``h = LN(z)``) -> ``T X B X F X D``; acts on each token alone."""
        T, B, F, D = z.shape
        u = functional.gelu(self.feature_down(h.view(T * B, F * D)))  # (T·B) X hidden
        return torch.addmm(z.reshape(T * B, F * D), u, self.feature_up.weight.t()).view(T, B, F, D)  # + residual


class FusionGate(nn.Module):
    """Adaptive fusion ``a * cb + (1 - a) * cf`` with ``a: B X F`` from masked-mean summaries of both branches.

    The gate's projection weights start at zero and its bias at ``logit(init)``, so the layer starts as the
    mix ``a = init`` for every example. Starting mostly on CB (0.95) keeps each token's features apart (as
    they come from the tables the candidate's features come from) while the gate learns how much feature
    mixing to admit: on the planted logs an even start (0.5) lost 0.014 click AUC (4 seeds) with a softmax
    readout, 0.001 with the DIN-unit readout (4 seeds; 0.8 lost 0.005 over 3).

    Args:
        num_features (int): F.
        dim (int): D.
        init (float): the starting share ``a`` of the CB branch, in (0, 1).
        device (Optional[torch.device]): where to allocate parameters.
    """

    def __init__(self, num_features: int, dim: int, init: float = 0.5, device: Optional[torch.device] = None) -> None:
        super().__init__()
        self.proj = nn.Linear(2 * num_features * dim, num_features, device=device)
        nn.init.zeros_(self.proj.weight)
        nn.init.constant_(self.proj.bias, math.log(init / (1.0 - init)))

    def forward(self, cb: Tensor, cf: Tensor, mask: Tensor) -> Tensor:
        """``cb, cf: T X B X F X D``, ``mask: T X B`` -> ``T X B X F X D``."""
        T, B, F, D = cb.shape
        summary = torch.cat([masked_mean(cb.view(T, B, F * D), mask), masked_mean(cf.view(T, B, F * D), mask)], 1)
        a = torch.sigmoid(self.proj(summary))  # B X 2·F·D -> B X F
        # laid out as 1 X B X F X D: broadcast over T only, so lerp and its backward run along contiguous rows
        # (a B X F X 1 weight broadcast along D made the backward's products several times slower)
        a = a[:, :, None].expand(B, F, D).reshape(1, B, F, D)
        return torch.lerp(cf, cb, a)  # cf + a * (cb - cf)


class MixerLayer(nn.Module):
    """One mixer layer: shared pre-norm, CB and/or CF, fused by the gate or a sum.

    Args:
        config (MixerLayerConfig): shape and switches.
        device (Optional[torch.device]): where to allocate parameters.

    Call with ``z: T X B X F X D`` (time-major, contiguous, finite) and ``mask: T X B`` bool (True = real
    token); returns ``T X B X F X D``. Real tokens never read padded ones, whatever finite values those hold.

    Example::

        >>> layer = MixerLayer(MixerLayerConfig(num_tokens=5, num_features=3, dim=4, low_rank=2))
        >>> mask = torch.tensor([[True] * 5, [True, True, False, False, False]]).t()  # T X B
        >>> layer(torch.randn(5, 2, 3, 4), mask).shape
        torch.Size([5, 2, 3, 4])
    """

    def __init__(self, config: MixerLayerConfig, device: Optional[torch.device] = None) -> None:
        super().__init__()
        self.norm = nn.LayerNorm((config.num_features, config.dim), device=device)
        # each branch draws its initial weights from its own stream: switching one off leaves the other's alone
        with init_stream("cb"):
            self.cb = CrossBehaviorMixer(config, device) if config.cross_behavior else None
        with init_stream("cf"):
            self.cf = CrossFeatureMixer(config, device) if config.cross_feature else None
        both = config.cross_behavior and config.cross_feature
        gated = both and config.fusion == "gate"
        self.gate = FusionGate(config.num_features, config.dim, config.gate_init, device) if gated else None

    def forward(self, z: Tensor, mask: Tensor) -> Tensor:
        h = self.norm(z)
        # T X B X F X D, padded tokens zero: a product, as z is finite (torch.where on a broadcast mask is
        # several times slower here, forward and backward)
        h = h * mask[:, :, None, None].to(h.dtype)
        if self.cf is None:
            return self.cb(z, h)
        if self.cb is None:
            return self.cf(z, h)
        if self.gate is None:
            return (self.cb(z, h) + self.cf(z, h)).sub_(z)
        return self.gate(self.cb(z, h), self.cf(z, h), mask)
