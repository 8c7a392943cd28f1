"""The ranking model around the tower: token selection by name, masks from bag lengths, the weighted loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as nnf

from pyramid_mixer.embeddings.tables import embedding_bag_collection
from pyramid_mixer.features.reader import ParquetReader, ReadOptions
from pyramid_mixer.features.spec import default_spec
from pyramid_mixer.features.tokens import LevelSpec, PyramidLayout
from pyramid_mixer.ranking.ctr.model import (
    GroupLossConfig,
    OverArchConfig,
    RankingModel,
    RankingTrain,
    pairwise_group_loss,
)
from pyramid_mixer.ranking.encoder import HistoryEncoder
from pyramid_mixer.ranking.towers.pyramid_mixer import PyramidMixer, PyramidMixerConfig
from tests.logs import random_rows, write_rows

LAYOUT = PyramidLayout(levels=(LevelSpec(0, 4, 1), LevelSpec(4, 12, 4)))


class Spy(torch.nn.Module):
    """A tower that records what it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.config = PyramidMixerConfig(out_dim=3)
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: dict = {}

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.seen = {"tokens": tokens, "mask": mask, "target": target}
        return tokens.new_zeros(tokens.size(0), 3) + self.w


@pytest.fixture()
def batch(tmp_path: Path):  # type: ignore[no-untyped-def]
    write_rows(tmp_path / "a.parquet", random_rows(12, seed=11, max_history=9))
    return next(iter(ParquetReader([tmp_path], default_spec(), LAYOUT, ReadOptions(batch_size=12))))


def _model(tower: torch.nn.Module, input_norm: bool = True, dropout: float = 0.0) -> RankingModel:
    torch.manual_seed(0)
    spec = default_spec()
    ebc = embedding_bag_collection(spec, LAYOUT, device=torch.device("cpu"))
    encoder = HistoryEncoder(ebc, spec, LAYOUT, tower, input_norm=input_norm, dropout=dropout)
    return RankingModel(encoder, spec, OverArchConfig(hidden=(8,)))


def test_tower_gets_tokens_mask_and_target_by_name(batch) -> None:  # type: ignore[no-untyped-def]
    spy = Spy()
    model = _model(spy, input_norm=False)
    logits = model(batch.sparse_features, batch.dense_features)
    assert logits.shape == (12, 3)
    tokens, mask, target = spy.seen["tokens"], spy.seen["mask"], spy.seen["target"]
    assert tokens.shape == (12, 6, 5, 16) and mask.shape == (12, 6) and target.shape == (12, 3, 16)
    pooled = model.encoder.sparse_arch(batch.sparse_features).to_dict()
    torch.testing.assert_close(tokens[:, 5, 2], pooled["hist_category@L1.t1"])  # slot 5 = L1.t1; feature 2 = category
    torch.testing.assert_close(target[:, 1], pooled["author"])
    # a slot is real iff its bag is non-empty: slots 0-3 hold positions 0-3, slot 4+j positions 4+4j .. 7+4j
    hist = batch.history_length
    expected = torch.stack([hist > p for p in (0, 1, 2, 3, 4, 8)], 1)
    assert torch.equal(mask, expected)
    assert not mask[hist == 0].any()


