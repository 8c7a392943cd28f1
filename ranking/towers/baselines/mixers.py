"""Two all-MLP baselines over the full-resolution history: a plain MLP-Mixer and MLP4Rec.

- ``MlpMixerTower`` (Tolstikhin et al., "MLP-Mixer", NeurIPS 2021, on a sequence): each token's ``F·D``
  flattened embeddings are projected to ``hidden``; ``layers`` blocks of [LayerNorm, token mixing along S
  (a full-rank MLP ``S -> 2·S -> S`` shared by all hidden channels), LayerNorm, channel MLP along hidden
  (``hidden -> 2·hidden -> hidden``)], each residual; a final LayerNorm, the masked mean over S, the
  candidate's flattened ``Ft·D`` embeddings concatenated, a linear layer to ``out_dim``. Unlike the Pyramid
  Mixer it has no pyramid, no low rank and no per-feature structure: the features are mixed once, at the
  projection.
- ``Mlp4RecTower`` (Li et al., "MLP4Rec: A Pure MLP Architecture for Sequential Recommendations", IJCAI
  2022): the ``B X S X F X D`` tensor is kept three-dimensional per example, and each of ``layers`` blocks
  runs three residual pre-norm mixers: sequence mixing along S (``S -> 2·S -> S`` for every feature and
  channel), channel mixing along D (``D -> 2·D -> D`` shared by every token and feature), feature mixing
  along F (``F -> 2·F -> F`` shared by every token and channel). Then a LayerNorm, the masked mean over S
  (flattened to ``F·D``), the candidate concatenated, a linear layer to ``out_dim``.

Padding: padded token slots are zeroed at the input with ``torch.where``; the token (sequence) mixing reads
zeros there (its input is zeroed after the norm) and its output is zeroed there again, and the final pooling
is a masked mean. Every other step acts on each token alone. So whatever padded slots hold (even NaN), the
output is bit-identical; a row with no real token pools to zeros.

Inside, tokens are time-major (``S X B X ...``, one transpose at the input, as in ``mixer_layer.py``), so
that every token mixing is one plain matmul over all ``B·C`` columns.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional

from pyramid_mixer.ranking.towers.baselines.config import BaselineConfig
from pyramid_mixer.ranking.towers.baselines.inputs import check_inputs
from pyramid_mixer.ranking.towers.mixer_layer import ChannelMlp, masked_mean


class TokenMixing(nn.Module):
    """Residual full-rank token mixing along S: ``x + m * (W2 act(W1 m * LN(x) + b1) + b2)`` for every column,
    with ``W1: 2·S X S``, ``W2: S X 2·S`` and ``m`` the token mask (padded tokens are zero in and out).

    Args:
        num_tokens (int): S.
        norm_shape (Tuple[int, ...]): the per-token trailing shape the LayerNorm normalises (``(H,)`` or
            ``(F, D)``).
        device (Optional[torch.device]): where to allocate parameters.

    Shapes: ``x: S X B X *norm_shape``, ``mask: S X B`` -> ``S X B X *norm_shape``.
    """

    def __init__(self, num_tokens: int, norm_shape: Tuple[int, ...], device: Optional[torch.device] = None) -> None:
        super().__init__()
        S = num_tokens
        self.norm = nn.LayerNorm(norm_shape, device=device)
        self.token_down = nn.Linear(S, 2 * S, device=device)
        self.token_up = nn.Linear(2 * S, S, device=device)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        S, B = mask.shape
        real = mask.view(S, B, *([1] * (x.dim() - 2)))  # S X B X 1 ... broadcast over the token's shape
        h = torch.where(real, self.norm(x), 0.0).view(S, -1)  # S X (B·C), padded tokens zero
        u = torch.addmm(self.token_down.bias[:, None], self.token_down.weight, h)  # 2S X (B·C)
        u = torch.addmm(self.token_up.bias[:, None], self.token_up.weight, functional.gelu(u))  # S X (B·C)
        return x + torch.where(real, u.view(x.shape), 0.0)  # zero at padded tokens


class FeatureMixing(nn.Module):
    """Residual MLP along the F features of each token and channel: ``x + W2 act(W1 LN(x) + b1) + b2`` with
    ``W1: 2·F X F`` shared by every token and channel; LN is over F X D per token.

    Args:
        num_features (int): F.
        dim (int): D.
        device (Optional[torch.device]): where to allocate parameters.

    Shapes: ``S X B X F X D -> S X B X F X D``.
    """

    def __init__(self, num_features: int, dim: int, device: Optional[torch.device] = None) -> None:
        super().__init__()
        self.norm = nn.LayerNorm((num_features, dim), device=device)
        self.feature_down = nn.Linear(num_features, 2 * num_features, device=device)
        self.feature_up = nn.Linear(2 * num_features, num_features, device=device)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x).transpose(-1, -2)  # S X B X D X F, mixes along F
        u = self.feature_up(functional.gelu(self.feature_down(h)))  # S X B X D X F
        return x + u.transpose(-1, -2)  # S X B X F X D


class MlpMixerTower(nn.Module):
    """A plain MLP-Mixer over the full-resolution history, pooled and concatenated with the candidate.

    Args:
        config (BaselineConfig): shapes; ``hidden`` is the token width, ``layers`` the mixer blocks (``heads``
            unused). The token mixing's weights are ``2·S X S``, so S = ``num_tokens`` is fixed when built.
        device (Optional[torch.device]): where to allocate parameters (``"meta"`` works).

    Called as every tower (``ranking.towers``: ``forward(tokens, mask, target) -> B X out_dim``).

    Example::

        >>> config = BaselineConfig(num_tokens=6, num_features=3, dim=4, num_target_features=2, out_dim=8)
        >>> tower = MlpMixerTower(config)
        >>> tokens, target = torch.randn(2, 6, 3, 4), torch.randn(2, 2, 4)
        >>> mask = torch.arange(6) < torch.tensor([[6], [2]])  # B X S: a full and a short history
        >>> tower(tokens, mask, target).shape
        torch.Size([2, 8])
    """

    reads = ("hidden", "layers")  # the BaselineConfig widths it reads (ranking.towers.effective_tower_config)

    def __init__(self, config: BaselineConfig, device: Optional[torch.device] = None) -> None:
        super().__init__()
        self.config = config
        S, F, D, Ft, H = config.num_tokens, config.num_features, config.dim, config.num_target_features, config.hidden
        self.embed = nn.Linear(F * D, H, device=device)
        self.token_mixing = nn.ModuleList(TokenMixing(S, (H,), device) for _ in range(config.layers))
        # the channel MLP of a 1-feature token: LayerNorm over H, H -> 2·H -> H, residual
        self.channel_mixing = nn.ModuleList(ChannelMlp(1, H, 2, device) for _ in range(config.layers))
        self.norm = nn.LayerNorm(H, device=device)
        self.out = nn.Linear(H + Ft * D, config.out_dim, device=device)

    def forward(self, tokens: Tensor, mask: Tensor, target: Tensor) -> Tensor:
        """``tokens: B X S X F X D``, ``mask: B X S``, ``target: B X Ft X D`` -> ``B X out_dim`` (see the class)."""
        check_inputs(self.config, tokens, mask, target)
        B, S, F, D = tokens.shape
        H = self.config.hidden
        mask = mask.t().contiguous()  # S X B
        x = torch.where(mask[:, :, None, None], tokens.transpose(0, 1), 0.0)  # S X B X F X D, one pass
        x = self.embed(x.view(S, B, F * D))  # S X B X H
        for token_mixing, channel_mixing in zip(self.token_mixing, self.channel_mixing):
            x = token_mixing(x, mask)  # S X B X H
            x = channel_mixing(x.view(S, B, 1, H)).view(S, B, H)  # S X B X 1 X H -> S X B X H
        pooled = masked_mean(self.norm(x), mask)  # B X H
        return self.out(torch.cat([pooled, target.reshape(B, -1)], 1))  # B X (H + Ft·D) -> B X out_dim


class Mlp4RecTower(nn.Module):
    """MLP4Rec-style tower: sequence, channel and feature mixing on the unflattened ``S X F X D`` history.

    Args:
        config (BaselineConfig): shapes; ``layers`` is the number of blocks (``hidden`` and ``heads`` unused:
            every mixer's hidden width is twice the size it mixes). S = ``num_tokens`` is fixed when built.
        device (Optional[torch.device]): where to allocate parameters (``"meta"`` works).

    Called as every tower (``ranking.towers``: ``forward(tokens, mask, target) -> B X out_dim``).

    Example::

        >>> config = BaselineConfig(num_tokens=6, num_features=3, dim=4, num_target_features=2, out_dim=8)
        >>> tower = Mlp4RecTower(config)
        >>> tokens, target = torch.randn(2, 6, 3, 4), torch.randn(2, 2, 4)
        >>> mask = torch.arange(6) < torch.tensor([[6], [2]])  # B X S: a full and a short history
        >>> tower(tokens, mask, target).shape
        torch.Size([2, 8])
    """

    reads = ("layers",)  # the BaselineConfig widths it reads (ranking.towers.effective_tower_config)

    def __init__(self, config: BaselineConfig, device: Optional[torch.device] = None) -> None:
        super().__init__()
        self.config = config
        S, F, D, Ft = config.num_tokens, config.num_features, config.dim, config.num_target_features
        self.sequence_mixing = nn.ModuleList(TokenMixing(S, (F, D), device) for _ in range(config.layers))
        self.channel_mixing = nn.ModuleList(ChannelMlp(F, D, 2, device) for _ in range(config.layers))
        self.feature_mixing = nn.ModuleList(FeatureMixing(F, D, device) for _ in range(config.layers))
        self.norm = nn.LayerNorm((F, D), device=device)
        self.out = nn.Linear((F + Ft) * D, config.out_dim, device=device)

    def forward(self, tokens: Tensor, mask: Tensor, target: Tensor) -> Tensor:
        """``tokens: B X S X F X D``, ``mask: B X S``, ``target: B X Ft X D`` -> ``B X out_dim`` (see the class)."""
        check_inputs(self.config, tokens, mask, target)
        B, S, F, D = tokens.shape
        mask = mask.t().contiguous()  # S X B
        x = torch.where(mask[:, :, None, None], tokens.transpose(0, 1), 0.0)  # S X B X F X D, one pass
        for sequence, channel, feature in zip(self.sequence_mixing, self.channel_mixing, self.feature_mixing):
            x = feature(channel(sequence(x, mask)))  # S X B X F X D: along S, then D, then F
        pooled = masked_mean(self.norm(x).view(S, B, F * D), mask)  # B X (F·D)
        return self.out(torch.cat([pooled, target.reshape(B, -1)], 1))  # B X (F·D + Ft·D) -> B X out_dim
