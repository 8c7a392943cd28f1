"""Next-item metrics: the rank of the held-out item among the scored items, then HR@K, NDCG@K and MRR@K.

A rank counts every competing item scored **at least as high** as the target, plus one: a tie never
flatters a model (a model that scores everything equal ranks every target last, not first). Items masked
out (the user's already-seen items, in full ranking) do not compete; the target itself is never masked.

From the 1-based rank ``r`` of each row's target, with ``[.]`` the indicator:

- ``HR@K = mean([r <= K])``;
- ``NDCG@K = mean([r <= K] / log2(r + 1))`` (one relevant item, so the ideal DCG is 1);
- ``MRR@K = mean([r <= K] / r)``.

Ranks are integers, so metrics computed from the ranks gathered from every process equal those of one
process over the same rows (``jobs.next_item_eval`` gathers them, like the AUC's scores).

Example::

    >>> import torch

from pyramid_mixer.features.kjt_builder import hash_ids
    >>> scores = torch.tensor([[0.9, 0.5, 0.5, 0.1], [0.2, 0.2, 0.2, 0.2]])
    >>> target_ranks(scores, torch.tensor([1, 0])).tolist()  # the tie with item 2 counts; all-equal: last
    [3, 4]
    >>> m = topk_metrics(np.array([1, 3, 30]), ks=(10,))
    >>> round(m["HR@10"], 4), round(m["NDCG@10"], 4), round(m["MRR@10"], 4)
    (0.6667, 0.5, 0.4444)
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
import torch

from pyramid_mixer.features.kjt_builder import hash_ids

METRICS = ("HR", "NDCG", "MRR")


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, masked: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``B`` int64 ranks (1 = best) of each row's target among its row of ``scores``.

    Args:
        scores: ``B X N`` scores of every candidate item.
        targets: ``B`` column of each row's target.
        masked: ``B X N`` bool, items that do not compete (the user's seen items); the target's own entry is
            ignored (a target is always ranked).

    One pass over ``B X N``, no sort: a rank is a count of the items scored at least as high as the target.
    """
    target_score = scores.gather(1, targets[:, None])  # B X 1
    at_least = scores >= target_score  # the target counts itself: rank = 1 + competitors at least as high
    if masked is not None:
        at_least &= ~masked
        at_least.scatter_(1, targets[:, None], True)
    return at_least.sum(1)


def topk_metrics(ranks: np.ndarray, ks: Sequence[int] = (10, 20)) -> Dict[str, float]:
    """``{"HR@K", "NDCG@K", "MRR@K"}`` for every ``K`` of ``ks``, averaged over the rows of ``ranks`` (1-based).

    Rows with no rank (an empty array) give NaN for every metric.
    """
    r = np.asarray(ranks, dtype=np.float64)
    if r.size and r.min() < 1:
        raise ValueError(f"ranks are 1-based; got {int(r.min())}")
    out: Dict[str, float] = {}
    for k in ks:
        hit = r <= k
        out[f"HR@{k}"] = float(hit.mean()) if r.size else float("nan")
        out[f"NDCG@{k}"] = float(np.where(hit, 1.0 / np.log2(r + 1.0), 0.0).mean()) if r.size else float("nan")
        out[f"MRR@{k}"] = float(np.where(hit, 1.0 / r, 0.0).mean()) if r.size else float("nan")
    return out


def row_uniforms(row_keys: np.ndarray, num_items: int, seed: int = 0) -> np.ndarray:
    """``B X num_items`` uniforms in (0, 1), a function of ``(seed, row key, item)`` only (SplitMix64): the
    draws of a row do not depend on which batch or process it is scored in."""
    keys = (np.asarray(row_keys, dtype=np.int64)[:, None] * num_items + np.arange(num_items)[None, :]) ^ seed
    bits = hash_ids(keys.reshape(-1), 2**53, "hash").reshape(keys.shape)
    return (bits.astype(np.float64) + 0.5) / 2.0**53


def sample_negatives(
    excluded: torch.Tensor, count: int, uniforms: torch.Tensor, weights: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """``B X count`` distinct items per row, none of them excluded (the target and the seen items), drawn
    uniformly or in proportion to ``weights`` (``N``, e.g. training popularity), without replacement: the
    sampled protocols of papers that rank the target among 100 negatives.

    Weighted sampling without replacement by Efraimidis-Spirakis keys (the ``count`` largest
    ``log(u) / w``), with ``u`` from ``row_uniforms``: a row's sample depends on its key only. A row with fewer
    than ``count`` eligible items is an error (the catalogue is too small for the protocol).
    """
    B, N = excluded.shape
    w = torch.ones(N, dtype=torch.float64) if weights is None else weights.to(torch.float64).clamp_min(0)
    eligible = (w[None] > 0) & ~excluded
    if B and int(eligible.sum(1).min()) < count:
        raise ValueError(f"a row has {int(eligible.sum(1).min())} items to sample from; the protocol needs {count} "
                         "negatives (a catalogue too small, or every unseen item has zero weight)")
    keys = torch.where(eligible, uniforms.to(torch.float64).log() / w[None], -torch.inf)
    return keys.topk(count, dim=1).indices


def sampled_ranks(scores: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """``B`` ranks of each row's target among itself and its sampled ``negatives`` (``B X M``), ties counted
    against the target as in ``target_ranks``."""
    target_score = scores.gather(1, targets[:, None])
    return 1 + (scores.gather(1, negatives) >= target_score).sum(1)
