"""The Pyramid Mixer tower: a pyramid of mixer layers over short, middle and long periods of the history.

Gong et al., "Pyramid Mixer: Multi-dimensional Multi-period Interest Modeling for Sequential
Recommendation", SIGIR 2025. Only the slides are available; they name the components and the design in
``shared/design/pyramid-mixer.md`` realises each one. The paper's: mixer layers with a cross-behavior and a
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
per-token MLP and pooling is one matmul without a permute copy (see ``mixer_layer.py``).
"""

import dataclasses
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional

from pyramid_mixer.ranking.towers.init_streams import init_stream
from pyramid_mixer.ranking.towers.mixer_layer import MixerLayer, MixerLayerConfig, check_branches, masked_softmax, pool_tokens
from pyramid_mixer.ranking.towers.target_attention import TargetAttentionUnit


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
            without affine (``RankingModel``'s ``input_norm``); this one adds a learned scale and shift, and
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


class LevelsTimeMajor(torch.autograd.Function):
    """``tokens: B X S X F X D`` -> each level's tokens, ``T_k X B X F X D`` (time-major, contiguous), zero where
    ``mask: B X S`` is False whatever the slot held (NaN too). Its backward writes the gradient straight into
    the batch-major layout, zero at padded slots: one pass per level, where autograd's own backward of the
    same forward (mask, split, transpose) took three over the whole history (mask, concatenate, transpose).
    Apply as ``LevelsTimeMajor.apply(tokens, mask, level_tokens)``."""

    @staticmethod
    def forward(ctx, tokens: Tensor, mask: Tensor, sizes: List[int]) -> Tuple[Tensor, ...]:  # type: ignore[override]
        ctx.save_for_backward(mask)
        ctx.sizes = sizes
        mask_t = mask.t().contiguous()  # S X B: a transposed mask would give torch.where a non-contiguous output
        return tuple(torch.where(m[:, :, None, None], x.transpose(0, 1), 0.0).contiguous()
                     for x, m in zip(tokens.split(sizes, 1), mask_t.split(sizes)))

    @staticmethod
    def backward(ctx, *grads: Optional[Tensor]) -> Tuple[Optional[Tensor], None, None]:  # type: ignore[override]
        (mask,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        like = next(g for g in grads if g is not None)
        grad = torch.empty(mask.shape + like.shape[2:], dtype=like.dtype, device=like.device)  # B X S X F X D
        weights = mask[:, :, None, None].to(like.dtype)
        for g, out, w in zip(grads, grad.split(ctx.sizes, 1), weights.split(ctx.sizes, 1)):
            if g is None:
                out.zero_()
            else:
                torch.mul(g.transpose(0, 1), w, out=out)  # B X T_k X F X D, written in place
        return grad, None, None


class CarryMerge(nn.Module):
    """Compresses a level's T tokens into C carry tokens by C masked softmax poolings over T.

    The score of token t for carry token c is ``w_c · flat(x_t) + p_{t,c}`` (content plus a learned positional
    prior, zero at start). Returns the carry tokens and their mask (True where the level had a real token).

    Args:
        num_tokens (int): T.
        num_features (int): F.
        dim (int): D.
        carry_tokens (int): C.
        device (Optional[torch.device]): where to allocate parameters.

    Shapes: ``x: T X B X F X D``, ``mask: T X B`` -> ``C X B X F X D``, ``C X B`` (time-major).
    """

    def __init__(
        self, num_tokens: int, num_features: int, dim: int, carry_tokens: int, device: Optional[torch.device] = None
    ) -> None:
        super().__init__()
        # no bias: a constant per carry token cancels in the softmax over T (it would get no gradient)
        self.score = nn.Linear(num_features * dim, carry_tokens, bias=False, device=device)
        self.position = nn.Parameter(torch.zeros(num_tokens, 1, carry_tokens, device=device))

    def forward(self, x: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor]:
        T, B, F, D = x.shape
        flat = x.view(T, B, F * D)  # T X B X (F·D)
        w = masked_softmax(self.score(flat) + self.position, mask[:, :, None], dim=0)  # T X B X C
        carry = pool_tokens(flat, w).transpose(0, 1)  # B X C X (F·D) -> C X B X (F·D)
        C = carry.size(0)
        return carry.reshape(C, B, F, D), mask.any(0, keepdim=True).expand(C, B)


class CrossPeriodMixer(nn.Module):
    """Multi-scale cross-period module: mixes the K period tokens along K, then along each token's F·D features.

    Both steps are residual MLPs with a pre-norm over F X D; a period with no real token is zero in and out.

    Args:
        num_periods (int): K.
        num_features (int): F.
        dim (int): D.
        expansion (int): hidden multiplier.
        device (Optional[torch.device]): where to allocate parameters.

    Shapes: ``p: B X K X F X D``, ``mask: B X K`` -> ``B X K X F X D``.
    """

    def __init__(
        self, num_periods: int, num_features: int, dim: int, expansion: int, device: Optional[torch.device] = None
    ) -> None:
        super().__init__()
        K, C = num_periods, num_features * dim
        self.period_norm = nn.LayerNorm((num_features, dim), device=device)
        self.period_down = nn.Linear(K, expansion * K, device=device)
        self.period_up = nn.Linear(expansion * K, K, device=device)
        self.feature_norm = nn.LayerNorm((num_features, dim), device=device)
        self.feature_down = nn.Linear(C, expansion * C, device=device)
        self.feature_up = nn.Linear(expansion * C, C, device=device)

    def forward(self, p: Tensor, mask: Tensor) -> Tensor:
        B, K, F, D = p.shape
        empty = ~mask[:, :, None, None]  # B X K X 1 X 1
        h = self.period_norm(p).masked_fill(empty, 0.0).view(B, K, F * D)  # B X K X (F·D)
        # (H X K) @ (B X K X (F·D)), broadcast over B: unlike einsum, matmul's backward gives every weight a
        # gradient in the weight's own layout (also the 1 X H one of a single period), as DDP's buckets expect
        u = functional.gelu(torch.matmul(self.period_down.weight, h) + self.period_down.bias[:, None])
        u = torch.matmul(self.period_up.weight, u) + self.period_up.bias[:, None]  # B X K X (F·D)
        p = p + u.view(B, K, F, D)
        h = self.feature_norm(p).view(B, K, F * D)  # B X K X (F·D)
        p = p + self.feature_up(functional.gelu(self.feature_down(h))).view(B, K, F, D)
        return p.masked_fill(empty, 0.0)


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
        self.norms = nn.ModuleList()
        self.merges = nn.ModuleList()  # one per level that carries to a next one
        for k, T_k in enumerate(config.level_tokens):
            layer_config = MixerLayerConfig(
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
            layers = nn.ModuleList()
            for i in range(config.layers_per_level):
                with init_stream(f"level{k}.layer{i}"):
                    layers.append(MixerLayer(layer_config, device))
            self.levels.append(layers)
            self.norms.append(nn.LayerNorm((F, D), device=device))
            if C > 0 and k < K - 1:
                with init_stream(f"merge{k}"):
                    self.merges.append(CarryMerge(layer_config.num_tokens, F, D, C, device))
        with init_stream("cross_period"):
            self.cross_period = CrossPeriodMixer(K, F, D, config.expansion, device) if config.cross_period else None
        norm = config.target_aware and config.query_norm
        self.target_norm = nn.LayerNorm((config.num_target_features, D), device=device) if norm else None
        self.attention = nn.ModuleList()  # per level, the target-aware readout's attention unit
        if config.target_aware:
            self.query = nn.Linear(config.num_target_features * D, K * F * D, device=device)
            self._align_query(K, F, D, config.num_target_features)
            self.learned_query = None
            for k in range(K):
                with init_stream(f"readout{k}"):
                    self.attention.append(
                        TargetAttentionUnit(F * D, config.num_target_features * D, config.readout_hidden, device)
                    )
        else:
            self.query = None
            with init_stream("learned_query"):
                self.learned_query = nn.Parameter(torch.randn(K, F * D, device=device) * (F * D) ** -0.5)
        with init_stream("out"):
            self.out = nn.Linear(4 * K * F * D, config.out_dim, device=device)

    @torch.no_grad()
    def _align_query(self, K: int, F: int, D: int, Ft: int) -> None:
        """Starts each level's query at "the candidate's own features": target feature f multiplies token
        feature f (they come from the same tables), so the match terms measure how much the pooled tokens
        match the candidate from the first step instead of having to discover that alignment."""
        if self.query is None or not self.query.weight.is_floating_point() or self.query.weight.is_meta:
            return
        self.query.weight.zero_()
        self.query.bias.zero_()
        eye = torch.eye(Ft * D, device=self.query.weight.device)
        for k in range(K):
            self.query.weight[k * F * D : k * F * D + Ft * D] = eye  # rows: level k's features 0..Ft-1

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
        level_tokens = self.config.level_tokens
        levels = self._time_major(tokens, mask)
        mask = mask.t().contiguous()  # S X B
        outs: List[Tuple[Tensor, Tensor]] = []
        carry: Optional[Tuple[Tensor, Tensor]] = None
        for k, (x, m) in enumerate(zip(levels, mask.split(level_tokens))):
            own_mask = m
            if carry is not None:
                x = torch.cat([carry[0], x])  # (C + T_k) X B X F X D
                m = torch.cat([carry[1], m])  # (C + T_k) X B
            for layer in self.levels[k]:
                x = layer(x, m)
            x = self.norms[k](x)
            carry = self.merges[k](x, m) if k < len(self.merges) else None
            outs.append((x[x.size(0) - level_tokens[k] :], own_mask))  # T_k X B X F X D, contiguous
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
        if self.query is not None:
            Ft = self.config.num_target_features
            if tuple(target.shape) != (B, Ft, D):
                raise ValueError(f"target has shape {tuple(target.shape)}, expected B X Ft X D = {(B, Ft, D)}")
            if self.target_norm is not None:
                target = self.target_norm(target)
            t = target.reshape(1, B, Ft * D)  # broadcast over each level's tokens
            query = self.query(t[0]).view(B, K, F * D).transpose(0, 1)  # K X B X (F·D), for the match terms
        else:
            query = self.learned_query  # K X (F·D), the same for every example
        pooled = []
        for k, (x, m) in enumerate(levels):
            flat = x.view(x.size(0), B, F * D)  # T_k X B X (F·D)
            if self.query is not None:  # DIN's unit, unnormalised weights
                attention = torch.where(m, self.attention[k](flat, t), 0.0)  # T_k X B
            else:  # the learned query, (F·D) per level: masked softmax of the scaled dot product
                attention = masked_softmax(torch.matmul(flat, query[k]) * (F * D) ** -0.5, m, dim=0)  # T_k X B
            count = m.sum(0, keepdim=True).clamp(min=1)  # 1 X B
            w = torch.stack([attention, m / count], 2)  # T_k X B X 2: attention, mean
            pooled.append(pool_tokens(flat, w))  # B X 2 X (F·D): target-aware pooling, period token
        pooled = torch.stack(pooled, 1)  # B X K X 2 X (F·D)
        # match terms: the query times the attention-pooled and the mean token, so that how well the history
        # matches the candidate is a product the next layer reads off, not one an MLP must learn to multiply
        q = query.transpose(0, 1) if self.query is not None else query.expand(B, K, F * D)
        match = pooled * q.unsqueeze(2)  # B X K X 2 X (F·D)
        p = pooled[:, :, 1].reshape(B, K, F, D)  # B X K X F X D, the period tokens
        if self.cross_period is not None:
            p = self.cross_period(p, torch.stack([m.any(0) for _, m in levels], 1))
        parts = [pooled[:, :, 0].reshape(B, K * F * D), p.reshape(B, K * F * D), match.reshape(B, 2 * K * F * D)]
        return self.out(torch.cat(parts, 1))
