"""TorchRec wiring: process group, sharding plan, ``DistributedModelParallel`` and the optimizers.

Every model goes through TorchRec's ``EmbeddingShardingPlanner`` and ``DistributedModelParallel``, even at
world size 1 (a one-process gloo group), so that multi-process training adds processes, not a second code
path. Embedding tables train with a fused row-wise optimizer applied inside the backward
(``apply_optimizer_in_backward``: the fbgemm kernel updates the rows it touched, no dense gradient is ever
formed); the dense parameters (tower, over arch) use a regular torch optimizer through DDP.

Example::

    >>> env = init_distributed()                                         # doctest: +SKIP
    >>> dmp = shard(model, env, ShardingConfig(), sparse_lr=0.05)       # doctest: +SKIP
    >>> opt = combined_optimizer(dmp, dense_lr=1e-3, sparse_lr=0.05, schedule=ScheduleConfig())  # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, cast

import torch
import torch.distributed as dist
from torch import nn
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints
from torchrec.distributed.planner.storage_reservations import FixedPercentageStorageReservation
from torchrec.distributed.planner.types import KernelConfig, Stats, TopologyFactory, TrainerConfig
from torchrec.distributed.types import CacheParams, ModuleSharder, ShardingPlan
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.optim import RowWiseAdagrad
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter
from torchrec.optim.warmup import WarmupOptimizer, WarmupPolicy, WarmupStage

SHARDING_TYPES = ("table_wise", "column_wise", "row_wise", "table_row_wise", "data_parallel")
COMPUTE_KERNELS = ("fused", "dense", "fused_uvm", "fused_uvm_caching")


@dataclass(frozen=True)
class ShardingConfig:
    """Planner hints. ``sharding_types``/``compute_kernels`` apply to every table unless ``per_table``
    names the table (table -> allowed sharding types). On CPU with gloo: table_wise, column_wise and
    data_parallel work; row_wise and table_row_wise need GPUs. ``cache_load_factor`` (table -> share of
    its rows kept in GPU memory) configures fbgemm's UVM cache for tables whose kernel is
    ``fused_uvm_caching`` (GPUs: the table lives in host memory, its hot rows on the device)."""

    sharding_types: Tuple[str, ...] = ("table_wise",)  # what the planner may choose for every table
    compute_kernels: Tuple[str, ...] = ("fused",)  # the kernels it may choose (fbgemm's TBE: fused, ...)
    per_table: Dict[str, List[str]] = field(default_factory=dict)  # table -> its own allowed sharding types
    cache_load_factor: Dict[str, float] = field(default_factory=dict)  # table -> share of rows in GPU memory

    def __post_init__(self) -> None:
        for t in list(self.sharding_types) + [s for v in self.per_table.values() for s in v]:
            if t not in SHARDING_TYPES:
                raise ValueError(f"sharding type {t!r} is unknown; use one of {SHARDING_TYPES}")
        for k in self.compute_kernels:
            if k not in COMPUTE_KERNELS:
                raise ValueError(f"compute kernel {k!r} is unknown; use one of {COMPUTE_KERNELS}")
        for table, factor in self.cache_load_factor.items():
            if not 0 < factor <= 1:
                raise ValueError(f"cache_load_factor of {table!r} is {factor}; use a share in (0, 1]")


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_world_size: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistEnv:
    """Joins the process group of a ``torchrun``/torchx launch, or makes a one-process gloo group.

    The backend is nccl when CUDA is available and gloo otherwise.
    """
    cuda = torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    if not dist.is_initialized():
        if "WORLD_SIZE" in os.environ:
            dist.init_process_group(backend=backend)
        else:
            dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1)
    rank, world = dist.get_rank(), dist.get_world_size()
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    if cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    return DistEnv(rank, world, local_world, device, dist.get_backend())


def _constraints(
    ebc: EmbeddingBagCollection, config: ShardingConfig, pooling: Optional[Dict[str, List[float]]]
) -> Dict[str, ParameterConstraints]:
    out = {}
    for t in ebc.embedding_bag_configs():
        extra: Dict[str, object] = {"pooling_factors": pooling[t.name]} if pooling and t.name in pooling else {}
        if t.name in config.cache_load_factor:
            extra["cache_params"] = CacheParams(load_factor=config.cache_load_factor[t.name])
        out[t.name] = ParameterConstraints(
            sharding_types=list(config.per_table.get(t.name, config.sharding_types)),
            compute_kernels=list(config.compute_kernels),
            **extra,
        )
    return out


def _find_ebc(model: nn.Module) -> EmbeddingBagCollection:
    found = [m for m in model.modules() if isinstance(m, EmbeddingBagCollection)]
    if len(found) != 1:
        raise ValueError(f"expected exactly one EmbeddingBagCollection in the model, found {len(found)}")
    return found[0]


def sharders() -> List[ModuleSharder[nn.Module]]:
    return [cast(ModuleSharder[nn.Module], EmbeddingBagCollectionSharder())]


def plan(
    model: nn.Module,
    config: ShardingConfig,
    world_size: int,
    compute_device: str,
    batch_size: int,
    local_world_size: Optional[int] = None,
    hbm_gb: Optional[float] = None,
    pg: Optional[dist.ProcessGroup] = None,
    stats: Optional[Stats] = None,
    pooling: Optional[Dict[str, List[float]]] = None,
) -> ShardingPlan:
    """The planner's sharding plan for the model's tables on a topology (``pg`` None: a dry run).

    ``stats`` receives the planner's chosen sharding options (costs, storage), e.g. a ``PlanRecorder``;
    ``pooling`` gives, per table, the expected ids per bag of each feature (``tables.pooling_factors``).
    """
    topology = TopologyFactory.create_topology(
        TrainerConfig(
            world_size=world_size,
            local_world_size=local_world_size or world_size,
            hbm_cap_bytes=int(hbm_gb * 1024**3) if hbm_gb else None,
            is_dry_run=pg is None,
        ),
        kernel_config=KernelConfig(compute_device=compute_device),
    )
    ebc = _find_ebc(model)
    planner = EmbeddingShardingPlanner(
        topology=topology,
        batch_size=batch_size,
        # 15 % of each device's memory kept for the dense parts, activations and the input pipeline; the
        # planner's default heuristic guesses dense sizes and warns that it over-estimates in dry runs
        storage_reservation=FixedPercentageStorageReservation(percentage=0.15),
        constraints=_constraints(ebc, config, pooling),
        debug=False,
        stats=stats,
    )
    if pg is None:
        return planner.plan(model, sharders())
    return planner.collective_plan(model, sharders(), pg)


def shard(
    model: nn.Module,
    env: DistEnv,
    config: ShardingConfig,
    sparse_lr: float,
    batch_size: int,
    pooling: Optional[Dict[str, List[float]]] = None,
) -> DistributedModelParallel:
    """Fused row-wise Adagrad on the tables, a plan from TorchRec's planner, then DMP."""
    apply_optimizer_in_backward(RowWiseAdagrad, _find_ebc(model).parameters(), {"lr": sparse_lr})
    sharding_plan = plan(
        model,
        config,
        world_size=env.world_size,
        compute_device=env.device.type,
        batch_size=batch_size,
        local_world_size=env.local_world_size,
        pg=dist.GroupMember.WORLD,
        pooling=pooling,
    )
    return DistributedModelParallel(module=model, device=env.device, plan=sharding_plan, sharders=sharders())


