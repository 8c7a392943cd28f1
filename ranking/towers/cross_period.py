"""The multi-scale cross-period module of the Pyramid Mixer: the K period tokens mixed along K, then along F·D.

A period token is the masked mean of one level's own tokens after its mixer layers (``readouts.py``); this
module lets each period read the others (short-term interest corrected by the long-term one, and back)
before the tower's output projection.
"""

from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn import functional


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
