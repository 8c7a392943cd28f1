"""What multi-process jobs need beyond DMP: ranks stepping in lockstep over uneven data shares, and
results (row accounting, predictions) combined over ranks.

At world size 1 every function here is a plain pass-through, so single-process runs share the code path.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from pyramid_mixer.embeddings.model_parallel import DistEnv
from pyramid_mixer.features.reader import ReadStats

T = TypeVar("T")


def any_rank(flag: bool, env: DistEnv) -> bool:
    """True when ``flag`` is true on at least one rank (a collective: every rank must call it)."""
    if env.world_size == 1:
        return flag
    t = torch.tensor([int(flag)], dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def lockstep(batches: Iterable[T], env: DistEnv, filler: Callable[[], T]) -> Iterator[Tuple[T, bool]]:
    """``(batch, real)`` until every rank has run out of batches.

    Ranks read shares of different sizes, but every sharded forward and every DDP backward is a collective,
    so all ranks must take the same number of steps. A rank that has run out repeats its last batch (or,
    if its share was empty, ``filler()``) with ``real=False``: the caller gives it zero weight, so no row is
    used twice, until the others finish.
    """
    it = iter(batches)
    last: Optional[T] = None
    while True:
        batch = next(it, None)
        if not any_rank(batch is not None, env):
            return
        if batch is not None:
            last = batch
            yield batch, True
        else:
            if last is None:
                last = filler()
            yield last, False


def sum_over_ranks(value: int, env: DistEnv) -> int:
    if env.world_size == 1:
        return value
    t = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(t)
    return int(t.item())


def sum_stats(stats: ReadStats, env: DistEnv) -> Dict[str, Any]:
    """Row accounting summed over ranks (rejection reasons merged)."""
    mine = stats.as_dict()
    if env.world_size == 1:
        return mine
    everyone: List[Any] = [None] * env.world_size
    dist.all_gather_object(everyone, mine)
    total: Dict[str, Any] = {k: sum(d[k] for d in everyone) for k in mine if isinstance(mine[k], int)}
    reasons: Counter = Counter()
    for d in everyone:
        reasons.update(d["rejected_by_reason"])
    total["rejected_by_reason"] = dict(sorted(reasons.items()))
    total["files"] = mine["files"]
    total["files_skipped"] = mine["files_skipped"]  # every rank resolves the same files
    return total


def gather_arrays(arrays: List[np.ndarray], env: DistEnv, dst: Optional[int] = None) -> Optional[List[np.ndarray]]:
    """Each array concatenated over ranks in rank order: on every rank, or with ``dst`` only on that rank (the
    others get None, so a large eval split is held once, not once per rank)."""
    if env.world_size == 1:
        return arrays
    if dst is None:
        everyone: Optional[List[Any]] = [None] * env.world_size
        dist.all_gather_object(everyone, arrays)
    else:
        everyone = [None] * env.world_size if env.rank == dst else None
        dist.gather_object(arrays, everyone, dst=dst)
        if everyone is None:
            return None
    return [np.concatenate([parts[i] for parts in everyone]) for i in range(len(arrays))]


def from_main(value: Optional[T], env: DistEnv) -> T:
    """Rank 0's ``value`` on every rank (a collective; small picklable objects such as a report)."""
    if env.world_size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
