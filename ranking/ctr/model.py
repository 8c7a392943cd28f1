"""The CTR ranking model: the history encoder -> over arch -> one logit per label.

TorchRec's DLRM layout, each part testable alone:
- the history encoder (``ranking.encoder``): the sparse arch (one sharded ``EmbeddingBagCollection``, looked
  up once for the pyramid tokens, every request-level feature and the candidate) and the tower (a tower of
  ``ranking.towers``), which reads the tokens and the candidate layer-normed;
- the over arch: tower output + pooled sparse embeddings + dense features -> MLP -> ``B X n_labels``.

``RankingTrain`` owns the loss (BCE per label, weighted) and returns ``(loss, (loss, logits, labels,
row weights))``, the ``(loss, output)`` contract of TorchRec's ``TrainPipelineSparseDist``.

Example::

    >>> import torch
    >>> from pyramid_mixer.features.spec import default_spec
    >>> from pyramid_mixer.features.tokens import PyramidLayout, LevelSpec
    >>> from pyramid_mixer.embeddings.tables import embedding_bag_collection
    >>> from pyramid_mixer.ranking.towers.pyramid_mixer import PyramidMixer, PyramidMixerConfig
    >>> spec, layout = default_spec(), PyramidLayout(levels=(LevelSpec(0, 4, 1), LevelSpec(4, 12, 4)))
    >>> ebc = embedding_bag_collection(spec, layout, device=torch.device("cpu"))
    >>> tower = PyramidMixer(PyramidMixerConfig(level_tokens=layout.level_tokens, dim=16, out_dim=8))
    >>> from pyramid_mixer.ranking.encoder import HistoryEncoder
    >>> model = RankingModel(HistoryEncoder(ebc, spec, layout, tower), spec, OverArchConfig(hidden=(16,)))
    >>> model.num_labels
    3
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn.functional as nnf
from torch import nn
from torchrec.modules.mlp import MLP
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from pyramid_mixer.features.batch import RankingBatch
from pyramid_mixer.features.spec import FeatureSpec
from pyramid_mixer.ranking.encoder import HistoryEncoder


@dataclass(frozen=True)
class OverArchConfig:
    """The over arch: an MLP from the tower's output, the pooled request features and the dense features to
    one logit per label."""

    hidden: Tuple[int, ...] = (256, 128)  # widths of its hidden layers (ReLU)


class RankingModel(nn.Module):
    """Args:
    encoder: the history encoder (``ranking.encoder.HistoryEncoder``) of ``spec``'s tables and a tower.
    spec: the feature spec: its request features and dense features feed the over arch, one logit per label.
    over: the over-arch MLP widths.
    """

    def __init__(self, encoder: HistoryEncoder, spec: FeatureSpec, over: OverArchConfig) -> None:
        super().__init__()
        self.encoder = encoder
        self.num_labels = len(spec.labels)
        in_dim = self.encoder.out_dim + self.encoder.keys.sparse_width(spec) + len(spec.dense)
        self.over_arch = MLP(in_dim, list(over.hidden), bias=True, activation="relu")
        self.head = nn.Linear(over.hidden[-1] if over.hidden else in_dim, self.num_labels)

    def forward(self, kjt: KeyedJaggedTensor, dense: torch.Tensor) -> torch.Tensor:
        keys, B = self.encoder.keys, kjt.stride()
        tokens, sparse, target = self.encoder.embed(kjt, [keys.sparse, keys.target])
        h = self.encoder.encode(kjt, tokens, self.encoder.candidate(target, B), B)  # B X out_dim
        return self.head(self.over_arch(torch.cat([h, sparse, dense], dim=1)))  # B X n_labels


@dataclass(frozen=True)
class GroupLossConfig:
    """A within-group ranking loss beside BCE (``RankingTrain``).

    BCE scores each row alone, so a signal that separates users (how much this user likes things) lowers it
    as much as one that ranks a user's own items; UAUC, the metric a feed lives on, needs the second. The
    pairwise loss (RankNet's) compares the rows of one group (the spec's ``group_key``, the user) in a batch
    whose labels differ: ``mean over pairs (i positive, j negative, same group) of log(1 + exp(s_j - s_i))``,
    added to each label's BCE with ``weight``. A user-level shift of the scores leaves it unchanged, so it
    trains the within-user ranking alone. Rows of one user meet in a batch when the reader shuffles them in
    chunks (``train.group_rows``); with rows shuffled singly, pairs are rare.

    Args:
        weight: the pairwise loss's weight beside each label's BCE (0: BCE alone).
    """

    weight: float = 0.0

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"group_loss.weight={self.weight:g}: must be >= 0 (0: BCE alone)")


def pairwise_group_loss(scores: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor,
                        weights: torch.Tensor) -> torch.Tensor:
    """``n_labels``: per label, the mean of ``log(1 + exp(s_j - s_i))`` over the pairs of rows of one group with
    ``i`` positive and ``j`` negative (rows of weight 0 left out); 0 for a label without such a pair.

    Shapes: ``scores``, ``labels`` ``B X n_labels``; ``groups``, ``weights`` ``B``."""
    same = (groups[:, None] == groups[None, :]) & (weights[:, None] > 0) & (weights[None, :] > 0)  # B X B
    positive = labels > 0.5  # B X L
    pairs = same[:, :, None] & positive[:, None, :] & ~positive[None, :, :]  # B X B X L: i positive, j negative
    margin = scores[:, None, :] - scores[None, :, :]  # s_i - s_j
    total = (nnf.softplus(-margin) * pairs).sum((0, 1))
    return total / pairs.sum((0, 1)).clamp(min=1)


class RankingTrain(nn.Module):
    """Wraps the model with the loss: ``sum_l w_l * (mean_i(v_i * BCE_il) + g * pair_l)`` over labels ``l``
    (weights ``w`` from the spec) and rows ``i`` (the batch's row weights ``v``: 1 for data, 0 for filler
    batches), with the within-group pairwise loss ``pair_l`` of weight ``g`` (``GroupLossConfig``; 0: off)."""

    def __init__(self, model: RankingModel, label_weights: Tuple[float, ...],
                 group_loss: GroupLossConfig = GroupLossConfig()) -> None:
        super().__init__()
        self.model = model
        self.group_weight = group_loss.weight
        self.register_buffer("label_weights", torch.tensor(label_weights, dtype=torch.float32), persistent=False)

    def forward(
        self, batch: RankingBatch
    ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        logits = self.model(batch.sparse_features, batch.dense_features)
        bce = nnf.binary_cross_entropy_with_logits(logits, batch.labels, reduction="none")  # B X n_labels
        per_label = (bce * batch.weights[:, None]).mean(0)
        if self.group_weight > 0:
            pair = pairwise_group_loss(logits, batch.labels, batch.group_ids, batch.weights)
            per_label = per_label + self.group_weight * pair
        loss = (per_label * self.label_weights).sum()
        return loss, (loss.detach(), logits.detach(), batch.labels, batch.weights)
