"""Two attention baselines behind the Pyramid Mixer's interface: DIN's target attention and a SASRec/BST encoder.

- ``DinTower`` (Zhou et al., "Deep Interest Network for Click-Through Rate Prediction", KDD 2018): an
  attention MLP scores every history token against the candidate from ``[target, token, target - token,
  target * token]``; the scores weight the tokens **without a softmax**, as in DIN (the paper keeps the sum
  unnormalised so that how many behaviours match the candidate reaches the output as intensity). The
  difference and product use the token's first Ft features, the ones taken from the candidate's tables.
  The weighted sum and the masked mean of the tokens are projected to ``out_dim``.
- ``SasRecTower`` (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018; Chen et al.,
  "Behavior Sequence Transformer", 2019): tokens flattened and projected to ``hidden``, learned positional
  embeddings, ``layers`` pre-LN Transformer blocks whose attention is ``scaled_dot_product_attention`` with a
  causal and key-padding mask, a final LayerNorm. The readout is the Pyramid Mixer's (DIN's attention unit,
  unnormalised weights), so that the comparison of the two towers is one of encoders, not of readouts: the
  unit scores each real position's ``[token, encoding]`` against the candidate (the token's first Ft features
  are the ones compared with it), the weighted sum of those vectors and the encoding of the most recent real
  token are projected to ``out_dim``. Histories are most recent first, so "causal" means position i attends to
  positions ``j >= i`` (itself and older behaviours): the most recent token's encoding summarises the whole
  history.

Both are called as every tower (``ranking.towers``). Padded slots are replaced by zeros
with ``torch.where`` at the input and every pooling and attention is masked, so whatever a padded slot holds
(even NaN) the output is bit-identical. A row with no real token gives a finite output (zeros pooled) and
finite gradients: neither readout normalises, and SASRec lets every position attend to itself (so no attention
row of SDPA is empty).
"""

from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn import functional

from pyramid_mixer.ranking.towers.baselines.config import BaselineConfig
from pyramid_mixer.ranking.towers.baselines.inputs import check_inputs, zero_padding
from pyramid_mixer.ranking.towers.target_attention import TargetAttentionUnit


class DinTower(nn.Module):
    """DIN: target attention over the history, unnormalised weighted sum plus mean, projected to ``out_dim``.

    The attention unit (``target_attention.TargetAttentionUnit``) scores each token ``x_s`` (F·D) against the
    flattened candidate ``t`` (Ft·D) from ``[t, x_s, t - a_s, t * a_s]``, ``a_s`` the token's first Ft features.
    Padded tokens weigh 0; there is no softmax. ``config.layers`` and ``config.heads`` are not used.

    Args:
        config (BaselineConfig): shapes; ``hidden`` is the attention MLP's width.
        device (Optional[torch.device]): where to allocate parameters.

    Called as every tower (``ranking.towers``: ``forward(tokens, mask, target) -> B X out_dim``).

    Example::

        >>> config = BaselineConfig(num_tokens=6, num_features=3, dim=4, num_target_features=2, out_dim=8)
        >>> tower = DinTower(config)
        >>> tokens, target = torch.randn(2, 6, 3, 4), torch.randn(2, 2, 4)
        >>> mask = torch.arange(6) < torch.tensor([[6], [0]])  # B X S: a full and an empty history
        >>> out = tower(tokens, mask, target)
        >>> out.shape, bool(out.isfinite().all())
        (torch.Size([2, 8]), True)
    """

    reads = ("hidden",)  # the BaselineConfig widths it reads (ranking.towers.effective_tower_config)

    def __init__(self, config: BaselineConfig, device: Optional[torch.device] = None) -> None:
        super().__init__()
        self.config = config
        C, A = config.num_features * config.dim, config.num_target_features * config.dim
        self.unit = TargetAttentionUnit(C, A, config.hidden, device)
        self.out = nn.Linear(2 * C, config.out_dim, device=device)

    def forward(self, tokens: Tensor, mask: Tensor, target: Tensor) -> Tensor:
        """``tokens: B X S X F X D``, ``mask: B X S``, ``target: B X Ft X D`` -> ``B X out_dim`` (see the class)."""
        check_inputs(self.config, tokens, mask, target)
        B = tokens.size(0)
        x = zero_padding(tokens, mask).flatten(2)  # B X S X (F·D)
        t = target.reshape(B, -1)  # B X (Ft·D)
        attention = torch.where(mask, self.unit(x, t[:, None]), 0.0)  # B X S, padded tokens weigh 0
        mean = mask / mask.sum(1, keepdim=True).clamp(min=1)  # B X S, zeros for an empty history
        pooled = torch.bmm(torch.stack([attention, mean], 1), x)  # B X 2 X S @ B X S X (F·D) -> B X 2 X (F·D)
        return self.out(pooled.view(B, -1))  # B X 2·F·D -> B X out_dim


