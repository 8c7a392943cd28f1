"""The two simplest baselines: the masked mean of the history (``MeanPoolTower``) and no history at all
(``NoTower``).

``MeanPoolTower`` is the classic "average the behaviour embeddings" interaction (YouTube DNN): the masked mean
of the tokens over S, flattened to F·D, concatenated with the candidate's flattened Ft·D embeddings, then an
MLP. It sees which items the user touched but not their order, nor how they relate to the candidate except
through what the MLP learns.

``NoTower`` is the DLRM-style floor: the history is ignored, and the tower returns an MLP of the candidate's
embeddings alone, so that the over arch still gets ``out_dim`` inputs (the model is unchanged) but nothing
from the history. Its gap to every other tower is what the history is worth.

Both MLPs have ``layers`` hidden layers of width ``hidden`` (ReLU) and a linear last layer to ``out_dim``
(TorchRec's ``MLP``); they differ only by the pooled history in the input, so a comparison of the two
isolates the history.

Padded token slots are ignored: they are zeroed at the input with ``torch.where``, so whatever they hold (even
NaN) the output is bit-identical. A row with no real token pools to zeros.
"""

from typing import Optional

import torch
from torch import Tensor, nn
from torchrec.modules.mlp import MLP

from pyramid_mixer.ranking.towers.baselines.config import BaselineConfig
from pyramid_mixer.ranking.towers.baselines.inputs import check_inputs, zero_padding


def masked_token_mean(tokens: Tensor, mask: Tensor) -> Tensor:
    """Mean over S of the real tokens: ``tokens: B X S X C`` (zero at padded slots), ``mask: B X S`` -> ``B X C``;
    zeros for a row with no real token (never a division by zero)."""
    count = mask.sum(1, keepdim=True).clamp(min=1).to(tokens.dtype)  # B X 1
    return tokens.sum(1) / count  # B X S X C -> B X C


def tower_mlp(config: BaselineConfig, in_size: int, device: Optional[torch.device]) -> MLP:
    """``layers`` hidden layers of width ``hidden`` (ReLU), then a linear layer to ``out_dim``."""
    sizes = [config.hidden] * config.layers + [config.out_dim]
    return MLP(in_size, sizes, bias=True, activation="relu", device=device, activation_on_last=False)


class MeanPoolTower(nn.Module):
    """Masked mean of the history, concatenated with the candidate, through an MLP.

    Args:
        config (BaselineConfig): shapes; ``hidden`` and ``layers`` size the MLP (``heads`` is unused).
        device (Optional[torch.device]): where to allocate parameters (``"meta"`` works).

    Called as every tower (``ranking.towers``: ``forward(tokens, mask, target) -> B X out_dim``).

    Example::

        >>> config = BaselineConfig(num_tokens=6, num_features=3, dim=4, num_target_features=2, out_dim=8)
        >>> tower = MeanPoolTower(config)
        >>> tokens, target = torch.randn(2, 6, 3, 4), torch.randn(2, 2, 4)
        >>> mask = torch.arange(6) < torch.tensor([[6], [2]])  # B X S: a full and a short history
        >>> tower(tokens, mask, target).shape
        torch.Size([2, 8])
    """

    reads = ("hidden", "layers")  # the BaselineConfig widths it reads (ranking.towers.effective_tower_config)

    def __init__(self, config: BaselineConfig, device: Optional[torch.device] = None) -> None:
        super().__init__()
        self.config = config
        F, D, Ft = config.num_features, config.dim, config.num_target_features
        self.mlp = tower_mlp(config, (F + Ft) * D, device)

    def forward(self, tokens: Tensor, mask: Tensor, target: Tensor) -> Tensor:
        """``tokens: B X S X F X D``, ``mask: B X S``, ``target: B X Ft X D`` -> ``B X out_dim`` (see the class)."""
        check_inputs(self.config, tokens, mask, target)
        B, S, F, D = tokens.shape
        x = zero_padding(tokens, mask).view(B, S, F * D)  # B X S X (F·D)
        pooled = masked_token_mean(x, mask)  # B X (F·D)
        return self.mlp(torch.cat([pooled, target.reshape(B, -1)], 1))  # B X (F·D + Ft·D) -> B X out_dim


class NoTower(nn.Module):
    """The DLRM-style floor: ignores the history and returns an MLP of the candidate's embeddings alone.

    The over arch still gets ``out_dim`` inputs, so the model around the tower is unchanged; ``tokens`` and
    ``mask`` are checked for shape and otherwise unused (the output never depends on them).

    Args:
        config (BaselineConfig): shapes; ``hidden`` and ``layers`` size the MLP (as ``MeanPoolTower``'s).
        device (Optional[torch.device]): where to allocate parameters (``"meta"`` works).

    Called as every tower (``ranking.towers``: ``forward(tokens, mask, target) -> B X out_dim``).

    Example::

        >>> config = BaselineConfig(num_tokens=6, num_features=3, dim=4, num_target_features=2, out_dim=8)
        >>> tower = NoTower(config)
        >>> tokens, target = torch.randn(2, 6, 3, 4), torch.randn(2, 2, 4)
        >>> mask = torch.ones(2, 6, dtype=torch.bool)
        >>> out = tower(tokens, mask, target)
        >>> out.shape, torch.equal(out, tower(torch.zeros_like(tokens), ~mask, target))
        (torch.Size([2, 8]), True)
    """

    reads = ("hidden", "layers")  # the BaselineConfig widths it reads (ranking.towers.effective_tower_config)

    def __init__(self, config: BaselineConfig, device: Optional[torch.device] = None) -> None:
        super().__init__()
        self.config = config
        self.mlp = tower_mlp(config, config.num_target_features * config.dim, device)

    def forward(self, tokens: Tensor, mask: Tensor, target: Tensor) -> Tensor:
        """``target: B X Ft X D`` -> ``B X out_dim``; ``tokens`` and ``mask`` are only checked."""
        check_inputs(self.config, tokens, mask, target)
        B = target.size(0)
        return self.mlp(target.reshape(B, -1))  # B X (Ft·D) -> B X out_dim
