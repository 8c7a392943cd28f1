"""Next-item metrics against a brute-force reference: ranks by sorting, metrics by a per-row loop."""

import math

import numpy as np
import pytest
import torch

from pyramid_mixer.ranking.next_item.metrics import (
    row_uniforms,
    sample_negatives,
    sampled_ranks,
    target_ranks,
    topk_metrics,
)


def brute_rank(scores, target, masked):
    """Position of the target when the unmasked items are sorted by score, ties put before the target."""
    items = [j for j in range(len(scores)) if j == target or not masked[j]]
    order = sorted(items, key=lambda j: (-scores[j], j == target))
    return order.index(target) + 1


def brute_metrics(ranks, ks):
    out = {}
    for k in ks:
        out[f"HR@{k}"] = sum(1.0 for r in ranks if r <= k) / len(ranks)
        out[f"NDCG@{k}"] = sum(1.0 / math.log2(r + 1) for r in ranks if r <= k) / len(ranks)
        out[f"MRR@{k}"] = sum(1.0 / r for r in ranks if r <= k) / len(ranks)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_ranks_and_metrics_equal_brute_force(seed):
    rng = np.random.default_rng(seed)
    B, N = 64, 40
    scores = rng.integers(0, 6, size=(B, N)).astype(np.float32)  # many ties
    targets = rng.integers(0, N, size=B)
    masked = rng.random((B, N)) < 0.3
    masked[np.arange(B), targets] = rng.random(B) < 0.5  # a masked target is still ranked
    got = target_ranks(torch.from_numpy(scores), torch.from_numpy(targets), torch.from_numpy(masked)).numpy()
    want = np.array([brute_rank(scores[i], targets[i], masked[i]) for i in range(B)])
    np.testing.assert_array_equal(got, want)
    m, ref = topk_metrics(got, ks=(1, 5, 10, 20)), brute_metrics(want.tolist(), (1, 5, 10, 20))
    assert m.keys() == ref.keys()
    for key in ref:
        assert m[key] == pytest.approx(ref[key], abs=1e-12), key


def test_ties_never_flatter_and_masking_lifts_the_target():
    scores = torch.zeros(1, 5)
    assert target_ranks(scores, torch.tensor([2])).tolist() == [5]  # all tied: last
    scores = torch.tensor([[3.0, 2.0, 1.0, 0.0, 5.0]])
    masked = torch.tensor([[True, False, False, False, True]])
    assert target_ranks(scores, torch.tensor([2])).tolist() == [4]
    assert target_ranks(scores, torch.tensor([2]), masked).tolist() == [2]  # items 0 and 4 seen: only 1 beats it


def test_metrics_reject_zero_ranks_and_give_nan_on_no_rows():
    with pytest.raises(ValueError, match="1-based"):
        topk_metrics(np.array([0, 1]))
    assert all(math.isnan(v) for v in topk_metrics(np.array([], dtype=np.int64), ks=(10,)).values())


def test_sampled_negatives_avoid_excluded_items_follow_weights_and_depend_on_the_row_only():
    excluded = torch.zeros(200, 30, dtype=torch.bool)
    excluded[:, :5] = True
    keys = np.arange(200) * 7
    u = torch.from_numpy(row_uniforms(keys, 30, seed=3))
    neg = sample_negatives(excluded, 10, u)
    assert neg.shape == (200, 10) and int(neg.min()) >= 5
    assert all(len(set(row.tolist())) == 10 for row in neg)  # distinct per row
    # a row's draw is a function of its key: the same rows in another order (another batch) draw the same
    order = np.random.default_rng(0).permutation(200)
    again = sample_negatives(excluded[order], 10, torch.from_numpy(row_uniforms(keys[order], 30, seed=3)))
    assert torch.equal(again, neg[order])
    counts = np.bincount(neg.reshape(-1).numpy(), minlength=30)[5:]
    assert counts.min() > 0.5 * counts.mean()  # roughly uniform over the 25 eligible items
    weights = torch.zeros(30)
    weights[5:15] = 1.0  # only 10 items can be drawn: every row gets exactly them
    neg = sample_negatives(excluded, 10, u, weights)
    assert all(sorted(row.tolist()) == list(range(5, 15)) for row in neg)
    weights[5:30] = torch.linspace(1, 50, 25)  # by popularity: heavy items come up far more often
    counts = np.bincount(sample_negatives(excluded, 3, u, weights).reshape(-1).numpy(), minlength=30)
    assert counts[25:].sum() > 3 * counts[5:10].sum()
    with pytest.raises(ValueError, match="needs 26 negatives"):
        sample_negatives(excluded, 26, u)


def test_sampled_ranks_count_ties_against_the_target():
    scores = torch.tensor([[1.0, 1.0, 0.5, 2.0]])
    assert sampled_ranks(scores, torch.tensor([0]), torch.tensor([[1, 2]])).tolist() == [2]
    assert sampled_ranks(scores, torch.tensor([0]), torch.tensor([[2, 3]])).tolist() == [2]
    assert sampled_ranks(scores, torch.tensor([3]), torch.tensor([[0, 1, 2]])).tolist() == [1]
