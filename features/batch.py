"""The typed batch the reader yields and the model consumes.

A ``RankingBatch`` is TorchRec's ``Batch`` (dense features, a ``KeyedJaggedTensor`` of sparse ids, labels)
plus what ranking evaluation needs: the UAUC group ids, request ids, the true probabilities where the data
has them (synthetic logs), and each row's history length (for AUC by history length).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torchrec.datasets.utils import Batch


@dataclass
class RankingBatch(Batch):
    """Shapes: dense ``B X n_dense``, labels ``B X n_labels``, group_ids/request_ids/history_length/weights
    ``B``, oracle ``B X n_labels`` (NaN where the data has no true probability). ``weights`` scale each
    row's loss: 1 for rows read, 0 for a batch that only keeps other ranks' collectives company."""

    group_ids: torch.Tensor
    request_ids: torch.Tensor
    oracle: torch.Tensor
    history_length: torch.Tensor
    weights: torch.Tensor

    def _map(self, fn: Any) -> "RankingBatch":
        return type(self)(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def to(self, device: torch.device, non_blocking: bool = False) -> "RankingBatch":
        return self._map(lambda t: t.to(device=device, non_blocking=non_blocking))

    def record_stream(self, stream: torch.Stream) -> None:
        for f in fields(self):
            getattr(self, f.name).record_stream(stream)

    def pin_memory(self) -> "RankingBatch":
        return self._map(lambda t: t.pin_memory())

    def zero_weight(self) -> "RankingBatch":
        """The same rows with weight 0: they run through the model and contribute no gradient."""
        return replace(self, weights=torch.zeros_like(self.weights))

    @property
    def batch_size(self) -> int:
        return int(self.labels.shape[0])
