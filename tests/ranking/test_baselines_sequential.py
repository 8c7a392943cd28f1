"""The next-item baselines' defining properties: FPMC's transition reads the last item only, BERT4Rec is
bidirectional with cloze masking in training only, FMLP-Rec's filters are circular convolutions, SASRec's
candidate-free readout is its most recent position; padding never leaks into any of them."""

import dataclasses

import pytest
import torch

from pyramid_mixer.ranking.towers.baselines.attention import SasRecTower
from pyramid_mixer.ranking.towers.baselines.config import BaselineConfig
from pyramid_mixer.ranking.towers.baselines.sequential import Bert4RecTower, FilterLayer, FmlpTower, LastItemTower

CONFIG = BaselineConfig(num_tokens=8, num_features=3, dim=4, num_target_features=2, out_dim=6, hidden=16,
                        layers=2, heads=2)


def _inputs(B=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(B, 8, 3, 4, generator=g)
    target = torch.randn(B, 2, 4, generator=g)
    mask = torch.arange(8) < torch.tensor([[8], [5], [1], [0]])[:B]
    return tokens, mask, target


@pytest.mark.parametrize("cls", [LastItemTower, Bert4RecTower, FmlpTower, SasRecTower])
def test_padding_never_leaks(cls):
    torch.manual_seed(0)
    tower = cls(dataclasses.replace(CONFIG, candidate_free=True)).eval()
    tokens, mask, target = _inputs()
    noisy = torch.where(mask[:, :, None, None], tokens, torch.randn_like(tokens) * 100)
    torch.testing.assert_close(tower(tokens, mask, target), tower(noisy, mask, target), rtol=0, atol=1e-5)


def test_last_item_reads_only_the_most_recent_real_token():
    tower = LastItemTower(CONFIG)
    tokens, mask, target = _inputs()
    older = tokens.clone()
    older[:, 1:] = torch.randn_like(older[:, 1:])
    assert torch.equal(tower(tokens, mask, target), tower(older, mask, target))
    newer = tokens.clone()
    newer[:, 0] += 1.0
    changed = (tower(tokens, mask, target) - tower(newer, mask, target)).abs().sum(1) > 0
    assert changed.tolist() == [True, True, True, False]  # the empty history has no most recent token


def test_bert4rec_is_bidirectional_where_sasrec_is_causal():
    torch.manual_seed(0)
    bert, sas = Bert4RecTower(CONFIG).eval(), SasRecTower(CONFIG).eval()
    tokens, mask, _ = _inputs(B=1)
    newer = tokens.clone()
    newer[:, 2] += 1.0  # change behaviour 2 (0 = most recent)
    b0, b1 = bert.encode(tokens, mask), bert.encode(newer, mask)  # slot s + 1 holds behaviour s
    s0, s1 = sas.encode(tokens, mask), sas.encode(newer, mask)
    # an older behaviour (5) reads the newer one (2) in BERT4Rec, not in SASRec
    assert not torch.allclose(b0[:, 6], b1[:, 6])
    torch.testing.assert_close(s0[:, 5], s1[:, 5], rtol=0, atol=0)
    assert not torch.allclose(s0[:, 0], s1[:, 0])  # SASRec's most recent position reads everything older
    assert not torch.allclose(b0[:, 0], b1[:, 0])  # the mask slot reads the whole history


def test_bert4rec_masks_history_tokens_in_training_only():
    torch.manual_seed(0)
    tower = Bert4RecTower(dataclasses.replace(CONFIG, mask_prob=0.5))
    tokens, mask, target = _inputs()
    tower.train()
    torch.manual_seed(1)
    a = tower(tokens, mask, target)
    torch.manual_seed(2)
    assert not torch.allclose(a, tower(tokens, mask, target))  # another cloze draw
    tower.eval()
    assert torch.equal(tower(tokens, mask, target), tower(tokens, mask, target))
    # every history token masked: the encoder reads only mask tokens at the real slots
    all_masked = Bert4RecTower(dataclasses.replace(CONFIG, mask_prob=0.999999)).train()
    x = all_masked.encode(tokens, mask)
    y = all_masked.encode(torch.randn_like(tokens), mask)
    torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_fmlp_filter_is_a_circular_convolution_along_the_sequence():
    torch.manual_seed(0)
    f = FilterLayer(8, 16)
    x = torch.randn(2, 8, 16)
    torch.testing.assert_close(f(torch.roll(x, 3, dims=1)), torch.roll(f(x), 3, dims=1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(f(2 * x + x.flip(1)), 2 * f(x) + f(x.flip(1)), rtol=1e-5, atol=1e-6)  # linear
    # a filter of ones passes the sequence through unchanged (ortho rfft then irfft)
    with torch.no_grad():
        f.weight.zero_()
        f.weight[..., 0] = 1.0
    torch.testing.assert_close(f(x), x, rtol=1e-5, atol=1e-6)


def test_sasrec_candidate_free_readout_is_the_most_recent_encoding():
    torch.manual_seed(0)
    tower = SasRecTower(dataclasses.replace(CONFIG, candidate_free=True)).eval()
    tokens, mask, target = _inputs()
    out = tower(tokens, mask, target)
    torch.testing.assert_close(out, tower(tokens, mask, torch.randn_like(target)), rtol=0, atol=0)
    torch.testing.assert_close(out, tower.out(tower.encode(tokens, mask)[:, 0]), rtol=1e-6, atol=1e-6)
