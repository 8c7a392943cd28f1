"""Managed collisions: ids of a ``managed_collision`` table reach TorchRec's MCH module unreduced, get rows of
their own as they are seen in training, read the last row when unseen, and survive a checkpoint."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, List

import numpy as np
import pyarrow as pa
import pytest
import torch
import yaml
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from pyramid_mixer.embeddings.collisions import check_world, managed_ids
from pyramid_mixer.embeddings.model_parallel import init_distributed
from pyramid_mixer.features.config_io import ConfigError
from pyramid_mixer.features.kjt_builder import ID_SPACE, BatchBuilder, hash_ids
from pyramid_mixer.features.spec import FeatureSpec, default_spec, default_spec_path, load_spec, validate_spec
from pyramid_mixer.features.tokens import LevelSpec, PyramidLayout
from pyramid_mixer.jobs import checkpoint
from pyramid_mixer.jobs.build import build
from pyramid_mixer.jobs.config import load_config
from pyramid_mixer.jobs.train import train
from tests.logs import SCHEMA, TINY_TRAIN_OVERRIDES, random_rows, write_rows

LAYOUT = PyramidLayout(levels=(LevelSpec(0, 4, 1), LevelSpec(4, 12, 4)))
ITEM_ROWS = 64  # fewer rows than the fixture's ~500 distinct items: the module must evict


def managed_spec(rows: int = ITEM_ROWS) -> FeatureSpec:
    tables = tuple(
        dataclasses.replace(t, num_embeddings=rows, managed_collision=True) if t.name == "t_item" else t
        for t in default_spec().tables
    )
    return dataclasses.replace(default_spec(), tables=tables)


def rows_table(rows: List[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def item_values(kjt, keys: List[str]) -> torch.Tensor:
    return torch.cat([kjt[k].values() for k in keys])


def test_managed_ids_are_not_reduced_and_hashed_ids_stay_non_negative() -> None:
    ids = np.array([0, 5, 2**40, 2**62 + 7], dtype=np.int64)
    assert (hash_ids(ids, ID_SPACE, "modulo") == ids).all()
    hashed = hash_ids(np.array([-3, -(2**63), 0, 2**63 - 1], dtype=np.int64), ID_SPACE, "hash")
    assert (hashed >= 0).all() and (hashed < ID_SPACE).all() and len(set(hashed.tolist())) == 4

    batch = BatchBuilder(managed_spec(), LAYOUT).build(rows_table(random_rows(8, seed=1, max_history=6)))
    raw = [r["item_id"] for r in random_rows(8, seed=1, max_history=6)]
    assert batch.sparse_features["item"].values().tolist() == raw  # 1..499: no modulo by 64 rows


def test_seen_ids_get_rows_of_their_own_and_unseen_ids_read_the_last_row() -> None:
    spec = managed_spec(rows=1000)  # room for every item of the fixture: no eviction
    module = managed_ids(spec, LAYOUT)
    assert module is not None
    builder = BatchBuilder(spec, LAYOUT)
    kjt = builder.build(rows_table(random_rows(32, seed=2, max_history=12))).sparse_features
    item_keys = [k for k in kjt.keys() if k == "item" or k.startswith("hist_item@")]

    module.train()
    remapped = module(kjt)  # counts the ids, then (eviction_interval 1) gives each a row
    assert sorted(remapped.keys()) == sorted(kjt.keys())
    for k in kjt.keys():  # lengths never change; only the managed keys' values do
        assert torch.equal(remapped[k].lengths(), kjt[k].lengths())
        if k not in item_keys:
            assert torch.equal(remapped[k].values(), kjt[k].values())

    module.eval()
    rows = item_values(module(kjt), item_keys)
    raw = item_values(kjt, item_keys)
    assert ((rows >= 0) & (rows < 1000)).all()
    # one row per distinct id, and the same id always gets the same row
    pairs = set(zip(raw.tolist(), rows.tolist()))
    assert len(pairs) == len(set(raw.tolist())) == len(set(rows.tolist()))
    assert (rows != 999).all()

    unseen = builder.build(rows_table([dict(random_rows(1, seed=3, max_history=0)[0], item_id=123456)]))
    assert module(unseen.sparse_features)["item"].values().tolist() == [999]  # the table's last row


def test_a_full_table_evicts_the_rarest_ids_and_keeps_the_frequent_ones() -> None:
    layout = PyramidLayout(levels=(LevelSpec(0, 1, 1),))
    module = managed_ids(managed_spec(rows=8), layout, batch_rows=64)  # 7 rows for ids, row 7 for misses
    builder = BatchBuilder(managed_spec(rows=8), layout)
    base = random_rows(1, seed=4, max_history=0)[0]

    def kjt(ids: List[int]) -> KeyedJaggedTensor:
        return builder.build(
            rows_table([dict(base, request_id=i, item_id=x) for i, x in enumerate(ids)])
        ).sparse_features

    def rows_of(ids: List[int]) -> List[int]:
        module.eval()
        return module(kjt(ids))["item"].values().tolist()

    def step(ids: List[int]) -> None:
        module.train()
        module(kjt(ids))

    rare = list(range(1000, 1030))
    step([7] * 20 + rare)  # 31 distinct ids for 7 rows: the frequent one and 6 rare ones get rows
    first = rows_of([7] + rare)
    assert first[0] != 7 and sum(r != 7 for r in first[1:]) == 6 and first.count(first[0]) == 1
    step([42] * 10 + [43] * 10)  # two new frequent ids evict two ids seen once
    second = rows_of([7, 42, 43] + rare + [555])
    assert second[0] == first[0]  # the frequent id keeps its row
    assert len({second[0], second[1], second[2], 7}) == 4  # 42 and 43 got rows of their own
    assert sum(r != 7 for r in second[3:-1]) == 4 and second[-1] == 7  # 2 rare ids evicted; unseen: last row


def test_spec_checks() -> None:
    spec = managed_spec()
    validate_spec(spec)
    with pytest.raises(ConfigError, match="num_embeddings >= 2"):
        dataclasses.replace(
            spec,
            tables=tuple(dataclasses.replace(t, num_embeddings=1) if t.name == "t_item" else t for t in spec.tables),
        )
    with pytest.raises(ConfigError, match="bucket numbers"):
        dataclasses.replace(
            spec,
            tables=tuple(
                dataclasses.replace(t, managed_collision=True) if t.name == "t_time_gap" else t for t in spec.tables
            ),
        )
    check_world(spec, 1)
    with pytest.raises(ValueError, match="one process"):
        check_world(spec, 2)
    assert managed_ids(default_spec(), LAYOUT) is None


OVERRIDES = TINY_TRAIN_OVERRIDES


def write_managed_spec(path: Path) -> Path:
    raw = yaml.safe_load(default_spec_path().read_text())
    for t in raw["tables"]:
        if t["name"] == "t_item":
            t.update(num_embeddings=ITEM_ROWS, managed_collision=True)
    path.write_text(yaml.safe_dump(raw))
    load_spec(path)
    return path


def final_state(run: Path, overrides: List[str], spec: Path) -> Dict[str, torch.Tensor]:
    built = build(load_config(None, overrides), load_spec(spec), init_distributed())
    checkpoint.load(run / "checkpoints" / "epoch-2", built.dmp, built.optimizer)
    return {
        k: (v.local_shards()[0].tensor if hasattr(v, "local_shards") else v).clone()
        for k, v in built.dmp.state_dict().items()
    }


def test_training_with_a_managed_table_resumes_exactly_and_evaluates(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_rows(data / "a.parquet", random_rows(16 * 40, seed=5, max_history=20), row_group_size=40)
    spec = write_managed_spec(tmp_path / "spec.yaml")
    common = OVERRIDES + [f"data.path={data}", f"data.spec={spec}"]
    straight = train(load_config(None, common + [f"run_dir={tmp_path / 'straight'}"]))
    per_epoch = straight.steps // 2
    cut = tmp_path / "cut"
    train(load_config(None, common + [f"run_dir={cut}", f"train.max_steps={per_epoch + 3}"]))
    resumed = train(load_config(None, common + [f"run_dir={cut}"]))
    assert resumed.steps == straight.steps
    a = final_state(tmp_path / "straight", common, spec)
    b = final_state(cut, common, spec)
    mch = [k for k in a if "_mch_sorted_raw_ids" in k]
    assert mch, sorted(a)[:20]
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert not torch.equal(a[mch[0]], torch.full_like(a[mch[0]], torch.iinfo(torch.int64).max))  # rows given
    report = straight.reports["eval"]
    assert 0.0 < report.metric("click").auc < 1.0
    assert report.rows["rows_read"] == report.rows["rows_used"] == report.metric("click").rows > 0