class TransformerBlock(nn.Module):
    """Pre-LN Transformer block: ``x + proj(SDPA(LN(x)))``, then ``x + MLP(LN(x))`` (MLP width 4·hidden).

    Args:
        hidden (int): H, model width; divisible by ``heads``.
        heads (int): attention heads.
        device (Optional[torch.device]): where to allocate parameters.

    Shapes: ``x: B X S X H``, ``attn_mask: B X 1 X S X S`` bool (True = may attend) or float (added to the
    scores, ``-inf`` = may not attend); no query row may exclude every key -> ``B X S X H``.
    """

    def __init__(self, hidden: int, heads: int, device: Optional[torch.device] = None) -> None:
        super().__init__()
        self.heads = heads
        self.attn_norm = nn.LayerNorm(hidden, device=device)
        self.qkv = nn.Linear(hidden, 3 * hidden, device=device)
        self.proj = nn.Linear(hidden, hidden, device=device)
        self.mlp_norm = nn.LayerNorm(hidden, device=device)
        self.fc1 = nn.Linear(hidden, 4 * hidden, device=device)
        self.fc2 = nn.Linear(4 * hidden, hidden, device=device)

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        B, S, H = x.shape
        # split, not permute, the B X S X 3·H projection: SDPA's CPU kernel reads these strided views without a copy
        q, k, v = (t.view(B, S, self.heads, -1).transpose(1, 2) for t in self.qkv(self.attn_norm(x)).split(H, 2))
        y = functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # B X heads X S X H/heads
        x = x + self.proj(y.transpose(1, 2).reshape(B, S, H))  # B X S X heads X H/heads -> B X S X H
        return x + self.fc2(functional.gelu(self.fc1(self.mlp_norm(x))))