def test_tower_reads_layer_normed_inputs_whatever_the_tables_scale(batch) -> None:  # type: ignore[no-untyped-def]
    spy = Spy()
    model = _model(spy)
    with torch.no_grad():
        model(batch.sparse_features, batch.dense_features)
        tokens, mask, target = spy.seen["tokens"], spy.seen["mask"], spy.seen["target"]
        real = tokens[mask].flatten(1)  # every real token, over F X D
        torch.testing.assert_close(real.mean(1), torch.zeros(len(real)), atol=1e-5, rtol=0)
        torch.testing.assert_close(real.var(1, unbiased=False), torch.ones(len(real)), atol=1e-3, rtol=0)
        assert bool(mask.any()) and not mask.all() and tokens[~mask].eq(0).all()  # padding stays zero
        torch.testing.assert_close(target.flatten(1).mean(1), torch.zeros(12), atol=1e-5, rtol=0)
        for table in model.encoder.sparse_arch.embedding_bags.values():
            table.weight.mul_(20.0)  # tables 20x larger: the tower reads the same
        model(batch.sparse_features, batch.dense_features)
    torch.testing.assert_close(spy.seen["tokens"], tokens, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(spy.seen["target"], target, atol=1e-4, rtol=1e-4)


def test_dropout_zeroes_a_share_of_the_inputs_while_training_only(batch) -> None:  # type: ignore[no-untyped-def]
    spy, plain_spy = Spy(), Spy()
    model, plain = _model(spy, dropout=0.5), _model(plain_spy)
    with torch.no_grad():
        plain(batch.sparse_features, batch.dense_features)
        model.eval()
        model(batch.sparse_features, batch.dense_features)  # evaluation reads every value, unscaled
        torch.testing.assert_close(spy.seen["tokens"], plain_spy.seen["tokens"])
        torch.testing.assert_close(spy.seen["target"], plain_spy.seen["target"])
        model.train()
        model(batch.sparse_features, batch.dense_features)
    tokens, full, mask = spy.seen["tokens"], plain_spy.seen["tokens"], spy.seen["mask"]
    real = tokens[mask]
    kept = real != 0
    assert 0.4 < kept.float().mean().item() < 0.6  # about half of the real tokens' values
    torch.testing.assert_close(real[kept], 2 * full[mask][kept])  # the rest scaled by 1 / (1 - 0.5)
    assert tokens[~mask].eq(0).all()  # padding stays zero
    target = spy.seen["target"]
    assert 0.3 < (target != 0).float().mean().item() < 0.7
    torch.testing.assert_close(target[target != 0], 2 * plain_spy.seen["target"][target != 0])


def test_loss_is_the_label_weighted_sum_of_bce(batch) -> None:  # type: ignore[no-untyped-def]
    model = _model(PyramidMixer(PyramidMixerConfig(level_tokens=LAYOUT.level_tokens, num_features=5,
                                                   num_target_features=3, out_dim=8)))
    weights = (1.0, 0.5, 0.25)
    loss, (detached, logits, labels, row_weights) = RankingTrain(model, weights)(batch)
    assert torch.equal(row_weights, torch.ones(12))
    per_label = [nnf.binary_cross_entropy_with_logits(logits[:, j], labels[:, j]) for j in range(3)]
    torch.testing.assert_close(loss, sum(w * bce for w, bce in zip(weights, per_label)))
    assert torch.equal(detached, loss.detach()) and not detached.requires_grad
    loss.backward()
    assert all(p.grad is not None for p in model.encoder.tower.parameters())


def test_reader_and_model_layouts_must_agree(batch) -> None:  # type: ignore[no-untyped-def]
    spec = default_spec()
    other = PyramidLayout(levels=(LevelSpec(0, 2, 1), LevelSpec(2, 12, 5)))
    ebc = embedding_bag_collection(spec, other, device=torch.device("cpu"))
    model = RankingModel(HistoryEncoder(ebc, spec, other, Spy()), spec, OverArchConfig(hidden=(8,)))
    with pytest.raises(ValueError, match="reader's spec/layout differ from the model's"):
        model(_shifted(batch.sparse_features), batch.dense_features)


def _shifted(kjt):  # type: ignore[no-untyped-def]
    """The same bags under keys rotated by one: what a reader with another spec or layout produces."""
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    keys = kjt.keys()
    return KeyedJaggedTensor(keys=keys[1:] + keys[:1], values=kjt.values(), lengths=kjt.lengths())


def test_the_pairwise_group_loss_is_its_formula_and_ignores_user_level_shifts() -> None:
    g = torch.Generator().manual_seed(0)
    scores, labels = torch.randn(20, 2, generator=g), (torch.rand(20, 2, generator=g) > 0.5).float()
    groups, weights = torch.randint(0, 4, (20,), generator=g), torch.ones(20)
    weights[3] = 0.0  # a filler row is in no pair
    got = pairwise_group_loss(scores, labels, groups, weights)
    for label in range(2):
        terms = [torch.log1p(torch.exp(scores[j, label] - scores[i, label]))
                 for i in range(20) for j in range(20)
                 if groups[i] == groups[j] and labels[i, label] == 1 and labels[j, label] == 0 and 3 not in (i, j)]
        torch.testing.assert_close(got[label], torch.stack(terms).mean())
    shifted = scores + torch.randn(4, 1, generator=g)[groups]  # one constant per user: the ranking within is kept
    torch.testing.assert_close(pairwise_group_loss(shifted, labels, groups, weights), got)
    alone = pairwise_group_loss(scores, labels, torch.arange(20), weights)  # no two rows of one user
    assert torch.equal(alone, torch.zeros(2))


def test_the_group_loss_is_added_to_each_labels_bce(batch) -> None:  # type: ignore[no-untyped-def]
    model = _model(PyramidMixer(PyramidMixerConfig(level_tokens=LAYOUT.level_tokens, num_features=5,
                                                   num_target_features=3, out_dim=8)))
    weights = (1.0, 0.5, 0.25)
    plain, (_, logits, labels, rows) = RankingTrain(model, weights)(batch)
    both, _ = RankingTrain(model, weights, GroupLossConfig(weight=2.0))(batch)
    pair = pairwise_group_loss(logits, labels, batch.group_ids, rows)
    assert pair.sum() > 0  # the batch has pairs of one user's rows
    torch.testing.assert_close(both, plain + 2.0 * (pair * torch.tensor(weights)).sum())
    with pytest.raises(ValueError, match="group_loss.weight=-1"):
        GroupLossConfig(weight=-1.0)
