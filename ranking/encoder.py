"""The front end both tasks share: the batch's KJT -> pooled embeddings -> history tokens -> tower -> one vector.

TorchRec's DLRM splits a model into a sparse arch, an interaction arch and an over arch; ``HistoryEncoder`` is
the first two for a behaviour sequence, and each task's model (``ranking.ctr.model``,
``ranking.next_item.model``) adds its own head:

- the sparse arch: one ``EmbeddingBagCollection`` (sharded by DMP), preceded for the tables the spec marks
  ``managed_collision`` by TorchRec's managed-collision modules (``embeddings.collisions``). ``embed`` looks
  every row of the KJT up once and selects the pooled outputs by name (``KeyedTensor.regroup``, never by
  position: a sharded collection returns its keys in shard order): the pyramid tokens first, then the groups
  the task asks for (request features, the candidate, the item rows of next-item mode);
- the tower (``ranking.towers``): ``encode`` views the first ``B`` rows' tokens as ``B X S X F X D``,
  layer-norms them over ``F X D`` without affine (``input_norm``: every tower then reads inputs of the same
  scale whatever the tables', whose rows start at ``init_scale`` 0.05; a padded token, all zeros, stays
  zero), builds the ``B X S`` mask from the bags' lengths and runs the tower, under bf16 autocast if asked.

Example::

    >>> import torch
    >>> from pyramid_mixer.features.spec import default_spec
    >>> from pyramid_mixer.features.tokens import PyramidLayout, LevelSpec
    >>> from pyramid_mixer.embeddings.tables import embedding_bag_collection
    >>> from pyramid_mixer.ranking.towers.pyramid_mixer import PyramidMixer, PyramidMixerConfig
    >>> spec, layout = default_spec(), PyramidLayout(levels=(LevelSpec(0, 4, 1), LevelSpec(4, 12, 4)))
    >>> ebc = embedding_bag_collection(spec, layout, device=torch.device("cpu"))
    >>> config = PyramidMixerConfig(level_tokens=layout.level_tokens, num_features=5, dim=16, out_dim=8)
    >>> encoder = HistoryEncoder(ebc, spec, layout, PyramidMixer(config))
    >>> encoder.out_dim, encoder.keys.num_slots, encoder.keys.num_token_features  # S = 4 + 8 / 4; item .. gap
    (8, 6, 5)
"""

from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn.functional as nnf
from torch import nn
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor, KeyedTensor

from pyramid_mixer.embeddings.collisions import ManagedIds
from pyramid_mixer.embeddings.tables import EmbeddingKeys
from pyramid_mixer.features.spec import FeatureSpec
from pyramid_mixer.features.tokens import PyramidLayout

TOWER_PRECISIONS = ("fp32", "bf16")
# eps far below the variance of rows of scale 0.05 (mean-pooled bags reach ~1e-4), so the norm removes the
# tables' scale rather than shrinking small tokens; an all-zero padded token stays 0
_NORM_EPS = 1e-9


@torch.fx.wrap
def _token_mask(kjt: KeyedJaggedTensor, first: int, num_slots: int, expected_key: str) -> torch.Tensor:
    """``rows X S``: the bags of keys ``first .. first + S`` are non-empty. A leaf for torch.fx (TorchRec's
    train pipeline traces the model), since it checks the key order in Python."""
    if kjt.keys()[first] != expected_key:
        raise ValueError(
            f"batch KJT key {first} is {kjt.keys()[first]!r}, expected {expected_key!r}: "
            "the reader's spec/layout differ from the model's"
        )
    B = kjt.stride()
    lengths = kjt.lengths().view(-1, B)  # K X rows
    return lengths[first : first + num_slots].t() > 0  # rows X S


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


class HistoryEncoder(nn.Module):
    """Args:
    ebc: the embedding-bag collection built from the spec and layout (``embeddings.tables``).
    spec, layout: the feature spec and pyramid layout the reader uses.
    tower: a tower of ``ranking.towers`` (``forward(tokens, mask, target) -> B X config.out_dim``).
    managed: the managed-collision modules of the spec's managed tables (``embeddings.collisions``), or None.
    input_norm: layer-norm the tokens (over F X D) before the tower, and the candidate (over Ft X D) in
        ``candidate``; a padded token (all zeros) stays zero.
    tower_precision: ``"fp32"``, or ``"bf16"`` to run the tower under bf16 autocast (``run_tower``).
    dropout: while training, the share of the tower's input values (the tokens' and the candidate's, after the
        norm) zeroed, the rest scaled up to keep the mean; a padded token stays zero.
    """

    def __init__(
        self,
        ebc: EmbeddingBagCollection,
        spec: FeatureSpec,
        layout: PyramidLayout,
        tower: nn.Module,
        managed: Optional[ManagedIds] = None,
        input_norm: bool = True,
        tower_precision: str = "fp32",
        dropout: float = 0.0,
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
        self.dropout = nn.Dropout(dropout)

    @property
    def out_dim(self) -> int:
        """Width of ``encode``'s output (the tower's ``out_dim``)."""
        return int(self.tower.config.out_dim)

    def embed(self, kjt: KeyedJaggedTensor, groups: List[List[str]]) -> List[torch.Tensor]:
        """One lookup of every row of ``kjt``; returns the flat pooled tokens (``rows X S·F·D``) and then one
        ``rows X width`` tensor per group of feature names in ``groups``."""
        rows = kjt if self.managed_ids is None else self.managed_ids(kjt)
        pooled: KeyedTensor = self.sparse_arch(rows)
        return KeyedTensor.regroup([pooled], [self.keys.tokens] + groups)

    def candidate(self, target: torch.Tensor, B: int) -> torch.Tensor:
        """The candidate's pooled features (``B X Ft·D``, from ``embed``) as ``B X Ft X D``, layer-normed over
        ``Ft X D`` with ``input_norm``."""
        target = target.view(B, len(self.keys.target), self.keys.dim)
        if self.input_norm:
            target = nnf.layer_norm(target, (len(self.keys.target), self.keys.dim), eps=_NORM_EPS)
        return self.dropout(target)

    def encode(self, kjt: KeyedJaggedTensor, tokens: torch.Tensor, target: torch.Tensor, B: int) -> torch.Tensor:
        """``B X out_dim``: the tower over the first ``B`` rows of ``kjt``, whose flat tokens ``embed`` returned,
        against ``target`` (``B X Ft X D``)."""
        k = self.keys
        # static shapes: the train pipeline traces this with torch.fx
        tokens = tokens[:B].view(B, k.num_slots, k.num_token_features, k.dim)  # B X S X F X D
        if self.input_norm:
            tokens = nnf.layer_norm(tokens, (k.num_token_features, k.dim), eps=_NORM_EPS)
        mask = _token_mask(kjt, k.mask_first_key, k.num_slots, k.kjt_keys[k.mask_first_key])[:B]  # B X S
        return run_tower(self.tower, self.dropout(tokens), mask, target, self.tower_precision)
