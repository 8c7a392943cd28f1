"""Input checks and padding shared by the baseline towers (the inputs of ``config.BaselineConfig``)."""

from __future__ import annotations

import torch
from torch import Tensor

from pyramid_mixer.ranking.towers.baselines.config import BaselineConfig


def check_inputs(config: BaselineConfig, tokens: Tensor, mask: Tensor, target: Tensor) -> None:
    """Raises ValueError naming the config fields when the inputs do not have the configured shapes."""
    S, F, D, Ft = config.num_tokens, config.num_features, config.dim, config.num_target_features
    if tokens.dim() != 4 or tuple(tokens.shape[1:]) != (S, F, D):
        raise ValueError(
            f"tokens has shape {tuple(tokens.shape)}, expected B X {S} X {F} X {D} "
            "(BaselineConfig num_tokens X num_features X dim)"
        )
    B = tokens.size(0)
    if mask.dtype != torch.bool or tuple(mask.shape) != (B, S):
        raise ValueError(f"mask is {mask.dtype} {tuple(mask.shape)}, expected bool B X S = {(B, S)}")
    if tuple(target.shape) != (B, Ft, D):
        raise ValueError(
            f"target has shape {tuple(target.shape)}, expected B X Ft X D = {(B, Ft, D)} "
            "(BaselineConfig num_target_features X dim)"
        )


def zero_padding(tokens: Tensor, mask: Tensor) -> Tensor:
    """``tokens: B X S X F X D`` with padded slots (``mask: B X S`` False) set to 0 by ``torch.where``, so that
    not even a NaN there survives (a multiplication by the mask would keep it)."""
    return torch.where(mask[:, :, None, None], tokens, 0.0)
