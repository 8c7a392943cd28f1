"""Exact ranking metrics for CTR models: AUC, UAUC, GAUC, log loss and calibration.

Definitions (labels are binary: a label ``> 0.5`` is a positive):

* **AUC** is the exact ROC AUC, i.e. the Mann-Whitney U statistic divided by ``P * N``: the probability
  that a random positive scores above a random negative, tied pairs counting 1/2 (average ranks).
* **UAUC** is the unweighted mean, over the users (groups) that have both a positive and a negative row,
  of each user's AUC. Users with a single class have no AUC and are skipped.
* **GAUC** is the same mean over the same users, weighted by each user's number of rows (impressions).
* **Log loss** is the mean binary cross-entropy of probabilities clipped to ``[eps, 1 - eps]``.
* **Calibration** is the mean prediction divided by the mean label (1.0 is perfectly calibrated).

Everything is computed exactly (no binning) in float64/int64 numpy, fully vectorised: the grouped AUC
sorts once by ``(group, score)`` and reduces per group, so ten million rows in a million groups take
seconds. Rank sums are accumulated as int64 twice-ranks, so U is exact and results are reproducible
bit for bit whatever the row order.

We do not use ``torchrec.metrics``' AUC here: its ``_compute_auc_helper`` orders predictions with
``argsort`` and integrates the cumulative TP/FP curve point by point with ``trapz``, so rows with tied
scores are taken in an arbitrary order and the result under ties depends on that order (and it returns
0.5 rather than "undefined" for a single class). We need exact values, e.g. to check that one process
and two processes give the same metric to 1e-9.

Inputs are numpy arrays; callers convert tensors (``tensor.detach().cpu().numpy()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "GroupedAUC",
    "LabelMetrics",
    "auc",
    "calibration",
    "grouped_auc",
    "label_metrics",
    "logloss",
    "ranking_metrics",
]


@dataclass(frozen=True)
class GroupedAUC:
    """Per-group AUC aggregated over the groups that have both classes.

    Attributes:
        uauc: unweighted mean of the groups' AUCs (nan when no group qualifies).
        gauc: mean of the groups' AUCs weighted by each group's number of rows (nan when none qualifies).
        groups_used: number of groups having both a positive and a negative row.
        groups_total: number of distinct groups.
    """

    uauc: float
    gauc: float
    groups_used: int
    groups_total: int


@dataclass(frozen=True)
class LabelMetrics:
    """All metrics of one label (task) of a ranking model.

    Attributes:
        label: the label's name.
        rows: number of rows evaluated.
        positives: number of positive rows.
        auc: exact global ROC AUC.
        uauc: unweighted mean of per-user AUCs.
        gauc: impression-weighted mean of per-user AUCs.
        uauc_users: number of users having both classes (those averaged by ``uauc`` and ``gauc``).
        logloss: mean binary cross-entropy.
        calibration: mean prediction / mean label.
        oracle_auc: AUC of the known true probability, when one was given.
    """

    label: str
    rows: int
    positives: int
    auc: float
    uauc: float
    gauc: float
    uauc_users: int
    logloss: float
    calibration: float
    oracle_auc: Optional[float] = None


def _binary_labels_and_scores(labels: np.ndarray, scores: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Validates two 1-D arrays of equal length; returns (bool labels, float64 scores)."""
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"labels and scores must be 1-D of equal length, got {y.shape} and {s.shape}")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return y > 0.5, s


