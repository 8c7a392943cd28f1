"""Tests of pyramid_mixer.ranking.ctr.metrics against scikit-learn and a slow per-group reference."""

import math
from typing import Tuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss, roc_auc_score

from pyramid_mixer.ranking.ctr.metrics import (
    GroupedAUC,
    auc,
    calibration,
    grouped_auc,
    label_metrics,
    logloss,
    ranking_metrics,
)

TOL = 1e-9


def reference_grouped_auc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> GroupedAUC:
    """Slow reference: a Python loop over groups calling sklearn, skipping single-class groups."""
    aucs, weights = [], []
    unique = np.unique(groups)
    for g in unique:
        mask = groups == g
        y = labels[mask] > 0.5
        if y.all() or not y.any():
            continue
        aucs.append(roc_auc_score(y, scores[mask]))
        weights.append(mask.sum())
    if not aucs:
        return GroupedAUC(float("nan"), float("nan"), 0, len(unique))
    return GroupedAUC(
        uauc=float(np.mean(aucs)),
        gauc=float(np.average(aucs, weights=weights)),
        groups_used=len(aucs),
        groups_total=len(unique),
    )


def assert_grouped_equal(actual: GroupedAUC, expected: GroupedAUC) -> None:
    assert actual.groups_used == expected.groups_used
    assert actual.groups_total == expected.groups_total
    if expected.groups_used == 0:
        assert math.isnan(actual.uauc) and math.isnan(actual.gauc)
    else:
        assert actual.uauc == pytest.approx(expected.uauc, abs=TOL)
        assert actual.gauc == pytest.approx(expected.gauc, abs=TOL)


