"""Next-item model: scores are dot products with the item table's own rows, the user vector never sees the
candidate or the other candidates, and each loss is the formula it names."""

import dataclasses

import numpy as np
import pyarrow as pa
import pytest
import torch
import torch.nn.functional as nnf

from pyramid_mixer.embeddings.tables import embedding_bag_collection
from pyramid_mixer.features.next_item import NextItemBuilder, NextItemInputs, catalogue_features
from pyramid_mixer.features.spec import default_spec
from pyramid_mixer.features.tokens import LevelSpec, PyramidLayout
from pyramid_mixer.ranking.encoder import HistoryEncoder
from pyramid_mixer.ranking.next_item.model import NextItemConfig, NextItemModel, NextItemTrain
from pyramid_mixer.ranking.towers.pyramid_mixer import PyramidMixer, PyramidMixerConfig
from tests.logs import SCHEMA, random_rows

LAYOUT = PyramidLayout(levels=(LevelSpec(0, 4, 1), LevelSpec(4, 12, 4)))


def _setup(user_factor=False, seed=0, item_features=False):
    torch.manual_seed(seed)
    spec = dataclasses.replace(default_spec(), tables=tuple(
        dataclasses.replace(t, num_embeddings=min(t.num_embeddings, 2000)) for t in default_spec().tables))
    ebc = embedding_bag_collection(spec, LAYOUT, device=torch.device("cpu"))
    tower = PyramidMixer(PyramidMixerConfig(level_tokens=LAYOUT.level_tokens, num_features=spec.num_token_features,
                                            dim=16, num_target_features=len(spec.target), out_dim=8,
                                            target_aware=False))
    model = NextItemModel(HistoryEncoder(ebc, spec, LAYOUT, tower), spec, user_factor=user_factor,
                          item_features=item_features)
    rows = random_rows(24, seed=seed, max_history=20)
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    catalogue = np.unique(table.column("item_id").to_numpy())
    return spec, model, table, catalogue


def _batch(spec, table, catalogue, **kw):
    return NextItemBuilder(spec, LAYOUT, NextItemInputs(catalogue, **kw)).build(table)


def test_scores_are_dot_products_with_the_item_tables_rows():
    spec, model, table, catalogue = _setup()
    b = _batch(spec, table, catalogue)
    users, items = model(b.sparse_features, b.dense_features)
    assert users.shape == (table.num_rows, 16) and items.shape == (catalogue.size, 16)
    weight = model.encoder.sparse_arch.embedding_bags["t_item"].weight
    torch.testing.assert_close(items, weight[torch.from_numpy(catalogue)], rtol=0, atol=0)  # one table, no copy
    _, (_, scores, targets, _) = NextItemTrain(model, NextItemConfig())(b)
    torch.testing.assert_close(scores, users @ weight[torch.from_numpy(catalogue)].t())


def test_with_item_features_an_items_vector_sums_its_candidate_features():
    spec, model, table, catalogue = _setup(item_features=True)
    inputs = NextItemInputs(catalogue, features=catalogue_features(table, spec, catalogue))
    b = NextItemBuilder(spec, LAYOUT, inputs).build(table)
    users, items = model(b.sparse_features, b.dense_features)
    bags = model.encoder.sparse_arch.embedding_bags
    first = {}
    for row in table.to_pylist():
        first.setdefault(row["item_id"], row)
    want = torch.stack([bags["t_item"].weight[i] + bags["t_author"].weight[first[i]["author_id"]]
                        + bags["t_category"].weight[first[i]["item_category"]] for i in catalogue.tolist()])
    torch.testing.assert_close(items, want)
    _, plain, _, _ = _setup()  # the same seed: the same tables and tower
    _, ids_only = plain(_batch(spec, table, catalogue).sparse_features, b.dense_features)
    assert not torch.allclose(items, ids_only)
    torch.testing.assert_close(users, plain(b.sparse_features, b.dense_features)[0])  # the user side is the same


def test_the_user_vector_sees_neither_its_item_nor_the_candidates():
    spec, model, table, catalogue = _setup()
    model.eval()
    full = _batch(spec, table, catalogue)
    users, _ = model(full.sparse_features, full.dense_features)
    # other candidates (a sample of the catalogue) and another target item in the row: the same users
    sampled = _batch(spec, table, catalogue, negatives=3)
    moved = table.set_column(table.schema.get_field_index("item_id"), "item_id",
                             pa.array(np.roll(table.column("item_id").to_numpy(), 1)))
    for b in (sampled, _batch(spec, moved, catalogue)):
        torch.testing.assert_close(model(b.sparse_features, b.dense_features)[0], users, rtol=0, atol=0)


