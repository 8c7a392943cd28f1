"""The one config every baseline tower takes, so that a comparison changes the tower and nothing else.

Inputs and output are every tower's (``ranking.towers``); the shapes below are fixed when a tower is built.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BaselineConfig:
    """Args:
    num_tokens: S, token slots of the history (a baseline usually reads one full-resolution level).
    num_features: F per-behaviour features per token.
    dim: D, embedding width of every token feature.
    num_target_features: Ft, the candidate's features (aligned with the first Ft token features).
    out_dim: width of the tower's output.
    hidden: width inside the tower (attention model width, GRU state, MLP hidden).
    layers: blocks (attention layers, GRU layers, mixer blocks).
    heads: attention heads (attention towers only).
    mask_prob: ``bert4rec`` only: the share of history tokens replaced by the mask token in training (cloze).
    candidate_free: no candidate (next-item mode, derived from ``model.task``): a tower whose readout is
        target attention reads out without it (``sasrec``: the most recent position's encoding).
    """

    num_tokens: int = 96
    num_features: int = 5
    dim: int = 16
    num_target_features: int = 3
    out_dim: int = 64
    hidden: int = 64
    layers: int = 2
    heads: int = 2
    mask_prob: float = 0.2
    candidate_free: bool = False

    def __post_init__(self) -> None:
        for name in ("num_tokens", "num_features", "dim", "num_target_features", "out_dim", "hidden", "layers",
                     "heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"BaselineConfig.{name}={getattr(self, name)}: must be >= 1")
        if not 0.0 <= self.mask_prob < 1.0:
            raise ValueError(f"BaselineConfig.mask_prob={self.mask_prob}: must be in [0, 1)")
        if self.num_target_features > self.num_features:
            raise ValueError("BaselineConfig.num_target_features cannot exceed num_features")
