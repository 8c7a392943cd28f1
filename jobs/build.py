"""From a config to a sharded, trainable model: spec + layout -> tables -> tower -> DMP + optimizer."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Optional, Union

import torch
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.optim.keyed import CombinedOptimizer

from pyramid_mixer.embeddings.collisions import check_world, managed_ids
from pyramid_mixer.embeddings.model_parallel import DistEnv, combined_optimizer, shard
from pyramid_mixer.embeddings.tables import embedding_bag_collection, pooling_factors
from pyramid_mixer.features.config_io import ConfigError
from pyramid_mixer.features.spec import FeatureSpec
from pyramid_mixer.features.tokens import PyramidLayout
from pyramid_mixer.jobs.config import JobConfig
from pyramid_mixer.ranking.ctr.model import RankingModel, RankingTrain
from pyramid_mixer.ranking.encoder import HistoryEncoder
from pyramid_mixer.ranking.next_item.model import NextItemModel, NextItemTrain
from pyramid_mixer.ranking.towers import make_tower


@dataclass
class Built:
    dmp: DistributedModelParallel
    optimizer: CombinedOptimizer
    layout: PyramidLayout
    num_parameters: int


def unsharded(config: JobConfig, spec: FeatureSpec) -> Union[RankingTrain, NextItemTrain]:
    """The model of ``config`` (seeded by ``train.seed``), its tables on the meta device."""
    torch.manual_seed(config.train.seed)
    layout = config.model.effective_layout()
    ebc = embedding_bag_collection(spec, layout)  # meta device: DMP materialises the shards
    m = config.model
    tower = make_tower(m.tower_kind, m.tower_config(spec), m.baseline_config(spec))
    managed = managed_ids(spec, layout, config.train.batch_size)
    encoder = HistoryEncoder(ebc, spec, layout, tower, managed, m.input_norm, m.tower_precision, m.dropout)
    if m.task == "next_item":
        return NextItemTrain(NextItemModel(encoder, spec, m.next_item.user_factor, m.next_item.item_features),
                             m.next_item)
    return RankingTrain(RankingModel(encoder, spec, m.over_arch), tuple(label.weight for label in spec.labels),
                        m.group_loss)


def cpp_compiler() -> Optional[str]:
    """The C++ compiler torch.compile's CPU backend (inductor) would find: ``$CXX``, g++, clang++ or c++."""
    return next((c for c in (os.environ.get("CXX"), "g++", "clang++", "c++") if c and shutil.which(c)), None)


def build(config: JobConfig, spec: FeatureSpec, env: DistEnv) -> Built:
    """The model of ``config``, sharded by TorchRec's planner on ``env``, with its optimizer."""
    check_world(spec, env.world_size)
    model = unsharded(config, spec)
    if config.model.compile_tower:
        if env.device.type == "cpu" and cpp_compiler() is None:
            raise ConfigError(
                "model.compile_tower=true: torch.compile's CPU backend builds C++ and no compiler is on the PATH "
                "(looked for $CXX, g++, clang++, c++); install one (e.g. apt install g++) or set "
                "model.compile_tower=false"
            )
        model.model.encoder.tower.compile()  # in place: parameter names and checkpoints are those of the plain tower
    num_parameters = sum(p.numel() for p in model.parameters())
    layout = config.model.effective_layout()
    dmp = shard(model, env, config.model.sharding, config.train.sparse_lr, config.train.batch_size,
                pooling_factors(spec, layout))
    optimizer = combined_optimizer(dmp, config.train.dense_lr, config.train.sparse_lr, config.train.schedule)
    return Built(dmp, optimizer, layout, num_parameters)