def _sorted_group_stats(
    y_sorted: np.ndarray, s_sorted: np.ndarray, group_start: np.ndarray
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-group row count, positive count and Mann-Whitney U of rows sorted by (group, score).

    Args:
        y_sorted: bool labels, sorted by group then score.
        s_sorted: float64 scores in the same order.
        group_start: bool mask, True at the first row of each group (True at row 0).

    Returns:
        ``(rows, positives, u)`` int64/int64/float64 arrays, one entry per group, where ``u`` is the sum
        over positives of their average rank within the group minus ``P * (P + 1) / 2``.
    """
    n = y_sorted.shape[0]
    run_start = group_start.copy()
    run_start[1:] |= s_sorted[1:] != s_sorted[:-1]
    run_idx = np.flatnonzero(run_start)
    run_end = np.append(run_idx[1:], n)

    group_idx = np.flatnonzero(group_start)
    run_opens_group = group_start[run_idx]
    group_first_run = np.flatnonzero(run_opens_group)
    run_group = np.cumsum(run_opens_group) - 1
    # Twice the 1-based average rank, within its group, of each run of tied scores.
    twice_rank = run_idx + run_end + 1 - 2 * group_idx[run_group]
    run_positives = np.add.reduceat(y_sorted.astype(np.int64), run_idx)

    twice_rank_sum = np.add.reduceat(run_positives * twice_rank, group_first_run)
    rows = np.diff(np.append(group_idx, n))
    positives = np.add.reduceat(run_positives, group_first_run)
    u = (twice_rank_sum - positives * (positives + 1)) / 2.0
    return rows, positives, u


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Exact ROC AUC, tied scores counting 1/2 (Mann-Whitney U with average ranks).

    Args:
        labels: ``[N]`` labels; a value ``> 0.5`` is a positive.
        scores: ``[N]`` scores (any monotone scale: probabilities or logits).

    Returns:
        The AUC in ``[0, 1]``, or ``nan`` when only one class (or no row) is present.

    Example::

        >>> auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
        0.75
        >>> auc(np.array([0, 1]), np.array([0.5, 0.5]))
        0.5
    """
    y, s = _binary_labels_and_scores(labels, scores)
    if y.size == 0:
        return float("nan")
    order = np.argsort(s, kind="stable")
    group_start = np.zeros(y.size, dtype=bool)
    group_start[0] = True
    _, positives, u = _sorted_group_stats(y[order], s[order], group_start)
    p = int(positives[0])
    negatives = y.size - p
    if p == 0 or negatives == 0:
        return float("nan")
    return float(u[0] / (p * negatives))


def grouped_auc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> GroupedAUC:
    """Per-group exact AUC, averaged unweighted (UAUC) and impression-weighted (GAUC).

    Groups with a single class are skipped. Group ids may be arbitrary (unsorted, non-contiguous,
    negative); rows need not be ordered.

    Args:
        labels: ``[N]`` labels; a value ``> 0.5`` is a positive.
        scores: ``[N]`` scores.
        groups: ``[N]`` group (user) ids, e.g. int64.

    Returns:
        A :class:`GroupedAUC`; ``uauc`` and ``gauc`` are ``nan`` when no group has both classes.

    Example::

        >>> r = grouped_auc(np.array([0, 1, 0, 0, 1, 1, 1]),
        ...                 np.array([0.2, 0.9, 0.3, 0.6, 0.5, 0.2, 0.1]),
        ...                 np.array([7, 7, -3, -3, -3, -3, 42]))
        >>> r.uauc, r.gauc, r.groups_used, r.groups_total
        (0.625, 0.5, 2, 3)
    """
    y, s = _binary_labels_and_scores(labels, scores)
    g = np.asarray(groups)
    if g.shape != y.shape:
        raise ValueError(f"groups must have shape {y.shape}, got {g.shape}")
    if y.size == 0:
        return GroupedAUC(uauc=float("nan"), gauc=float("nan"), groups_used=0, groups_total=0)
    order = np.lexsort((s, g))
    g_sorted = g[order]
    group_start = np.empty(y.size, dtype=bool)
    group_start[0] = True
    group_start[1:] = g_sorted[1:] != g_sorted[:-1]
    rows, positives, u = _sorted_group_stats(y[order], s[order], group_start)

    negatives = rows - positives
    used = (positives > 0) & (negatives > 0)
    groups_used = int(used.sum())
    if groups_used == 0:
        return GroupedAUC(uauc=float("nan"), gauc=float("nan"), groups_used=0, groups_total=rows.size)
    group_auc = u[used] / (positives[used] * negatives[used]).astype(np.float64)
    weights = rows[used].astype(np.float64)
    return GroupedAUC(
        uauc=float(group_auc.mean()),
        gauc=float(np.dot(group_auc, weights) / weights.sum()),
        groups_used=groups_used,
        groups_total=rows.size,
    )


def logloss(labels: np.ndarray, scores: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities clipped to ``[eps, 1 - eps]``.

    Args:
        labels: ``[N]`` labels; a value ``> 0.5`` is a positive.
        scores: ``[N]`` predicted probabilities of the positive class.
        eps: clipping bound keeping the loss finite.

    Returns:
        The mean log loss, or ``nan`` for no row.

    Example::

        >>> round(logloss(np.array([1, 0]), np.array([0.5, 0.5])), 6)
        0.693147
    """
    y, s = _binary_labels_and_scores(labels, scores)
    if y.size == 0:
        return float("nan")
    p = np.clip(s, eps, 1.0 - eps)
    return float(-np.mean(np.where(y, np.log(p), np.log1p(-p))))


def calibration(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean prediction divided by mean label; 1.0 means calibrated on average.

    Args:
        labels: ``[N]`` labels; a value ``> 0.5`` is a positive.
        scores: ``[N]`` predicted probabilities.

    Returns:
        ``mean(scores) / mean(labels)``, or ``nan`` when there is no positive.

    Example::

        >>> calibration(np.array([0, 1, 0, 1]), np.array([0.25, 0.5, 0.25, 0.5]))
        0.75
    """
    y, s = _binary_labels_and_scores(labels, scores)
    positives = int(y.sum())
    if positives == 0:
        return float("nan")
    return float(s.sum() / positives)


def label_metrics(
    name: str,
    labels: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    oracle: Optional[np.ndarray] = None,
) -> LabelMetrics:
    """All metrics of one label.

    Args:
        name: the label's name.
        labels: ``[N]`` labels; a value ``> 0.5`` is a positive.
        scores: ``[N]`` predicted probabilities.
        groups: ``[N]`` user ids for UAUC/GAUC.
        oracle: optional ``[N]`` true probabilities; their AUC bounds what a model can reach.

    Returns:
        A :class:`LabelMetrics`.

    Example::

        >>> m = label_metrics("click", np.array([0, 1, 0, 1]), np.array([0.2, 0.6, 0.4, 0.8]),
        ...                   np.array([1, 1, 2, 2]), oracle=np.array([0.1, 0.9, 0.5, 0.5]))
        >>> m.rows, m.positives, m.auc, m.uauc, m.uauc_users, m.oracle_auc
        (4, 2, 1.0, 1.0, 2, 0.875)
    """
    y, s = _binary_labels_and_scores(labels, scores)
    grouped = grouped_auc(y, s, groups)
    return LabelMetrics(
        label=name,
        rows=int(y.size),
        positives=int(y.sum()),
        auc=auc(y, s),
        uauc=grouped.uauc,
        gauc=grouped.gauc,
        uauc_users=grouped.groups_used,
        logloss=logloss(y, s),
        calibration=calibration(y, s),
        oracle_auc=None if oracle is None else auc(y, oracle),
    )


def ranking_metrics(
    label_names: Sequence[str],
    labels: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    oracle: Optional[Mapping[str, np.ndarray]] = None,
) -> List[LabelMetrics]:
    """Metrics of every label of a multi-task ranking model.

    Args:
        label_names: the ``L`` label names, in column order.
        labels: ``[N, L]`` labels; a value ``> 0.5`` is a positive.
        scores: ``[N, L]`` predicted probabilities.
        groups: ``[N]`` user ids for UAUC/GAUC.
        oracle: optional mapping from a label name to its ``[N]`` true probabilities; labels not in it
            get ``oracle_auc=None``.

    Returns:
        One :class:`LabelMetrics` per label, in ``label_names`` order.

    Example::

        >>> ms = ranking_metrics(["click", "like"], np.array([[0, 0], [1, 0], [0, 1], [1, 1]]),
        ...                      np.array([[0.1, 0.3], [0.7, 0.2], [0.2, 0.4], [0.9, 0.1]]),
        ...                      np.array([5, 5, 6, 6]))
        >>> [(m.label, m.auc) for m in ms]
        [('click', 1.0), ('like', 0.5)]
    """
    y = np.asarray(labels)
    s = np.asarray(scores)
    if y.ndim != 2 or s.shape != y.shape or y.shape[1] != len(label_names):
        raise ValueError(
            f"labels and scores must be [N, {len(label_names)}], got {y.shape} and {s.shape}"
        )
    oracle = oracle or {}
    unknown = set(oracle) - set(label_names)
    if unknown:
        raise ValueError(f"oracle given for unknown labels {sorted(unknown)}")
    return [
        label_metrics(name, y[:, i], s[:, i], groups, oracle.get(name))
        for i, name in enumerate(label_names)
    ]
