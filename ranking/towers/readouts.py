"""The Pyramid Mixer's readouts: each level's own tokens pooled two ways, and the query behind the match terms.

Both kinds pool each level's tokens by attention (per kind, below) and by the masked mean (the level's period
token), and give one query per level, ``B X K X (F·D)``, that the tower multiplies with both pooled vectors
(the match terms: how well the history matches the query reaches the output as a product, not as something
an MLP must learn to multiply). A level with no real token pools to zeros.

- ``TargetAwareReadout`` (``target_aware=True``, CTR mode): per level, DIN's attention unit
  (``target_attention.py``) scores each token against the candidate (its ``Ft X D`` embeddings, layer-normed
  with ``query_norm``), and the tokens are summed with those weights, unnormalised as in DIN, so that how many
  behaviours of a period match the candidate reaches the output, not only which ones. The query is the
  candidate projected to each level's ``F·D``, starting at "the candidate's own features".
- ``LearnedQueryReadout`` (``target_aware=False``, and next-item mode, which has no candidate): per level, a
  masked softmax of the scaled dot product with a learned query, the same for every example.

Shapes: ``levels``: K pairs (``T_k X B X F X D`` tokens, ``T_k X B`` mask), time-major; ``target: B X Ft X D``
-> pooled ``B X K X 2 X (F·D)`` (attention, mean) and the query ``B X K X (F·D)``.
"""

from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from pyramid_mixer.ranking.towers.init_streams import init_stream
from pyramid_mixer.ranking.towers.mixer_layer import masked_softmax, pool_tokens
from pyramid_mixer.ranking.towers.target_attention import TargetAttentionUnit

Levels = Sequence[Tuple[Tensor, Tensor]]


def _pool(levels: Levels, attention: List[Tensor], B: int, width: int) -> Tensor:
    """``B X K X 2 X width``: per level, its tokens pooled by ``attention`` (``T_k X B``) and by the masked mean."""
    pooled = []
    for (x, m), a in zip(levels, attention):
        count = m.sum(0, keepdim=True).clamp(min=1)  # 1 X B
        w = torch.stack([a, m / count], 2)  # T_k X B X 2: attention, mean
        pooled.append(pool_tokens(x.view(x.size(0), B, width), w))  # B X 2 X (F·D)
    return torch.stack(pooled, 1)


class TargetAwareReadout(nn.Module):
    """The candidate queries each level through DIN's attention unit (see the module docstring).

    Args:
        num_levels (int): K.
        num_features (int): F.
        dim (int): D.
        num_target_features (int): Ft.
        hidden (int): width of each level's attention unit (``readout_hidden``).
        query_norm (bool): a learned LayerNorm over the candidate's ``Ft X D`` first.
        device (Optional[torch.device]): where to allocate parameters.
    """

    def __init__(self, num_levels: int, num_features: int, dim: int, num_target_features: int, hidden: int,
                 query_norm: bool, device: Optional[torch.device] = None) -> None:
        super().__init__()
        K, F, D, Ft = num_levels, num_features, dim, num_target_features
        self.target_norm = nn.LayerNorm((Ft, D), device=device) if query_norm else None
        self.query = nn.Linear(Ft * D, K * F * D, device=device)
        self._align_query(K, F, D, Ft)
        self.attention = nn.ModuleList()  # per level
        for k in range(K):
            with init_stream(f"readout{k}"):
                self.attention.append(TargetAttentionUnit(F * D, Ft * D, hidden, device))

    @torch.no_grad()
    def _align_query(self, K: int, F: int, D: int, Ft: int) -> None:
        """Starts each level's query at "the candidate's own features": target feature f multiplies token
        feature f (they come from the same tables), so the match terms measure how much the pooled tokens
        match the candidate from the first step instead of having to discover that alignment."""
        if not self.query.weight.is_floating_point() or self.query.weight.is_meta:
            return
        self.query.weight.zero_()
        self.query.bias.zero_()
        eye = torch.eye(Ft * D, device=self.query.weight.device)
        for k in range(K):
            self.query.weight[k * F * D : k * F * D + Ft * D] = eye  # rows: level k's features 0..Ft-1

    def forward(self, levels: Levels, target: Tensor) -> Tuple[Tensor, Tensor]:
        x0 = levels[0][0]
        B, F, D = x0.size(1), x0.size(2), x0.size(3)
        Ft = self.query.in_features // D
        if tuple(target.shape) != (B, Ft, D):
            raise ValueError(f"target has shape {tuple(target.shape)}, expected B X Ft X D = {(B, Ft, D)}")
        if self.target_norm is not None:
            target = self.target_norm(target)
        t = target.reshape(1, B, Ft * D)  # broadcast over each level's tokens
        query = self.query(t[0]).view(B, len(levels), F * D)
        # DIN's unit, unnormalised weights
        attention = [torch.where(m, unit(x.view(x.size(0), B, F * D), t), 0.0)
                     for (x, m), unit in zip(levels, self.attention)]
        return _pool(levels, attention, B, F * D), query


class LearnedQueryReadout(nn.Module):
    """Each level pools against a learned query of its own (see the module docstring); the candidate is not read.

    Args:
        num_levels (int): K.
        width (int): F·D.
        device (Optional[torch.device]): where to allocate parameters.
    """

    def __init__(self, num_levels: int, width: int, device: Optional[torch.device] = None) -> None:
        super().__init__()
        with init_stream("learned_query"):
            self.query = nn.Parameter(torch.randn(num_levels, width, device=device) * width**-0.5)

    def forward(self, levels: Levels, target: Tensor) -> Tuple[Tensor, Tensor]:
        B, width = levels[0][0].size(1), self.query.size(1)
        # masked softmax of the scaled dot product, per level
        attention = [masked_softmax(torch.matmul(x.view(x.size(0), B, width), q) * width**-0.5, m, dim=0)
                     for (x, m), q in zip(levels, self.query)]
        return _pool(levels, attention, B, width), self.query.expand(B, len(levels), width)