class SasRecTower(nn.Module):
    """SASRec/BST: a causal Transformer over the history, read out by the candidate and the most recent token.

    Tokens (flattened ``F·D``) are projected to ``hidden`` and get a learned positional embedding; ``layers``
    pre-LN blocks follow, then a LayerNorm (``encode``). Position i attends to positions ``j >= i`` that are
    real, and always to itself, so no attention row is empty; padded positions are zeroed after the encoder and
    no real position ever reads one. The readout: DIN's attention unit (``target_attention.TargetAttentionUnit``,
    as in the Pyramid Mixer's readout and ``DinTower``) scores each position's ``[token, encoding]``
    (``F·D + hidden``) against the candidate, padded positions weigh 0, no softmax; the weighted sum and the
    encoding of the most recent real token (zeros for an empty history) are projected to ``out_dim``. With
    ``candidate_free`` (next-item mode) the readout is SASRec's: the most recent real token's encoding alone,
    projected to ``out_dim`` (the candidate is not read).

    Args:
        config (BaselineConfig): shapes; ``hidden`` (divisible by ``heads``), ``layers``, ``heads``.
        device (Optional[torch.device]): where to allocate parameters.

    Called as every tower (``ranking.towers``: ``forward(tokens, mask, target) -> B X out_dim``).

    Example::

        >>> config = BaselineConfig(num_tokens=6, num_features=3, dim=4, num_target_features=2, out_dim=8,
        ...                         hidden=16, layers=2, heads=2)
        >>> tower = SasRecTower(config)
        >>> tokens, target = torch.randn(2, 6, 3, 4), torch.randn(2, 2, 4)
        >>> mask = torch.arange(6) < torch.tensor([[6], [0]])  # B X S: a full and an empty history
        >>> tower.encode(tokens, mask).shape  # B X S X hidden
        torch.Size([2, 6, 16])
        >>> out = tower(tokens, mask, target)
        >>> out.shape, bool(out.isfinite().all())
        (torch.Size([2, 8]), True)
    """

    reads = ("hidden", "layers", "heads")  # the BaselineConfig widths it reads (ranking.towers.effective_tower_config)

    def __init__(self, config: BaselineConfig, device: Optional[torch.device] = None) -> None:
        super().__init__()
        if config.hidden % config.heads != 0:
            raise ValueError(
                f"SasRecTower: BaselineConfig.hidden={config.hidden} is not divisible by heads={config.heads}; "
                "pick hidden as a multiple of heads"
            )
        self.config = config
        H = config.hidden
        self.embed = nn.Linear(config.num_features * config.dim, H, device=device)
        self.position = nn.Parameter(torch.randn(config.num_tokens, H, device=device) * 0.02)
        self.blocks = nn.ModuleList(TransformerBlock(H, config.heads, device) for _ in range(config.layers))
        self.norm = nn.LayerNorm(H, device=device)
        C = config.num_features * config.dim + H  # a position read out: its token, then its encoding
        if config.candidate_free:  # SASRec's own readout: the most recent position's encoding
            self.unit = None
            self.out = nn.Linear(H, config.out_dim, device=device)
        else:
            self.unit = TargetAttentionUnit(C, config.num_target_features * config.dim, H, device)
            self.out = nn.Linear(C + H, config.out_dim, device=device)

    def attention_mask(self, mask: Tensor) -> Tensor:
        """``mask: B X S`` -> ``B X 1 X S X S`` bool: query i may attend key j iff ``j >= i`` and j is real, or
        ``j == i`` (so that no row is all False and SDPA never takes a softmax over nothing)."""
        S = mask.size(1)
        index = torch.arange(S, device=mask.device)
        older = index[None, :] >= index[:, None]  # S X S: key j is i itself or older
        allowed = (older & mask[:, None, :]) | torch.eye(S, dtype=torch.bool, device=mask.device)  # B X S X S
        return allowed.unsqueeze(1)  # B X 1 X S X S, broadcast over heads

    def encode(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """The causal encoder.

        Args:
            tokens (Tensor): B X S X F X D, padded slots may hold anything.
            mask (Tensor): B X S bool.

        Returns:
            Tensor: B X S X hidden; position i depends only on the real tokens at positions ``>= i``; zero at
            padded slots.
        """
        return self._encode(zero_padding(tokens, mask).flatten(2), mask)

    def _encode(self, flat: Tensor, mask: Tensor) -> Tensor:
        """``encode`` of the flattened tokens, ``flat: B X S X (F·D)`` already zero at padded slots."""
        x = self.embed(flat) + self.position  # B X S X (F·D) -> B X S X H
        # as an additive float mask made once, not a bool mask that SDPA would convert in every layer
        allowed = self.attention_mask(mask)  # B X 1 X S X S bool
        attn_mask = torch.zeros_like(allowed, dtype=x.dtype).masked_fill_(~allowed, float("-inf"))  # B X 1 X S X S
        for block in self.blocks:
            x = block(x, attn_mask)
        return torch.where(mask[:, :, None], self.norm(x), 0.0)  # B X S X H

    def forward(self, tokens: Tensor, mask: Tensor, target: Tensor) -> Tensor:
        """``tokens: B X S X F X D``, ``mask: B X S``, ``target: B X Ft X D`` -> ``B X out_dim`` (see the class)."""
        check_inputs(self.config, tokens, mask, target)
        B = tokens.size(0)
        flat = zero_padding(tokens, mask).flatten(2)  # B X S X (F·D), zero at padded slots (once, for both uses)
        h = self._encode(flat, mask)  # B X S X H
        latest = mask.to(torch.uint8).argmax(1)  # B: first real slot (0 for an empty row, whose encoding is zero)
        recent = h[torch.arange(B, device=h.device), latest]  # B X H
        if self.unit is None:
            return self.out(recent)
        z = torch.cat([flat, h], 2)  # B X S X (F·D + H), the token first
        attention = torch.where(mask, self.unit(z, target.reshape(B, 1, -1)), 0.0)  # B X S, padded tokens weigh 0
        pooled = torch.bmm(attention[:, None], z).squeeze(1)  # B X 1 X S @ B X S X (F·D + H) -> B X (F·D + H)
        return self.out(torch.cat([pooled, recent], 1))  # B X (F·D + 2·H) -> B X out_dim
