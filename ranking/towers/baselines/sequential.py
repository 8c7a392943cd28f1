"""The sequential-recommendation baselines of the paper's next-item table, behind the towers' interface.

- ``LastItemTower`` (``last``): FPMC's factorised first-order transition: a linear map of the most recent real
  token only (with ``next_item.user_factor``, the user factor is added to it: FPMC).
- ``Bert4RecTower`` (``bert4rec``): a bidirectional Transformer over a learned mask token at the next
  position followed by the history; the mask token's encoding is read out. Cloze training: each real history
  token is replaced by the mask token with probability ``mask_prob`` in training mode (never in eval).
- ``FmlpTower`` (``fmlp``): FMLP-Rec: learnable filters in the frequency domain (``torch.fft``) in place of
  self-attention, each block ``LN(x + irfft(W * rfft(x)))`` then ``LN(x + FFN(x))``; the most recent
  position's encoding is read out.

All are called as every tower (``ranking.towers``); the target is concatenated to the readout (zeros in
next-item mode, where it reads nothing). Padded slots are zeroed before and after every block, so no padding
reaches a real position.

On the data's rows, every prefix of a user's sequence is a row whose label is the next item, so BERT4Rec
trains on "the last position masked" (the extra task of its paper) plus random masking of the history
that its encoder must read around; the cloze loss on the masked history items themselves is not computed
(a tower returns one vector per row).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn import functional

from pyramid_mixer.ranking.towers.baselines.attention import TransformerBlock
from pyramid_mixer.ranking.towers.baselines.config import BaselineConfig
from pyramid_mixer.ranking.towers.baselines.inputs import check_inputs, zero_padding


def most_recent(x: Tensor, mask: Tensor) -> Tensor:
    """``x: B X S X C`` -> ``B X C``: the first real slot (the most recent behaviour); zeros for an empty row."""
    latest = mask.to(torch.uint8).argmax(1)  # B
    picked = x[torch.arange(x.size(0), device=x.device), latest]
    return torch.where(mask.any(1)[:, None], picked, 0.0)


class LastItemTower(nn.Module):
    """FPMC's transition: the most recent real token, with the candidate, through one linear map.

    Args:
        config (BaselineConfig): shapes only.
        device (Optional[torch.device]): where to allocate parameters.

    Example::

        >>> config = BaselineConfig(num_tokens=6, num_features=3, dim=4, num_target_features=2, out_dim=8)
        >>> tower = LastItemTower(config)
        >>> tokens, target = torch.randn(2, 6, 3, 4), torch.randn(2, 2, 4)
        >>> mask = torch.arange(6) < torch.tensor([[6], [2]])
        >>> older = tokens.clone(); older[:, 1:] = 0  # only the most recent token is read
        >>> torch.equal(tower(tokens, mask, target), tower(older, mask, target))
        True
    """

    reads = ()  # the BaselineConfig widths it reads (ranking.towers.effective_tower_config)

    def __init__(self, config: BaselineConfig, device: Optional[torch.device] = None) -> None:
        super().__init__()
        self.config = config
        F, D, Ft = config.num_features, config.dim, config.num_target_features
        self.out = nn.Linear((F + Ft) * D, config.out_dim, device=device)

    def forward(self, tokens: Tensor, mask: Tensor, target: Tensor) -> Tensor:
        check_inputs(self.config, tokens, mask, target)
        B, S, F, D = tokens.shape
        last = most_recent(zero_padding(tokens, mask).view(B, S, F * D), mask)  # B X (F·D)
        return self.out(torch.cat([last, target.reshape(B, -1)], 1))


class Bert4RecTower(nn.Module):
    """BERT4Rec: bidirectional self-attention over ``[mask token] + history``, read out at the mask token.

    Tokens (``F·D``) are projected to ``hidden``; slot 0 is a learned mask embedding standing for the next
    item, slots ``1..S`` the history; each slot gets a learned position embedding. Every real slot attends
    to every real slot (no causal mask). In training mode each real history token is replaced by the mask
    embedding with probability ``mask_prob`` (cloze); eval is deterministic.

    Args:
        config (BaselineConfig): shapes; ``hidden`` (divisible by ``heads``), ``layers``, ``heads``,
            ``mask_prob``.
        device (Optional[torch.device]): where to allocate parameters.

    Example::

        >>> config = BaselineConfig(num_tokens=6, num_features=3, dim=4, num_target_features=2, out_dim=8,
        ...                         hidden=16, heads=2)
        >>> tower = Bert4RecTower(config).eval()
        >>> tokens, target = torch.randn(2, 6, 3, 4), torch.randn(2, 2, 4)
        >>> mask = torch.arange(6) < torch.tensor([[6], [0]])
        >>> tower.encode(tokens, mask).shape  # the mask slot, then the history
        torch.Size([2, 7, 16])
        >>> tower(tokens, mask, target).shape
        torch.Size([2, 8])
    """

    reads = ("hidden", "layers", "heads", "mask_prob")

    def __init__(self, config: BaselineConfig, device: Optional[torch.device] = None) -> None:
        super().__init__()
        if config.hidden % config.heads != 0:
            raise ValueError(f"Bert4RecTower: BaselineConfig.hidden={config.hidden} is not divisible by "
                             f"heads={config.heads}")
        self.config = config
        H = config.hidden
        self.embed = nn.Linear(config.num_features * config.dim, H, device=device)
        self.mask_token = nn.Parameter(torch.randn(H, device=device) * 0.02)
        self.position = nn.Parameter(torch.randn(config.num_tokens + 1, H, device=device) * 0.02)
        self.blocks = nn.ModuleList(TransformerBlock(H, config.heads, device) for _ in range(config.layers))
        self.norm = nn.LayerNorm(H, device=device)
        self.out = nn.Linear(H + config.num_target_features * config.dim, config.out_dim, device=device)

    def encode(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """``B X (S + 1) X hidden``: slot 0 the mask token's encoding, then the history's (zero where padded)."""
        B, S = mask.shape
        x = self.embed(zero_padding(tokens, mask).flatten(2))  # B X S X H
        if self.training and self.config.mask_prob > 0:  # cloze: hide some real tokens behind the mask token
            hide = (torch.rand(B, S, device=x.device) < self.config.mask_prob) & mask
            x = torch.where(hide[:, :, None], self.mask_token, x)
        x = torch.cat([self.mask_token.expand(B, 1, -1), x], 1) + self.position  # B X (S + 1) X H
        real = torch.cat([mask.new_ones(B, 1), mask], 1)  # B X (S + 1): the mask slot is always real
        allowed = real[:, None, :] | torch.eye(S + 1, dtype=torch.bool, device=mask.device)  # B X (S+1) X (S+1)
        attn_mask = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill_(~allowed, float("-inf"))
        attn_mask = attn_mask.unsqueeze(1)
        for block in self.blocks:
            x = torch.where(real[:, :, None], block(x, attn_mask), 0.0)
        return torch.where(real[:, :, None], self.norm(x), 0.0)

    def forward(self, tokens: Tensor, mask: Tensor, target: Tensor) -> Tensor:
        check_inputs(self.config, tokens, mask, target)
        B = tokens.size(0)
        return self.out(torch.cat([self.encode(tokens, mask)[:, 0], target.reshape(B, -1)], 1))


class FilterLayer(nn.Module):
    """FMLP-Rec's filter: ``irfft(W * rfft(x))`` along the sequence, ``W`` a learnable complex weight per
    frequency and channel (a circular convolution of the sequence with a learned kernel per channel)."""

    def __init__(self, length: int, hidden: int, device: Optional[torch.device] = None) -> None:
        super().__init__()
        self.length = length
        self.weight = nn.Parameter(torch.randn(length // 2 + 1, hidden, 2, device=device) * 0.02)

    def forward(self, x: Tensor) -> Tensor:
        spectrum = torch.fft.rfft(x, dim=1, norm="ortho")  # B X (S/2 + 1) X H, complex
        return torch.fft.irfft(spectrum * torch.view_as_complex(self.weight), n=self.length, dim=1, norm="ortho")


class FmlpTower(nn.Module):
    """FMLP-Rec: filter-enhanced MLP blocks over the history, read out at the most recent position.

    Tokens are projected to ``hidden`` plus a learned position embedding, layer-normed; each of ``layers``
    blocks is ``x = LN(x + filter(x))`` then ``x = LN(x + fc2(gelu(fc1(x))))``. Padded slots are zeroed before
    and after every block.

    Args:
        config (BaselineConfig): shapes; ``hidden``, ``layers``.
        device (Optional[torch.device]): where to allocate parameters.

    Example::

        >>> config = BaselineConfig(num_tokens=6, num_features=3, dim=4, num_target_features=2, out_dim=8, hidden=16)
        >>> tower = FmlpTower(config)
        >>> tokens, target = torch.randn(2, 6, 3, 4), torch.randn(2, 2, 4)
        >>> mask = torch.arange(6) < torch.tensor([[6], [3]])
        >>> tower(tokens, mask, target).shape
        torch.Size([2, 8])
    """

    reads = ("hidden", "layers")

    def __init__(self, config: BaselineConfig, device: Optional[torch.device] = None) -> None:
        super().__init__()
        self.config = config
        S, H = config.num_tokens, config.hidden
        self.embed = nn.Linear(config.num_features * config.dim, H, device=device)
        self.position = nn.Parameter(torch.randn(S, H, device=device) * 0.02)
        self.in_norm = nn.LayerNorm(H, device=device)
        self.filters = nn.ModuleList(FilterLayer(S, H, device) for _ in range(config.layers))
        self.filter_norms = nn.ModuleList(nn.LayerNorm(H, device=device) for _ in range(config.layers))
        self.fc1 = nn.ModuleList(nn.Linear(H, 4 * H, device=device) for _ in range(config.layers))
        self.fc2 = nn.ModuleList(nn.Linear(4 * H, H, device=device) for _ in range(config.layers))
        self.ffn_norms = nn.ModuleList(nn.LayerNorm(H, device=device) for _ in range(config.layers))
        self.out = nn.Linear(H + config.num_target_features * config.dim, config.out_dim, device=device)

    def encode(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """``B X S X hidden``, zero at padded slots."""
        keep = mask[:, :, None]
        x = torch.where(keep, self.in_norm(self.embed(zero_padding(tokens, mask).flatten(2)) + self.position), 0.0)
        for filt, n1, fc1, fc2, n2 in zip(self.filters, self.filter_norms, self.fc1, self.fc2, self.ffn_norms):
            x = torch.where(keep, n1(x + filt(x)), 0.0)
            x = torch.where(keep, n2(x + fc2(functional.gelu(fc1(x)))), 0.0)
        return x

    def forward(self, tokens: Tensor, mask: Tensor, target: Tensor) -> Tensor:
        check_inputs(self.config, tokens, mask, target)
        B = tokens.size(0)
        return self.out(torch.cat([most_recent(self.encode(tokens, mask), mask), target.reshape(B, -1)], 1))
