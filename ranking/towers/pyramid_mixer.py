"""The Pyramid Mixer tower: a pyramid of mixer layers over short, middle and long periods of the history.

Gong et al., "Pyramid Mixer: Multi-dimensional Multi-period Interest Modeling for Sequential
Recommendation", SIGIR 2025. Only the slides are available; they name the components, and
``docs/design.md`` says how each one is realised here. The paper's: mixer layers with a cross-behavior and a
cross-feature mixer and an adaptive fusion (``mixer_layer.py``), a pyramid yielding short-, middle- and
long-period interests, the low-rank decomposition, the multi-scale cross-period module. Ours: the
equations of every part, the gate's inputs, periods as levels of pooled tokens, the carry merge between
levels, the period pooling, and the target-aware readout. Pipeline, for K levels:

1. Level k (short first) takes its ``T_k`` tokens, prepends the ``carry_tokens`` tokens carried from level
   k - 1, and runs ``layers_per_level`` mixer layers and a LayerNorm over them.
2. Carry merge (ours): ``carry_tokens`` masked-softmax poolings of those tokens (a content score plus a
   learned positional prior per carry token) are carried to level k + 1, real when level k had a real
   token. So the middle level mixes a summary of the short one and the long level a summary of both.
3. Period tokens: the masked mean of each level's own tokens, ``B X K X F X D``; the cross-period module
   mixes them along K, then along the F·D features of each period token.
4. Readout (ours): per level, DIN's attention unit (``target_attention.py``) scores each of the level's own
   tokens against the candidate (its ``Ft X D`` embeddings, layer-normed) and the tokens are summed with
   those weights, unnormalised as in DIN, so that how many behaviours of a period match the candidate reaches
   the output, not only which ones; ``target_aware=False`` pools by masked softmax against a learned query
   per level instead. The K pooled vectors, the K period tokens and the match terms (the candidate projected
   to F·D times each level's pooled vector and mean token, so that how well the history matches the
   candidate reaches the output as a product rather than something an MLP must learn to multiply),
   concatenated, are projected to ``out_dim``.

A level with no real token contributes zeros to the readout and to the period tokens; nothing divides by
zero or takes a softmax over nothing. Padded token slots are ignored: whatever they hold (even NaN), the
output is bit-identical.

Every part draws its initial weights from its own named stream (``init_streams.py``), so an ablation
starts the parts it keeps from the same weights as the full tower does.

Inside, tokens are time-major (``T X B X F X D``, one transpose at the input), so that every token mixing,
per-token MLP and pooling is one matmul without a permute copy (see ``mixer_layer.py``). The parts, one
module each: ``PyramidLevel`` (steps 1-2, ``pyramid_levels.py``), ``CrossPeriodMixer`` (step 3,
``cross_period.py``), ``TargetAwareReadout`` / ``LearnedQueryReadout`` (step 4, ``readouts.py``).
"""

import dataclasses
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from pyramid_mixer.ranking.towers.cross_period import CrossPeriodMixer
from pyramid_mixer.ranking.towers.init_streams import init_stream
from pyramid_mixer.ranking.towers.mixer_layer import MixerLayerConfig, check_branches
from pyramid_mixer.ranking.towers.pyramid_levels import LevelsTimeMajor, PyramidLevel
from pyramid_mixer.ranking.towers.readouts import LearnedQueryReadout, TargetAwareReadout


