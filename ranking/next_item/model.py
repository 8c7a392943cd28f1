"""Next-item mode: a tower as a user encoder, scored by a dot product with the item table's rows.

The batch's ``KeyedJaggedTensor`` holds ``B`` user rows and then ``N`` candidate rows
(``features.next_item``): one lookup of the one (sharded) ``EmbeddingBagCollection`` gives the users'
history tokens and the candidates' item embeddings from the same table the history's items read.

- ``NextItemModel``: tokens -> tower -> a linear map to the item table's width -> ``B X D`` user vectors; the
  candidate rows of the item feature -> ``N X D`` item vectors. The score of item ``i`` for user ``u`` is
  ``<user_u, item_i>``.
- The tower reads no candidate: the candidate's features are empty in the user rows, so the ``target``
  the tower receives is zeros. Towers that concatenate it (mean, gru, mixer, mlp4rec) read nothing from it;
  the Pyramid Mixer's readout pools each level against its learned query (``target_aware`` is off in this
  mode). A tower whose readout only exists as target attention (``din``) is refused.
- ``NextItemTrain`` owns the loss (``NextItemConfig.loss``): ``softmax`` (cross-entropy over the whole
  catalogue, the sequential-recommendation papers' setting), ``sampled_softmax`` (the batch's targets plus
  uniform negatives, with the log-Q correction ``logit - log q``), ``bpr`` (``-log sigmoid(s_pos - s_neg)``
  with one uniform negative per row) or ``bce`` (``-log sigmoid(s_pos) - log sigmoid(-s_neg)``, the same
  negative: SASRec's, FMLP-Rec's and S3-Rec's loss).

Example::

    >>> cfg = NextItemConfig(loss="sampled_softmax", negatives=256)
    >>> cfg.batch_negatives
    256
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as nnf
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from pyramid_mixer.features.next_item import NextItemBatch
from pyramid_mixer.features.spec import FeatureSpec
from pyramid_mixer.ranking.encoder import HistoryEncoder

LOSSES = ("softmax", "sampled_softmax", "bpr", "bce")
# towers with no candidate-free readout
NEEDS_CANDIDATE = ("din",)


@dataclass(frozen=True)
class NextItemConfig:
    """How next-item mode trains (read when ``model.task: next_item``).

    Args:
        loss: ``softmax`` (full catalogue), ``sampled_softmax`` (in-batch + uniform negatives, log-Q corrected),
            ``bpr`` or ``bce`` (one uniform negative per row: pairwise, or each scored alone).
        negatives: sampled_softmax: uniform negatives drawn per batch, besides the batch's own targets.
        user_factor: add the user's id embedding (the spec's sparse feature on the ``user_id`` column) to the
            user vector: BPR-MF (with ``tower_kind: none``) and FPMC (with ``tower_kind: last``).
        item_features: an item's vector is the sum of its candidate features' embeddings (``spec.target``: the
            item id and, e.g., its categories and brand), not its id's alone, so an item seldom seen in
            training borrows from the attributes it shares with others. The same for every tower kind.
    """

    loss: str = "softmax"
    negatives: int = 1000
    user_factor: bool = False
    item_features: bool = False

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"next_item.loss={self.loss!r}: use one of {LOSSES}")
        if self.negatives < 1:
            raise ValueError(f"next_item.negatives={self.negatives}: must be >= 1")

    @property
    def batch_negatives(self) -> int:
        """Uniform negatives a training batch carries: 0 (the whole catalogue) unless the loss samples."""
        return self.negatives if self.loss in ("sampled_softmax", "bpr", "bce") else 0


def user_feature(spec: FeatureSpec, dim: int) -> str:
    """The sparse feature holding the user id (on the spec's ``user_id`` column), checked to be ``dim`` wide."""
    for f in spec.sparse:
        if f.column == spec.user_id and not f.multi_valued:
            width = spec.table(f.table).dim
            if width != dim:
                raise ValueError(f"next_item.user_factor: the user feature {f.name!r} has width {width}, the item "
                                 f"table {dim}; give its table dim {dim} in the spec")
            return f.name
    raise ValueError(f"next_item.user_factor: the spec has no sparse feature on the user_id column "
                     f"{spec.user_id!r}; add one (a table of users) to the spec")


class NextItemModel(nn.Module):
    """Args:
    encoder: the history encoder (``ranking.encoder.HistoryEncoder``) of ``spec``'s tables and a tower.
    spec: the feature spec; the item table is ``spec.target[0]``'s.
    user_factor: add the user id's embedding (the sparse feature on ``spec.user_id``, a table as wide as the
        item table's) to the user vector.
    item_features: an item's vector sums the embeddings of every candidate feature (``spec.target``), which
        the candidate rows then carry (``NextItemInputs.features``); else the item id's alone.

    ``forward(kjt, dense)``: ``kjt`` has ``B + N`` rows, ``dense`` the ``B`` user rows' dense features (only
    its row count is read); returns ``(users B X D, items N X D)``.
    """

    def __init__(self, encoder: HistoryEncoder, spec: FeatureSpec, user_factor: bool = False,
                 item_features: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.item_key = spec.target[0]
        self.item_keys = list(spec.target) if item_features else [self.item_key]
        self.num_target_features = len(spec.target)
        item_dim = spec.table(spec.sparse_feature(self.item_key).table).dim
        for key in self.item_keys:
            if spec.table(spec.sparse_feature(key).table).dim != item_dim:
                raise ValueError(f"next_item.item_features sums the candidate features, and {key!r} is not as wide "
                                 f"as the item table ({item_dim}); give its table dim {item_dim} in the spec")
        self.user_head = nn.Linear(self.encoder.out_dim, item_dim)
        self.user_key: Optional[str] = user_feature(spec, item_dim) if user_factor else None

    def forward(self, kjt: KeyedJaggedTensor, dense: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        B = dense.shape[0]
        groups = [self.item_keys] + ([[self.user_key]] if self.user_key is not None else [])
        pooled = self.encoder.embed(kjt, groups)  # tokens, items, (users)
        dim = self.encoder.keys.dim
        target = pooled[0].new_zeros(B, self.num_target_features, dim)  # no candidate
        users = self.user_head(self.encoder.encode(kjt, pooled[0], target, B))
        if self.user_key is not None:
            users = users + pooled[2][:B]
        items = pooled[1][B:]
        if len(self.item_keys) > 1:
            items = items.view(items.shape[0], len(self.item_keys), dim).sum(1)
        return users, items


class NextItemTrain(nn.Module):
    """The model with its loss; returns ``(loss, (loss, scores B X N, targets B, row weights B))``, the
    ``(loss, output)`` contract of TorchRec's train pipeline (as ``RankingTrain``).

    Row weights scale each row's loss (0 for filler batches). With ``sampled_softmax`` the scores the loss
    reads are log-Q corrected; the returned scores are the raw dot products.
    """

    def __init__(self, model: NextItemModel, config: NextItemConfig) -> None:
        super().__init__()
        self.model = model
        self.config = config

    def forward(
        self, batch: NextItemBatch
    ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        users, items = self.model(batch.sparse_features, batch.dense_features)
        scores = users @ items.t()  # B X N: one matmul for every user against every candidate
        w = batch.weights
        if self.config.loss in ("bpr", "bce"):
            pos = scores.gather(1, batch.targets[:, None])[:, 0]
            neg = scores.gather(1, batch.row_negatives[:, None])[:, 0]
            per_row = (-nnf.logsigmoid(pos - neg) if self.config.loss == "bpr"
                       else -nnf.logsigmoid(pos) - nnf.logsigmoid(-neg))
        else:
            logits = scores - batch.log_q[None, :] if self.config.loss == "sampled_softmax" else scores
            per_row = nnf.cross_entropy(logits, batch.targets, reduction="none")
        loss = (per_row * w).mean()
        return loss, (loss.detach(), scores.detach(), batch.targets, w)
