"""Next-item batches: the candidate never reaches the user rows, the catalogue rows hold one item each, targets
and seen items point at the right catalogue entries, sampled batches hold every target."""

import numpy as np
import pyarrow as pa
import pytest
import torch

from pyramid_mixer.features.kjt_builder import BatchBuilder
from pyramid_mixer.features.next_item import (
    NextItemBuilder,
    NextItemInputs,
    catalogue_features,
    take_bags,
    with_candidates,
)
from pyramid_mixer.features.schema import DataError
from pyramid_mixer.features.spec import default_spec
from pyramid_mixer.features.tokens import LevelSpec, PyramidLayout
from tests.logs import SCHEMA, random_rows

LAYOUT = PyramidLayout(levels=(LevelSpec(0, 4, 1), LevelSpec(4, 12, 4)))


def _table(n=40, seed=0):
    return pa.Table.from_pylist(random_rows(n, seed=seed, max_history=30), schema=SCHEMA)


def _catalogue(table):
    return np.unique(np.concatenate([table.column("item_id").to_numpy(),
                                     pa.compute.list_flatten(table.column("hist_item_id")).to_numpy()]))


def test_user_rows_lose_the_candidate_and_catalogue_rows_hold_one_item_each():
    spec, table = default_spec(), _table()
    catalogue = _catalogue(table)
    batch = NextItemBuilder(spec, LAYOUT, NextItemInputs(catalogue, seen=True)).build(table)
    plain = BatchBuilder(spec, LAYOUT).build(table)
    B, N = table.num_rows, catalogue.size
    kjt, ref = batch.sparse_features.to_dict(), plain.sparse_features.to_dict()
    assert batch.sparse_features.stride() == B + N and batch.batch_size == B
    for key, jt in kjt.items():
        lengths = jt.lengths()
        if key in spec.target:  # the candidate's features: empty for the users
            assert int(lengths[:B].sum()) == 0
        else:  # every other bag of the user rows is unchanged
            assert torch.equal(lengths[:B], ref[key].lengths()) and torch.equal(jt.values()[: int(lengths[:B].sum())],
                                                                                 ref[key].values())
        if key == "item":  # the candidates: one catalogue item per row, in catalogue order
            assert torch.equal(lengths[B:], torch.ones(N, dtype=lengths.dtype))
            assert jt.values().tolist() == catalogue.tolist()
        else:
            assert int(lengths[B:].sum()) == 0
    items = table.column("item_id").to_numpy()
    assert catalogue[batch.candidates[batch.targets].numpy()].tolist() == items.tolist()
    seen = batch.seen_mask(N)
    for i, hist in enumerate(table.column("hist_item_id").to_pylist()):
        want = set(hist) - {items[i]}
        assert set(catalogue[seen[i].numpy()].tolist()) == want
    assert torch.equal(batch.log_q, torch.zeros(N))


def test_sampled_batches_hold_every_target_and_draw_the_same_negatives_for_the_same_rows():
    spec, table = default_spec(), _table(seed=1)
    catalogue = _catalogue(table)
    counts = np.arange(1, catalogue.size + 1, dtype=np.float64)
    inputs = NextItemInputs(catalogue, negatives=7, item_counts=counts, seed=3)
    a, b = (NextItemBuilder(spec, LAYOUT, inputs).build(table) for _ in range(2))
    assert torch.equal(a.candidates, b.candidates) and torch.equal(a.row_negatives, b.row_negatives)
    items = table.column("item_id").to_numpy()
    assert catalogue[a.candidates[a.targets].numpy()].tolist() == items.tolist()
    n = a.num_candidates
    assert len(np.unique(items)) <= n <= len(np.unique(items)) + 7
    assert bool((a.log_q <= 0).all()) and bool(torch.isfinite(a.log_q).all())
    assert bool((a.row_negatives != a.targets).all()) and int(a.row_negatives.max()) < n
    assert a.sparse_features.stride() == table.num_rows + n


def test_an_unknown_target_item_is_a_clear_error():
    spec, table = default_spec(), _table()
    catalogue = np.setdiff1d(_catalogue(table), table.column("item_id").to_numpy()[:1])
    with pytest.raises(DataError, match="not in the catalogue"):
        NextItemBuilder(spec, LAYOUT, NextItemInputs(catalogue)).build(table)


def test_inputs_reject_an_unsorted_catalogue():
    with pytest.raises(ValueError, match="sorted"):
        NextItemInputs(np.array([3, 1]))


def test_with_candidates_keeps_the_other_keys_values_in_order():
    spec, table = default_spec(), _table(n=5)
    kjt = BatchBuilder(spec, LAYOUT).build(table).sparse_features
    out = with_candidates(kjt, ("author",), "item", np.array([11, 12]))
    assert out.keys() == kjt.keys()
    for key in kjt.keys():
        if key == "author":
            assert out[key].values().numel() == 0
        elif key == "item":
            assert out[key].values().tolist() == kjt[key].values().tolist() + [11, 12]
        else:
            assert out[key].values().tolist() == kjt[key].values().tolist()


def test_candidate_rows_carry_each_items_attributes_from_its_first_row():
    spec, table = default_spec(), _table(seed=4)
    items = table.column("item_id").to_numpy()
    catalogue = np.union1d(_catalogue(table), [items.max() + 1])  # one item that is no row's target
    features = catalogue_features(table, spec, catalogue)
    assert set(features) == {"author", "category"}  # the candidate features after the item id
    first = {}
    for row in table.to_pylist():
        first.setdefault(row["item_id"], row)
    for name, column in (("author", "author_id"), ("category", "item_category")):
        lengths, values = features[name]
        assert lengths.tolist() == [int(i in first) for i in catalogue.tolist()]
        assert values.tolist() == [first[i][column] for i in catalogue.tolist() if i in first]
    inputs = NextItemInputs(catalogue, negatives=5, features=features, seed=2)
    batch = NextItemBuilder(spec, LAYOUT, inputs).build(table)
    B, kjt = table.num_rows, batch.sparse_features.to_dict()
    candidates = catalogue[batch.candidates.numpy()].tolist()
    author = kjt["author"]
    assert int(author.lengths()[:B].sum()) == 0  # the users' own candidate stays hidden
    assert author.lengths()[B:].tolist() == [int(i in first) for i in candidates]
    assert author.values().tolist() == [first[i]["author_id"] for i in candidates if i in first]
    assert kjt["item"].values().tolist() == candidates


def test_take_bags_picks_jagged_bags_in_the_order_asked():
    lengths, values = np.array([2, 0, 3, 1]), np.array([10, 11, 20, 21, 22, 30])
    got_lengths, got_values = take_bags(lengths, values, np.array([3, 0, 1, 2, 0]))
    assert got_lengths.tolist() == [1, 2, 0, 3, 2]
    assert got_values.tolist() == [30, 10, 11, 20, 21, 22, 10, 11]