@dataclass(frozen=True)
class PyramidMixerConfig:
    """Shape and ablation switches of the Pyramid Mixer; checked when built.

    Args:
        level_tokens: T_k tokens per level, short -> middle -> long; ``(96,)`` is the one-level ablation.
        num_features: F per-behaviour features (item, author, action, time-gap bucket).
        dim: D, embedding width of every token feature.
        num_target_features: Ft, the candidate's features (item, author) used as the readout query.
        layers_per_level: mixer layers per level.
        low_rank: r of the token mixing (``V: r X T``) and of the CF factorisation (hidden ``expansion·F·r``);
            0 = full rank (ablation). ``r >= T_k`` is allowed: that level's token mixing is then full rank.
        cross_behavior: the CB branch (ablation: False).
        cross_feature: the CF branch (ablation: False); not both False.
        fusion: ``"gate"`` (adaptive) or ``"sum"``.
        gate_init: the gate's starting share of the cross-behaviour branch (see ``mixer_layer.FusionGate``).
        carry_tokens: tokens carried from level k to level k + 1; 0 disables carrying. Only the CB token
            mixing reads carried tokens, so with ``cross_behavior=False`` nothing is carried (no dead merge).
        cross_period: the multi-scale cross-period module (ablation: False uses the period tokens unmixed).
        target_aware: the candidate queries the readout (ablation: False uses a learned query).
        readout_hidden: width of each level's attention unit in the target-aware readout.
        query_norm: a learned LayerNorm over the candidate's ``Ft X D`` embeddings before the readout (its
            attention units and the match terms' projection). The model already layer-norms the candidate
            without affine (the history encoder's ``input_norm``); this one adds a learned scale and shift, and
            keeps the tower usable alone on raw embeddings.
        expansion: hidden multiplier of the channel MLPs.
        out_dim: width of the tower's output.
    """

    level_tokens: Tuple[int, ...] = (32, 32, 32)
    num_features: int = 4
    dim: int = 16
    num_target_features: int = 2
    layers_per_level: int = 1
    low_rank: int = 8
    cross_behavior: bool = True
    cross_feature: bool = True
    fusion: str = "gate"
    gate_init: float = 0.95
    carry_tokens: int = 2
    cross_period: bool = True
    target_aware: bool = True
    readout_hidden: int = 64
    query_norm: bool = True
    expansion: int = 2
    out_dim: int = 64

    def __post_init__(self) -> None:
        object.__setattr__(self, "level_tokens", tuple(self.level_tokens))  # a YAML list becomes a tuple
        if not self.level_tokens or min(self.level_tokens) < 1:
            raise ValueError(
                f"PyramidMixerConfig.level_tokens={self.level_tokens}: need one or more levels, each >= 1 token"
            )
        for name in ("num_features", "dim", "num_target_features", "layers_per_level", "expansion", "out_dim",
                     "readout_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"PyramidMixerConfig.{name}={getattr(self, name)}: must be >= 1")
        for name in ("low_rank", "carry_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"PyramidMixerConfig.{name}={getattr(self, name)}: must be >= 0 (0 switches it off)")
        check_branches(self.cross_behavior, self.cross_feature, self.fusion)

    def without_unused(self) -> "PyramidMixerConfig":
        """This config with every field its switches leave unread at its default: the gate's settings
        without a gate (one branch off, or ``fusion="sum"``), the carry without the cross-behaviour branch,
        the readout's width and query norm without the target-aware readout. Two configs that agree here
        build the same tower: the same weights from the same seed, the same outputs."""
        default = PyramidMixerConfig()
        unused = []
        if not (self.cross_behavior and self.cross_feature):
            unused += ["fusion", "gate_init"]
        elif self.fusion != "gate":
            unused += ["gate_init"]
        if not self.cross_behavior:
            unused += ["carry_tokens"]
        if not self.target_aware:
            unused += ["readout_hidden", "query_norm"]
        return dataclasses.replace(self, **{name: getattr(default, name) for name in unused})


class PyramidMixer(nn.Module):
    """The Pyramid Mixer interaction tower: history tokens and the candidate -> one vector per example.

    Args:
        config (PyramidMixerConfig): shape and ablation switches.
        device (Optional[torch.device]): where to allocate parameters (``"meta"`` works).

    Call with:
        tokens (Tensor): B X S X F X D float, ``S = sum(level_tokens)``, levels concatenated short first, each
            level's tokens most recent first; padded slots may hold anything.
        mask (Tensor): B X S bool, True = real token.
        target (Tensor): B X Ft X D, the candidate's embeddings from the same tables as the history
            (ignored when ``target_aware=False``).

    Returns:
        Tensor: B X out_dim.

    Example::

        >>> config = PyramidMixerConfig(level_tokens=(4, 4, 4), num_features=3, dim=8, out_dim=16)
        >>> tower = PyramidMixer(config)
        >>> tokens, target = torch.randn(2, 12, 3, 8), torch.randn(2, 2, 8)
        >>> mask = torch.arange(12) < torch.tensor([[12], [3]])  # B X S: a full and a short history
        >>> tower(tokens, mask, target).shape
        torch.Size([2, 16])
    """

    def __init__(self, config: PyramidMixerConfig, device: Optional[torch.device] = None) -> None:
        super().__init__()
        self.config = config
        K, C = len(config.level_tokens), config.carry_tokens if config.cross_behavior else 0
        F, D = config.num_features, config.dim
        self.levels = nn.ModuleList()
        for k, T_k in enumerate(config.level_tokens):
            layer = MixerLayerConfig(
                num_tokens=T_k + (C if k > 0 else 0),
                num_features=F,
                dim=D,
                low_rank=config.low_rank,
                expansion=config.expansion,
                cross_behavior=config.cross_behavior,
                cross_feature=config.cross_feature,
                fusion=config.fusion,
                gate_init=config.gate_init,
            )
            self.levels.append(PyramidLevel(k, layer, config.layers_per_level, C if k < K - 1 else 0, device))
        with init_stream("cross_period"):
            self.cross_period = CrossPeriodMixer(K, F, D, config.expansion, device) if config.cross_period else None
        self.readout: nn.Module
        if config.target_aware:
            self.readout = TargetAwareReadout(K, F, D, config.num_target_features, config.readout_hidden,
                                              config.query_norm, device)
        else:
            self.readout = LearnedQueryReadout(K, F * D, device)
        with init_stream("out"):
            self.out = nn.Linear(4 * K * F * D, config.out_dim, device=device)

    def _check(self, tokens: Tensor, mask: Tensor) -> None:
        c = self.config
        S, F, D = sum(c.level_tokens), c.num_features, c.dim
        if tokens.dim() != 4 or tuple(tokens.shape[1:]) != (S, F, D):
            raise ValueError(
                f"tokens has shape {tuple(tokens.shape)}, expected B X {S} X {F} X {D} "
                f"(sum(level_tokens={c.level_tokens}) X num_features X dim)"
            )
        if mask.dtype != torch.bool or tuple(mask.shape) != tuple(tokens.shape[:2]):
            expected = tuple(tokens.shape[:2])
            raise ValueError(f"mask is {mask.dtype} {tuple(mask.shape)}, expected bool B X S = {expected}")

    def _time_major(self, tokens: Tensor, mask: Tensor) -> Sequence[Tensor]:
        """Per level, its tokens ``T_k X B X F X D`` (time-major, contiguous), zero at padded slots."""
        return LevelsTimeMajor.apply(tokens, mask, list(self.config.level_tokens))

    def _encode(self, tokens: Tensor, mask: Tensor) -> List[Tuple[Tensor, Tensor]]:
        """The pyramid, time-major: per level, its own tokens ``T_k X B X F X D`` and mask ``T_k X B``. Padded
        slots hold finite values that depend on the parameters and the real tokens only; pool with the mask."""
        self._check(tokens, mask)
        own_masks = mask.t().contiguous().split(self.config.level_tokens)  # T_k X B each
        outs: List[Tuple[Tensor, Tensor]] = []
        carry: Optional[Tuple[Tensor, Tensor]] = None
        for level, x, m in zip(self.levels, self._time_major(tokens, mask), own_masks):
            if carry is None:
                own, carry = level(x, m, x.size(0))
            else:  # the carried tokens first: (C + T_k) X B X F X D
                own, carry = level(torch.cat([carry[0], x]), torch.cat([carry[1], m]), x.size(0))
            outs.append((own, m))
        return outs

    def encode_levels(self, tokens: Tensor, mask: Tensor) -> List[Tensor]:
        """Runs the pyramid; returns each level's own tokens after its mixer layers and norm.

        Args:
            tokens (Tensor): B X S X F X D, as for ``forward``.
            mask (Tensor): B X S bool.

        Returns:
            List[Tensor]: K tensors ``B X T_k X F X D`` (transposed views of the time-major states; carried
            tokens dropped), zero at padded slots.
        """
        return [torch.where(m[:, :, None, None], x, 0.0).transpose(0, 1) for x, m in self._encode(tokens, mask)]

    def forward(self, tokens: Tensor, mask: Tensor, target: Tensor) -> Tensor:
        """``tokens: B X S X F X D``, ``mask: B X S``, ``target: B X Ft X D`` -> ``B X out_dim`` (see the class)."""
        levels = self._encode(tokens, mask)
        B, K, F, D = tokens.size(0), len(levels), self.config.num_features, self.config.dim
        pooled, query = self.readout(levels, target)  # B X K X 2 X (F·D): attention, mean; B X K X (F·D)
        match = pooled * query.unsqueeze(2)  # the match terms
        p = pooled[:, :, 1].reshape(B, K, F, D)  # B X K X F X D, the period tokens
        if self.cross_period is not None:
            p = self.cross_period(p, torch.stack([m.any(0) for _, m in levels], 1))
        parts = [pooled[:, :, 0].reshape(B, K * F * D), p.reshape(B, K * F * D), match.reshape(B, 2 * K * F * D)]
        return self.out(torch.cat(parts, 1))