def test_user_factor_adds_the_user_rows_embedding():
    spec, model, table, catalogue = _setup(user_factor=True)
    b = _batch(spec, table, catalogue)
    with_factor, _ = model(b.sparse_features, b.dense_features)
    model.user_key = None
    without, _ = model(b.sparse_features, b.dense_features)
    user_rows = b.sparse_features["user"].values()[: table.num_rows]
    user_table = model.encoder.sparse_arch.embedding_bags["t_user"].weight
    torch.testing.assert_close(with_factor - without, user_table[user_rows])


def test_each_loss_is_its_formula_and_trains_the_candidates_rows():
    spec, model, table, catalogue = _setup()
    full = _batch(spec, table, catalogue)
    loss, (_, scores, targets, w) = NextItemTrain(model, NextItemConfig(loss="softmax"))(full)
    torch.testing.assert_close(loss, nnf.cross_entropy(scores, targets))
    loss.backward()
    grad = model.encoder.sparse_arch.embedding_bags["t_item"].weight.grad
    assert bool((grad[torch.from_numpy(catalogue)].abs().sum(1) > 0).all())  # every catalogue row learns
    sampled = _batch(spec, table, catalogue, negatives=5, item_counts=np.ones(catalogue.size))
    loss, (_, scores, targets, _) = NextItemTrain(model, NextItemConfig(loss="sampled_softmax"))(sampled)
    torch.testing.assert_close(loss, nnf.cross_entropy(scores - sampled.log_q[None], targets))
    assert bool((sampled.log_q < 0).all())
    loss, (_, scores, targets, _) = NextItemTrain(model, NextItemConfig(loss="bpr"))(sampled)
    pos = scores[torch.arange(len(targets)), targets]
    neg = scores[torch.arange(len(targets)), sampled.row_negatives]
    torch.testing.assert_close(loss, -nnf.logsigmoid(pos - neg).mean())
    loss, (_, scores, targets, _) = NextItemTrain(model, NextItemConfig(loss="bce"))(sampled)
    torch.testing.assert_close(loss, (-nnf.logsigmoid(pos) - nnf.logsigmoid(-neg)).mean())
    zero = dataclasses.replace(sampled, weights=torch.zeros_like(sampled.weights))
    assert float(NextItemTrain(model, NextItemConfig(loss="bpr"))(zero)[0].detach()) == 0.0  # filler rows weigh nothing


def test_config_rejects_unknown_losses():
    with pytest.raises(ValueError, match="softmax"):
        NextItemConfig(loss="hinge")


def test_bpr_mf_user_vectors_read_the_user_not_the_history():
    spec, model, table, catalogue = _setup(user_factor=True)
    from pyramid_mixer.ranking.towers.baselines.config import BaselineConfig
    from pyramid_mixer.ranking.towers.baselines.pooling import NoTower

    model.encoder.tower = NoTower(BaselineConfig(num_tokens=LAYOUT.num_slots, num_features=spec.num_token_features,
                                                 dim=16, num_target_features=len(spec.target), out_dim=8))
    model.user_head = torch.nn.Linear(8, 16)
    b = _batch(spec, table, catalogue)
    users, _ = model(b.sparse_features, b.dense_features)
    shuffled = table  # every row gets another row's history
    for name in [c for c in table.column_names if c.startswith("hist_")]:
        moved = table.column(name).take(pa.array(np.roll(np.arange(table.num_rows), 3)))
        shuffled = shuffled.set_column(shuffled.schema.get_field_index(name), name, moved)
    b2 = _batch(spec, shuffled, catalogue)
    torch.testing.assert_close(model(b2.sparse_features, b2.dense_features)[0], users, rtol=0, atol=0)
    rows = b.sparse_features["user"].values()[: table.num_rows]
    offset = users - model.encoder.sparse_arch.embedding_bags["t_user"].weight[rows]
    torch.testing.assert_close(offset, offset[:1].expand_as(offset))  # one vector for every user: MF + a bias
