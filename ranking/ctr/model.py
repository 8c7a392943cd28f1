"""The ranking model: embedding bags -> interaction tower -> over arch -> one logit per label.

Parts, each testable alone (TorchRec's DLRM layout):
- the sparse arch: one ``EmbeddingBagCollection`` (sharded by DMP), preceded for the tables the spec marks
  ``managed_collision`` by TorchRec's managed-collision modules (``embeddings.collisions``), whose pooled
  outputs are selected by
  name (``KeyedTensor.regroup``): the pyramid tokens ``B X S X F X D``, the candidate ``B X Ft X D`` and
  every request-level feature for the over arch;
- the tower (``PyramidMixer`` or a baseline with the same ``forward(tokens, mask, target)``), which receives
  every token and the candidate layer-normed (over ``F X D`` and ``Ft X D``, no affine; ``input_norm``):
  every tower then reads inputs of the same scale whatever the tables' (their rows start at ``init_scale``
  0.05, so a raw product of two embeddings starts near 0.0025, which a tower without norms of its own, such
  as DIN, hardly learns to read within a short budget);
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
    >>> model = RankingModel(ebc, spec, layout, tower, OverArchConfig(hidden=(16,)))
    >>> model.num_labels
    3
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as nnf
from torch import nn
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.modules.mlp import MLP
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor, KeyedTensor

from pyramid_mixer.embeddings.collisions import ManagedIds
from pyramid_mixer.embeddings.tables import EmbeddingKeys
from pyramid_mixer.features.batch import RankingBatch
from pyramid_mixer.features.spec import FeatureSpec
from pyramid_mixer.features.tokens import PyramidLayout


@dataclass(frozen=True)
class OverArchConfig:
    """The over arch: an MLP from the tower's output, the pooled request features and the dense features to
    one logit per label."""

    hidden: Tuple[int, ...] = (256, 128)  # widths of its hidden layers (ReLU)


@torch.fx.wrap
def _token_mask(kjt: KeyedJaggedTensor, first: int, num_slots: int, expected_key: str) -> torch.Tensor:
    """``B X S``: the bags of keys ``first .. first + S`` are non-empty. A leaf for torch.fx (TorchRec's
    train pipeline traces the model), since it checks the key order in Python."""
    if kjt.keys()[first] != expected_key:
        raise ValueError(
            f"batch KJT key {first} is {kjt.keys()[first]!r}, expected {expected_key!r}: "
            "the reader's spec/layout differ from the model's"
        )
    B = kjt.stride()
    lengths = kjt.lengths().view(-1, B)  # K X B
    return lengths[first : first + num_slots].t() > 0  # B X S


TOWER_PRECISIONS = ("fp32", "bf16")


@torch.fx.wrap
def run_tower(tower: nn.Module, tokens: torch.Tensor, mask: torch.Tensor, target: torch.Tensor,
              precision: str) -> torch.Tensor:
    """``tower(tokens, mask, target)``, under bf16 autocast when ``precision`` is ``"bf16"`` (the weights stay
    fp32, the master copy the optimizer updates; the output comes back fp32). A leaf for torch.fx, since
    autocast needs the inputs' real device."""
    if precision == "fp32":
        return tower(tokens, mask, target)
    with torch.autocast(tokens.device.type, dtype=torch.bfloat16):
        out = tower(tokens, mask, target)
    return out.float()


class RankingModel(nn.Module):
    """Args:
    ebc: the embedding-bag collection built from the spec and layout (``embeddings.tables``).
    spec, layout: the feature spec and pyramid layout the reader uses.
    tower: ``forward(tokens B X S X F X D, mask B X S, target B X Ft X D) -> B X out_dim``, with ``out_dim``.
    over: the over-arch MLP widths.
    managed: the managed-collision modules of the spec's managed tables (``embeddings.collisions``), or None.
    input_norm: layer-norm the tokens (over F X D) and the candidate (over Ft X D) before the tower; a padded
        token (all zeros) stays zero.
    tower_precision: ``"fp32"``, or ``"bf16"`` to run the tower under bf16 autocast (``run_tower``).
    """

    def __init__(
        self,
        ebc: EmbeddingBagCollection,
        spec: FeatureSpec,
        layout: PyramidLayout,
        tower: nn.Module,
        over: OverArchConfig,
        managed: Optional[ManagedIds] = None,
        input_norm: bool = True,
        tower_precision: str = "fp32",
    ) -> None:
        super().__init__()
        if tower_precision not in TOWER_PRECISIONS:
            raise ValueError(f"tower_precision={tower_precision!r}: use one of {TOWER_PRECISIONS}")
        self.input_norm = input_norm
        self.tower_precision = tower_precision
        self.managed_ids = managed
        self.sparse_arch = ebc
        self.keys = EmbeddingKeys.build(spec, layout)
        self.tower = tower
        self.num_labels = len(spec.labels)
        in_dim = int(tower.config.out_dim) + self.keys.sparse_width(spec) + len(spec.dense)
        self.over_arch = MLP(in_dim, list(over.hidden), bias=True, activation="relu")
        self.head = nn.Linear(over.hidden[-1] if over.hidden else in_dim, self.num_labels)

    def token_mask(self, kjt: KeyedJaggedTensor) -> torch.Tensor:
        """``B X S`` bool: a slot is a real token iff its bag is non-empty."""
        k = self.keys
        return _token_mask(kjt, k.mask_first_key, k.num_slots, k.kjt_keys[k.mask_first_key])

    def forward(self, kjt: KeyedJaggedTensor, dense: torch.Tensor) -> torch.Tensor:
        k = self.keys
        B = kjt.stride()
        rows = kjt if self.managed_ids is None else self.managed_ids(kjt)
        pooled: KeyedTensor = self.sparse_arch(rows)
        tokens, sparse, target = KeyedTensor.regroup([pooled], [k.tokens, k.sparse, k.target])
        tokens = tokens.view(B, k.num_slots, k.num_token_features, k.dim)  # B X S X F X D
        target = target.view(B, len(k.target), k.dim)  # B X Ft X D
        if self.input_norm:  # static shapes: the train pipeline traces this forward with torch.fx
            # eps far below the variance of rows of scale 0.05 (mean-pooled bags reach ~1e-4), so the norm
            # removes the tables' scale rather than shrinking small tokens; an all-zero padded token stays 0
            tokens = nnf.layer_norm(tokens, (k.num_token_features, k.dim), eps=1e-9)
            target = nnf.layer_norm(target, (len(k.target), k.dim), eps=1e-9)
        h = run_tower(self.tower, tokens, self.token_mask(kjt), target, self.tower_precision)  # B X out_dim
        x = torch.cat([h, sparse, dense], dim=1)
        return self.head(self.over_arch(x))  # B X n_labels


class RankingTrain(nn.Module):
    """Wraps the model with the loss: ``sum_l w_l * mean_i(v_i * BCE_il)`` over labels ``l`` (weights ``w``
    from the spec) and rows ``i`` (the batch's row weights ``v``: 1 for data, 0 for filler batches)."""

    def __init__(self, model: RankingModel, label_weights: Tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("label_weights", torch.tensor(label_weights, dtype=torch.float32), persistent=False)

    def forward(
        self, batch: RankingBatch
    ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        logits = self.model(batch.sparse_features, batch.dense_features)
        bce = nnf.binary_cross_entropy_with_logits(logits, batch.labels, reduction="none")  # B X n_labels
        per_label = (bce * batch.weights[:, None]).mean(0)
        loss = (per_label * self.label_weights).sum()
        return loss, (loss.detach(), logits.detach(), batch.labels, batch.weights)
