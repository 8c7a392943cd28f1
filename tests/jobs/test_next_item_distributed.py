"""Next-item training and evaluation on two gloo processes against one: the same losses for the same global
batches (1e-5 relative, float summation order), and the same metrics of the same model, every protocol, to
1e-12: the ranks are integers gathered from both processes and put in request-id order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch.multiprocessing as mp

from pyramid_mixer.features.datasets.movielens import convert_movielens
from tests.jobs import next_item_worker
from tests.jobs.test_distributed import _port
from tests.jobs.test_next_item_job import write_ratings


def _launch(world: int, data: Path, out: Path) -> dict:
    mp.start_processes(next_item_worker.run, args=(world, _port(), str(data), str(out)), nprocs=world, join=True,
                       start_method="spawn")
    return json.loads((out / f"next-item-{world}.json").read_text())


def test_two_processes_match_one(tmp_path: Path) -> None:
    write_ratings(tmp_path / "raw", users=30, items=60, events=600)
    convert_movielens(tmp_path / "raw", tmp_path / "data", row_group_rows=64)  # several row groups to deal out
    one = _launch(1, tmp_path / "data", tmp_path)
    two = _launch(2, tmp_path / "data", tmp_path)
    assert two["losses"] == pytest.approx(one["losses"], rel=1e-5)
    assert one["users"] == two["users"] == 30 and two["rows"]["rows_used"] == 30
    for protocol, metrics in one["metrics"].items():
        assert two["metrics"][protocol] == pytest.approx(metrics, abs=1e-12), protocol
    assert json.loads((tmp_path / "next-item-received-2.json").read_text()) == two["metrics"]  # rank 1 too
