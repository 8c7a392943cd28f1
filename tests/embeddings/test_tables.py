"""Tables from the spec, sharded through TorchRec's planner + DMP at world size 1, fused optimizer."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor, KeyedTensor

from pyramid_mixer.embeddings.model_parallel import (
    ScheduleConfig,
    ShardingConfig,
    combined_optimizer,
    init_distributed,
    plan,
    shard,
)
from pyramid_mixer.embeddings.tables import EmbeddingKeys, embedding_bag_collection, table_configs
from pyramid_mixer.features.kjt_builder import kjt_keys
from pyramid_mixer.features.reader import ParquetReader, ReadOptions
from pyramid_mixer.features.spec import default_spec
from pyramid_mixer.features.tokens import LevelSpec, PyramidLayout
from tests.logs import random_rows, write_rows

LAYOUT = PyramidLayout(levels=(LevelSpec(0, 4, 1), LevelSpec(4, 12, 2)))


class Pooled(nn.Module):
    """A minimal model around the collection: returns pooled embeddings selected by name."""

    def __init__(self, keys: EmbeddingKeys) -> None:
        super().__init__()
        self.ebc = embedding_bag_collection(default_spec(), LAYOUT)
        self.keys = keys
        self.dense = nn.Linear(1, 1)

    def forward(self, kjt: KeyedJaggedTensor) -> torch.Tensor:
        kt: KeyedTensor = self.ebc(kjt)
        (tokens,) = KeyedTensor.regroup([kt], [self.keys.tokens])
        return tokens.view(kjt.stride(), self.keys.num_slots, self.keys.num_token_features, self.keys.dim)


def test_every_key_read_by_exactly_one_table() -> None:
    spec = default_spec()
    configs = table_configs(spec, LAYOUT)
    owners = [k for c in configs for k in c.feature_names]
    assert sorted(owners) == sorted(kjt_keys(spec, LAYOUT))
    item = next(c for c in configs if c.name == "t_item")
    assert item.feature_names[0] == "item" and "hist_item@L1.t3" in item.feature_names


def test_dmp_pools_token_bags_by_name_and_updates_only_touched_rows(tmp_path: Path) -> None:
    env = init_distributed()
    spec = default_spec()
    write_rows(tmp_path / "a.parquet", random_rows(16, seed=7, max_history=20))
    batch = next(iter(ParquetReader([tmp_path], spec, LAYOUT, ReadOptions(batch_size=16))))
    torch.manual_seed(0)
    keys = EmbeddingKeys.build(spec, LAYOUT)
    dmp = shard(Pooled(keys), env, ShardingConfig(), sparse_lr=0.5, batch_size=16)
    opt = combined_optimizer(dmp, dense_lr=0.1, sparse_lr=0.5, schedule=ScheduleConfig())

    weights = {k: v for k, v in dmp.state_dict().items() if k.endswith(".weight") and "ebc" in k}
    item_table = next(v for k, v in weights.items() if "t_item" in k).local_shards()[0].tensor.clone()
    tokens = dmp(batch.sparse_features)  # B X S X F X D
    assert tokens.shape == (16, 4 + 4, 5, 16)

    # the hist_item token of slot L1.t1 (positions 6-7) is the mean of its bag's rows of t_item
    kjt = batch.sparse_features
    jt = kjt["hist_item@L1.t1"]
    s = 4 + 1
    for b in range(16):
        bag = jt.values()[jt.offsets()[b] : jt.offsets()[b + 1]]
        expected = item_table[bag].mean(0) if bag.numel() else torch.zeros(16)
        torch.testing.assert_close(tokens[b, s, 0], expected)

    # fused row-wise Adagrad: one backward updates exactly the rows of t_item that were read
    tokens.sum().backward()
    opt.step()
    after = next(
        v for k, v in dmp.state_dict().items() if "t_item" in k and k.endswith(".weight")
    ).local_shards()[0].tensor
    changed = (after != item_table).any(dim=1).nonzero().flatten()
    item_keys = [k for k in kjt.keys() if k.startswith("hist_item@")]  # this model does not use "item"
    read = torch.unique(torch.cat([kjt[k].values() for k in item_keys]))
    assert torch.equal(changed, read)


def test_plan_is_a_dry_run_for_another_topology() -> None:
    keys = EmbeddingKeys.build(default_spec(), LAYOUT)
    p = plan(Pooled(keys), ShardingConfig(sharding_types=("table_wise",)), world_size=4,
             compute_device="cpu", batch_size=512)
    shardings = p.plan["ebc"]
    ranks = {name: s.ranks for name, s in shardings.items()}
    assert set(ranks) == {c.name for c in table_configs(default_spec(), LAYOUT)}
    assert {r for rs in ranks.values() for r in rs} <= {0, 1, 2, 3}
