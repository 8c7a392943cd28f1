"""Embedding tables from the feature spec: one ``EmbeddingBagConfig`` per table, one ``EmbeddingBagCollection``.

Every KJT key produced by the reader is listed in the table it reads: the candidate ``item`` and every
``hist_item@L{k}.t{j}`` token slot both read ``t_item``, so the candidate and its history share one table,
and each pyramid token is one mean-pooled bag computed inside the fbgemm kernel. The collection is built
on the ``meta`` device; ``DistributedModelParallel`` materialises (and shards) it.

``EmbeddingKeys`` tells the model which pooled outputs to select, by name (never by position: a sharded
collection returns its keys in shard order).

Example::

    >>> from pyramid_mixer.features.spec import default_spec
    >>> from pyramid_mixer.features.tokens import PyramidLayout
    >>> configs = table_configs(default_spec(), PyramidLayout())
    >>> [c.name for c in configs][:3], len(next(c for c in configs if c.name == "t_item").feature_names)
    (['t_user', 't_item', 't_author'], 97)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection

from pyramid_mixer.features.kjt_builder import TIME_GAP_FEATURE, kjt_keys, token_feature_names, token_key
from pyramid_mixer.features.spec import FeatureSpec
from pyramid_mixer.features.tokens import PyramidLayout


def feature_tables(spec: FeatureSpec) -> Dict[str, str]:
    """KJT feature (or token feature) name -> table name."""
    out = {f.name: f.table for f in spec.sparse}
    out.update({f.name: f.table for f in spec.sequence.fields})
    out[TIME_GAP_FEATURE] = spec.sequence.time_gap_table
    return out


def table_configs(spec: FeatureSpec, layout: PyramidLayout) -> List[EmbeddingBagConfig]:
    """One mean-pooled ``EmbeddingBagConfig`` per spec table, listing every KJT key that reads it."""
    owner = feature_tables(spec)
    features: Dict[str, List[str]] = {t.name: [] for t in spec.tables}
    slots = layout.slot_names()
    for f in spec.sparse:
        features[f.table].append(f.name)
    for name in token_feature_names(spec):
        features[owner[name]].extend(token_key(name, s) for s in slots)
    return [
        EmbeddingBagConfig(
            name=t.name,
            embedding_dim=t.dim,
            num_embeddings=t.num_embeddings,
            feature_names=features[t.name],
            pooling=PoolingType.MEAN,
            weight_init_min=-t.init_scale,
            weight_init_max=t.init_scale,
        )
        for t in spec.tables
        if features[t.name]
    ]


def pooling_factors(spec: FeatureSpec, layout: PyramidLayout) -> Dict[str, List[float]]:
    """Expected ids per bag for each feature of each table (in ``table_configs`` order), for the planner's
    cost model: 1 for a single-valued feature, the group size for a token slot (a full history)."""
    per_feature: Dict[str, float] = {f.name: (2.0 if f.multi_valued else 1.0) for f in spec.sparse}
    groups = [float(lv.group) for lv in layout.levels for _ in range(lv.tokens)]
    for name in token_feature_names(spec):
        per_feature.update({token_key(name, s): g for s, g in zip(layout.slot_names(), groups)})
    return {c.name: [per_feature[f] for f in c.feature_names] for c in table_configs(spec, layout)}


def embedding_bag_collection(
    spec: FeatureSpec, layout: PyramidLayout, device: Optional[torch.device] = None
) -> EmbeddingBagCollection:
    """The one collection of the model; ``device=meta`` (the default) leaves materialising to DMP."""
    return EmbeddingBagCollection(
        tables=table_configs(spec, layout), device=device or torch.device("meta")
    )


@dataclass(frozen=True)
class EmbeddingKeys:
    """Names of the pooled embeddings the model reads, grouped by use.

    tokens: slot-major then feature (``S*F`` keys), so the regrouped tensor views as ``B X S X F X D``;
    mask: the first token feature's slot keys (an empty bag is a padded token);
    sparse: every request-level feature (``user``, ``item``, ...), for the over arch;
    target: the candidate's features that query the history, in token-feature order.
    """

    tokens: List[str]
    sparse: List[str]
    target: List[str]
    kjt_keys: List[str]
    mask_first_key: int
    num_slots: int
    num_token_features: int
    dim: int

    @staticmethod
    def build(spec: FeatureSpec, layout: PyramidLayout) -> "EmbeddingKeys":
        slots = layout.slot_names()
        names = token_feature_names(spec)
        keys = kjt_keys(spec, layout)
        return EmbeddingKeys(
            tokens=[token_key(f, s) for s in slots for f in names],
            sparse=[f.name for f in spec.sparse],
            target=list(spec.target),
            kjt_keys=keys,
            mask_first_key=keys.index(token_key(names[0], slots[0])),
            num_slots=len(slots),
            num_token_features=len(names),
            dim=spec.sequence_dim,
        )

    def sparse_width(self, spec: FeatureSpec) -> int:
        tables = {t.name: t.dim for t in spec.tables}
        return sum(tables[f.table] for f in spec.sparse)
