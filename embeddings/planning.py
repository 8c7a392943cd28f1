"""The sharding plan as a report: which table, how it is sharded, which ranks hold it, what it costs.

``describe`` runs TorchRec's planner for a topology that need not be this machine (a dry run for capacity
planning: ``world_size=64, compute_device="cuda", hbm_gb=80``) and records, through the planner's ``Stats``
hook, the sharding options it chose: per table the sharding type, compute kernel, ranks, shard sizes, the
planner's storage estimate and its perf estimate; and per rank the totals.

Example::

    >>> report = describe(model, ShardingConfig(), world_size=2, compute_device="cpu", batch_size=512)  # doctest: +SKIP
    >>> print(report.table())                                                                          # doctest: +SKIP
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

from torch import nn
from torchrec.distributed.planner.types import ShardingOption, Stats

from pyramid_mixer.embeddings.model_parallel import ShardingConfig, plan

GIB = 1024**3


class PlanRecorder(Stats):
    """A planner ``Stats`` that keeps the chosen sharding options instead of printing them."""

    def __init__(self) -> None:
        self.best_plan: List[ShardingOption] = []

    def log(self, sharding_plan: Any, topology: Any, batch_size: int, storage_reservation: Any,  # type: ignore[override]
            num_proposals: int, num_plans: int, run_time: float, best_plan: List[ShardingOption],
            *args: Any, **kwargs: Any) -> None:
        self.best_plan = list(best_plan)


@dataclass
class TablePlan:
    table: str
    sharding_type: str
    compute_kernel: str
    ranks: List[int]
    shard_sizes: List[List[int]]
    hbm_gb: float
    ddr_gb: float
    perf_ms: float  # the planner's estimate of the table's per-iteration cost, summed over its shards


@dataclass
class RankPlan:
    rank: int
    tables: List[str]
    hbm_gb: float
    ddr_gb: float
    perf_ms: float


@dataclass
class PlanReport:
    world_size: int
    compute_device: str
    batch_size: int
    tables: List[TablePlan] = field(default_factory=list)
    ranks: List[RankPlan] = field(default_factory=list)

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        """Two Markdown tables: per embedding table, then per rank."""
        lines = [
            f"Sharding plan: world size {self.world_size}, {self.compute_device}, "
            f"batch size {self.batch_size} per rank",
            "",
            "| table | sharding | kernel | ranks | shard sizes | HBM GiB | DDR GiB | est. cost ms |",
            "|---|---|---|---|---|---:|---:|---:|",
        ]
        for t in self.tables:
            sizes = ", ".join("x".join(map(str, s)) for s in t.shard_sizes)
            lines.append(f"| {t.table} | {t.sharding_type} | {t.compute_kernel} | {t.ranks} | {sizes} | "
                         f"{t.hbm_gb:.3f} | {t.ddr_gb:.3f} | {t.perf_ms:.3f} |")
        lines += ["", "Per rank (ranks not listed hold no table):", "",
                  "| rank | tables | HBM GiB | DDR GiB | est. cost ms |", "|---:|---|---:|---:|---:|"]
        for r in self.ranks:
            lines.append(f"| {r.rank} | {', '.join(r.tables)} | {r.hbm_gb:.3f} | {r.ddr_gb:.3f} | {r.perf_ms:.3f} |")
        return "\n".join(lines)


def describe(
    model: nn.Module,
    config: ShardingConfig,
    world_size: int,
    compute_device: str,
    batch_size: int,
    local_world_size: Optional[int] = None,
    hbm_gb: Optional[float] = None,
    pooling: Optional[Dict[str, List[float]]] = None,
) -> PlanReport:
    """Plans the model's tables for a topology (no process group needed) and reports the choice."""
    recorder = PlanRecorder()
    plan(model, config, world_size, compute_device, batch_size, local_world_size, hbm_gb, pg=None, stats=recorder,
         pooling=pooling)
    report = PlanReport(world_size, compute_device, batch_size)
    per_rank: Dict[int, Dict[str, Any]] = defaultdict(lambda: {"tables": [], "hbm": 0.0, "ddr": 0.0, "perf": 0.0})
    for option in sorted(recorder.best_plan, key=lambda o: o.name):
        ranks, hbm, ddr, perf = [], 0.0, 0.0, 0.0
        for shard in option.shards:
            rank = int(shard.rank) if shard.rank is not None else -1
            s_hbm = shard.storage.hbm / GIB if shard.storage else 0.0
            s_ddr = shard.storage.ddr / GIB if shard.storage else 0.0
            s_perf = shard.perf.total if shard.perf else 0.0  # ms (the planner works in bytes/ms)
            ranks.append(rank)
            hbm, ddr, perf = hbm + s_hbm, ddr + s_ddr, perf + s_perf
            r = per_rank[rank]
            if option.name not in r["tables"]:
                r["tables"].append(option.name)
            r["hbm"] += s_hbm
            r["ddr"] += s_ddr
            r["perf"] += s_perf
        report.tables.append(TablePlan(
            table=option.name, sharding_type=option.sharding_type, compute_kernel=option.compute_kernel,
            ranks=ranks, shard_sizes=[list(s.size) for s in option.shards], hbm_gb=hbm, ddr_gb=ddr, perf_ms=perf,
        ))
    report.ranks = [RankPlan(k, v["tables"], v["hbm"], v["ddr"], v["perf"]) for k, v in sorted(per_rank.items())]
    return report
