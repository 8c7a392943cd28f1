"""Managed collisions: TorchRec's ``MCHManagedCollisionModule`` maps the ids of tables marked
``managed_collision: true`` in the spec to rows, before the embedding bags read them.

The reader leaves such a table's ids in the id space ``[0, 2^63 - 1)`` (``features.kjt_builder.table_rows``)
instead of hashing them to rows. ``ManagedIds`` takes the batch KJT, runs the keys of the managed tables
through one ``ManagedCollisionCollection`` (an LFU-evicting MCH module per table, sized to the table's rows)
and hands the whole KJT, now in row space, to the embedding-bag collection. In training the modules count
ids and, every ``eviction_interval`` steps, give rows to the most frequent new ids (evicting the least
frequent when a table is full); in eval they only look up. An id without a row reads the table's last row.
Their mapping is model state (buffers): it is checkpointed with the model.

The modules count a step's ids in a buffer that TorchRec sizes from the first batch it sees (1.25 x its ids
x ``eviction_interval``) and ids beyond it go uncounted. A resumed run sees another first batch, so here
the buffer is sized up front from the batch size and the most ids a row can hold (``ids_per_row``): a
resumed run then counts exactly what the uninterrupted one counts.

TorchRec shards managed-collision tables row-wise only (its sharded MC-EBC); here the modules run unsharded
next to the sharded collection, so a model with managed tables trains in one process (``check_world``).

Example::

    >>> from pyramid_mixer.features.spec import default_spec
    >>> from pyramid_mixer.features.tokens import PyramidLayout
    >>> managed_ids(default_spec(), PyramidLayout()) is None  # the default spec hashes every table
    True
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch import nn
from torchrec.modules.mc_modules import LFU_EvictionPolicy, ManagedCollisionCollection, MCHManagedCollisionModule
from torchrec.sparse.jagged_tensor import JaggedTensor, KeyedJaggedTensor

from pyramid_mixer.embeddings.tables import table_configs
from pyramid_mixer.features.kjt_builder import history_cap, kjt_keys
from pyramid_mixer.features.spec import FeatureSpec
from pyramid_mixer.features.tokens import PyramidLayout


class ManagedIds(nn.Module):
    """The batch KJT with the managed tables' keys remapped to rows by a ``ManagedCollisionCollection``.

    Args:
        collection (ManagedCollisionCollection): one MCH module per managed table.
        keys (List[str]): the batch KJT's keys, in order (``features.kjt_builder.kjt_keys``).

    Call with the batch ``KeyedJaggedTensor``; returns one with the same lengths, the managed keys first
    (the embedding-bag collection selects its outputs by name, so the key order does not matter to it).
    """

    def __init__(self, collection: ManagedCollisionCollection, keys: List[str]) -> None:
        super().__init__()
        self.collection = collection
        managed = [f for c in collection.embedding_configs() for f in c.feature_names]
        missing = sorted(set(managed) - set(keys))
        if missing:
            raise ValueError(f"managed-collision features {missing} are not keys of the batch KJT")
        self.num_managed = len(managed)
        unmanaged = [i for i, k in enumerate(keys) if k not in set(managed)]
        self.order = [keys.index(f) for f in managed] + unmanaged

    def forward(self, kjt: KeyedJaggedTensor) -> KeyedJaggedTensor:
        managed, rest = kjt.permute(self.order).split([self.num_managed, len(self.order) - self.num_managed])
        return KeyedJaggedTensor.concat([self.collection(managed), rest])


#: ids per row counted for a multi-valued request feature (its lists have no cap); more are not counted
MULTI_VALUED_IDS = 64


def ids_per_row(spec: FeatureSpec, layout: PyramidLayout, table: str) -> int:
    """The most ids one row sends to ``table``: one per single-valued request feature, ``MULTI_VALUED_IDS``
    per multi-valued one, and the history cap per sequence field (each behaviour fills at most one slot)."""
    history = history_cap(spec, layout)
    sparse = sum(MULTI_VALUED_IDS if f.multi_valued else 1 for f in spec.sparse if f.table == table)
    return sparse + history * sum(1 for f in spec.sequence.fields if f.table == table)


def managed_tables(spec: FeatureSpec) -> List[str]:
    """Names of the spec's tables marked ``managed_collision``."""
    return [t.name for t in spec.tables if t.managed_collision]


def managed_ids(
    spec: FeatureSpec, layout: PyramidLayout, batch_rows: int = 512, device: Optional[torch.device] = None
) -> Optional[ManagedIds]:
    """A ``ManagedIds`` for the spec's managed-collision tables, or None when every table hashes its ids.

    ``batch_rows``: the training batch size, which sizes the modules' id-count buffers (see the module
    docstring). The modules are built on ``device`` (CPU by default), never on ``meta``: their buffers start
    with real values (empty slots, the identity row mapping) that DMP would not know how to materialise.
    """
    device = device or torch.device("cpu")
    managed = {t.name: t for t in spec.tables if t.managed_collision}
    configs = [c for c in table_configs(spec, layout) if c.name in managed]
    if not configs:
        return None
    modules: Dict[str, MCHManagedCollisionModule] = {}
    for c in configs:
        module = MCHManagedCollisionModule(
            zch_size=c.num_embeddings,
            device=device,
            eviction_policy=LFU_EvictionPolicy(),
            eviction_interval=managed[c.name].eviction_interval,
            name=c.name,
        )
        # TorchRec sizes this buffer from the first batch it profiles; size it from the bound instead
        bound = torch.empty(batch_rows * ids_per_row(spec, layout, c.name), dtype=torch.int64, device=device)
        module._init_history_buffers({c.name: JaggedTensor(values=bound, lengths=bound.new_tensor([bound.numel()]))})
        modules[c.name] = module
    return ManagedIds(ManagedCollisionCollection(modules, configs), kjt_keys(spec, layout))


def check_world(spec: FeatureSpec, world_size: int) -> None:
    """Raises ValueError when the spec has managed-collision tables and the job runs on several processes."""
    managed = managed_tables(spec)
    if managed and world_size > 1:
        raise ValueError(
            f"tables {managed} use managed_collision, which runs in one process here (TorchRec shards "
            f"managed-collision tables row-wise only); run with one process, or set managed_collision: false "
            f"to hash their ids (world size is {world_size})"
        )