def random_grouped_data(
    rng: np.random.Generator, n_groups: int, tie_decimals: int
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Groups of sizes 1..40 with large random (also negative) int64 ids, group CTRs from 0 to 1, shuffled rows."""
    ids = rng.choice(np.arange(-(2**62), 2**62, 2**40, dtype=np.int64), size=n_groups, replace=False)
    sizes = rng.integers(1, 41, size=n_groups)
    groups = np.repeat(ids, sizes)
    ctr = np.repeat(rng.choice([0.0, 1.0, 0.1, 0.5, 0.9], size=n_groups), sizes)
    labels = (rng.random(groups.size) < ctr).astype(np.float32)
    scores = np.round(rng.random(groups.size) * 0.5 + 0.3 * labels, tie_decimals)
    perm = rng.permutation(groups.size)
    return labels[perm], scores[perm], groups[perm]


# ---------------------------------------------------------------- auc


@pytest.mark.parametrize(
    "make_scores",
    [
        pytest.param(lambda rng, y: rng.normal(size=y.size) + y, id="continuous"),
        pytest.param(lambda rng, y: np.round(rng.random(y.size) + 0.3 * y, 1), id="rounded"),
        pytest.param(lambda rng, y: rng.integers(0, 4, size=y.size) + (y * rng.integers(0, 2, y.size)), id="int"),
        pytest.param(lambda rng, y: np.full(y.size, 0.5), id="all-tied"),
    ],
)
@pytest.mark.parametrize("n", [2, 3, 17, 5000])
def test_auc_matches_sklearn(make_scores, n: int) -> None:
    rng = np.random.default_rng(n)
    labels = rng.integers(0, 2, size=n).astype(np.float64)
    labels[:2] = [0.0, 1.0]
    scores = make_scores(rng, labels)
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=TOL)


def test_auc_tiny_and_label_threshold() -> None:
    assert auc(np.array([1, 0]), np.array([0.2, 0.1])) == 1.0
    assert auc(np.array([1, 0]), np.array([0.1, 0.2])) == 0.0
    assert auc(np.array([1, 0]), np.array([0.3, 0.3])) == 0.5
    assert auc(np.array([0.9, 0.2]), np.array([0.2, 0.1])) == 1.0  # > 0.5 is positive


@pytest.mark.parametrize("labels", [np.zeros(5), np.ones(5), np.zeros(0)])
def test_auc_single_class_is_nan(labels: np.ndarray) -> None:
    assert math.isnan(auc(labels, np.linspace(0, 1, labels.size)))


def test_auc_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        auc(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(ValueError):
        auc(np.array([0, 1]), np.array([0.1, 0.2, 0.3]))


# ---------------------------------------------------------------- grouped_auc


@pytest.mark.parametrize("tie_decimals", [1, 2, 15])
def test_grouped_auc_matches_reference(tie_decimals: int) -> None:
    labels, scores, groups = random_grouped_data(np.random.default_rng(tie_decimals), 400, tie_decimals)
    expected = reference_grouped_auc(labels, scores, groups)
    assert 0 < expected.groups_used < expected.groups_total  # single-class groups are present and skipped
    assert_grouped_equal(grouped_auc(labels, scores, groups), expected)


def test_grouped_auc_small_ids_and_counts() -> None:
    labels = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1])
    scores = np.array([0.5, 0.5, 0.9, 0.1, 0.3, 0.3, 0.7, 0.2, 0.4])
    groups = np.array([-1, -1, 10**15, 3, 3, 3, 3, -(10**15), 10**15], dtype=np.int64)
    result = grouped_auc(labels, scores, groups)
    assert (result.groups_used, result.groups_total) == (2, 4)
    assert result.uauc == pytest.approx(0.5, abs=TOL)  # groups -1 (one tie) and 3 (2 of 4 pairs), both 0.5
    assert_grouped_equal(result, reference_grouped_auc(labels, scores, groups))


def test_grouped_auc_invariant_to_row_order() -> None:
    labels, scores, groups = random_grouped_data(np.random.default_rng(7), 200, 1)
    perm = np.random.default_rng(8).permutation(labels.size)
    assert grouped_auc(labels, scores, groups) == grouped_auc(labels[perm], scores[perm], groups[perm])


def test_grouped_auc_no_qualifying_group() -> None:
    result = grouped_auc(np.array([1, 0, 1]), np.array([0.1, 0.2, 0.3]), np.array([1, 2, 3]))
    assert math.isnan(result.uauc) and math.isnan(result.gauc)
    assert (result.groups_used, result.groups_total) == (0, 3)
    empty = grouped_auc(np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64))
    assert (empty.groups_used, empty.groups_total) == (0, 0)


def test_grouped_auc_single_group_equals_auc() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, size=1000)
    scores = np.round(rng.random(1000), 2)
    result = grouped_auc(labels, scores, np.full(1000, 99, dtype=np.int64))
    assert result.uauc == result.gauc == auc(labels, scores)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-3, 3), st.booleans(), st.integers(0, 4)),
        min_size=1,
        max_size=60,
    )
)
def test_grouped_auc_property(rows) -> None:
    groups, labels, scores = (np.array(column) for column in zip(*rows))
    labels = labels.astype(np.float64)
    scores = scores / 4.0
    assert_grouped_equal(grouped_auc(labels, scores, groups), reference_grouped_auc(labels, scores, groups))


# ---------------------------------------------------------------- logloss and calibration


def test_logloss_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=2000)
    scores = rng.random(2000)
    scores[:4] = [0.0, 1.0, 1e-12, 1 - 1e-12]
    clipped = np.clip(scores, 1e-7, 1 - 1e-7)
    assert logloss(labels, scores) == pytest.approx(log_loss(labels, clipped, labels=[0, 1]), rel=TOL)


def test_calibration() -> None:
    labels = np.array([1, 0, 0, 0])
    assert calibration(labels, np.full(4, 0.25)) == pytest.approx(1.0)
    assert calibration(labels, np.full(4, 0.5)) == pytest.approx(2.0)
    assert math.isnan(calibration(np.zeros(4), np.full(4, 0.5)))


# ---------------------------------------------------------------- label_metrics / ranking_metrics


def test_ranking_metrics_matches_single_label_functions() -> None:
    rng = np.random.default_rng(11)
    n = 3000
    groups = rng.integers(0, 150, size=n) * 7919 - 500
    truth = rng.random((n, 2)) * np.array([0.5, 0.2])
    labels = (rng.random((n, 2)) < truth).astype(np.float32)
    scores = np.clip(truth + rng.normal(scale=0.05, size=(n, 2)), 0.0, 1.0)
    result = ranking_metrics(["click", "like"], labels, scores, groups, oracle={"like": truth[:, 1]})

    assert [m.label for m in result] == ["click", "like"]
    for i, m in enumerate(result):
        y, s = labels[:, i], scores[:, i]
        grouped = grouped_auc(y, s, groups)
        assert m.rows == n and m.positives == int(y.sum())
        assert m.auc == auc(y, s)
        assert (m.uauc, m.gauc, m.uauc_users) == (grouped.uauc, grouped.gauc, grouped.groups_used)
        assert m.logloss == logloss(y, s)
        assert m.calibration == calibration(y, s)
        assert m == label_metrics(m.label, y, s, groups, truth[:, 1] if i == 1 else None)
    assert result[0].oracle_auc is None
    assert result[1].oracle_auc == pytest.approx(roc_auc_score(labels[:, 1], truth[:, 1]), abs=TOL)


def test_ranking_metrics_rejects_bad_shapes() -> None:
    labels = np.zeros((4, 2))
    with pytest.raises(ValueError):
        ranking_metrics(["a"], labels, labels, np.zeros(4))
    with pytest.raises(ValueError):
        ranking_metrics(["a", "b"], labels, np.zeros((4, 3)), np.zeros(4))
    with pytest.raises(ValueError):
        ranking_metrics(["a", "b"], labels, labels, np.zeros(4), oracle={"c": np.zeros(4)})