@dataclass(frozen=True)
class ScheduleConfig:
    """The learning-rate multiplier over steps (TorchRec's ``WarmupOptimizer``), for tables and dense parts
    alike: linear from ``warmup_start`` to 1 over ``warmup_steps``, then ``decay_gamma ** (step //
    decay_every)`` (``decay_every: 0`` keeps it at 1)."""

    warmup_steps: int = 0  # steps of the linear warmup (0: none)
    warmup_start: float = 0.1  # the multiplier at step 0 of the warmup
    decay_every: int = 0  # steps between two decays (0: no decay)
    decay_gamma: float = 0.5  # the multiplier of each decay

    def stages(self) -> List[WarmupStage]:
        stages = []
        if self.warmup_steps > 0:
            stages.append(WarmupStage(WarmupPolicy.LINEAR, max_iters=self.warmup_steps, value=self.warmup_start))
        if self.decay_every > 0:
            stages.append(WarmupStage(WarmupPolicy.STEP, max_iters=1 << 62, value=self.decay_gamma,
                                      decay_iters=self.decay_every))
        return stages


def _scheduled(optimizer: KeyedOptimizer, lr: float, schedule: ScheduleConfig, name: str) -> KeyedOptimizer:
    if not schedule.stages():
        return optimizer
    warm = WarmupOptimizer(optimizer, schedule.stages(), lr=lr, param_name=f"__schedule_{name}")
    # one step with no gradient moves nothing but creates the schedule's state (its step count), so that
    # a checkpoint loads into it in place; the schedule therefore counts from 1
    warm.step()
    return warm


def combined_optimizer(
    dmp: DistributedModelParallel, dense_lr: float, sparse_lr: float, schedule: ScheduleConfig
) -> CombinedOptimizer:
    """The tables' fused optimizer (stepped inside backward) + Adam on every other parameter, each under
    the learning-rate schedule.

    Adam's state is created up front (``init_state``: one step with zero gradients, which moves nothing),
    so that a checkpoint can be loaded into it in place; lazily created state would be missed by DCP.
    """
    dense: KeyedOptimizer = KeyedOptimizerWrapper(
        dict(in_backward_optimizer_filter(dmp.named_parameters())),
        lambda params: torch.optim.Adam(params, lr=dense_lr),
    )
    dense.init_state()
    dense.zero_grad(set_to_none=True)
    return CombinedOptimizer(
        [_scheduled(dmp.fused_optimizer, sparse_lr, schedule, "tables"), _scheduled(dense, dense_lr, schedule, "dense")]
    )
