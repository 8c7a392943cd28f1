"""Two gloo processes against one: the same losses for the same global batches, the same eval metrics.

Each 2-process run starts from the weights of the 1-process run of the same sharding (its initial
checkpoint, resharded by DCP), so differences come from the distributed computation alone. Tolerances:
- table-wise: 1e-5 relative. The math is the same: the 2-process embedding gradients are summed over ranks
  (2x the 1-process mean gradient), and row-wise Adagrad's update is invariant to the gradient's scale;
  only float summation order differs.
- data-parallel (dense kernel, its own 1-process reference: the dense row-wise Adagrad is another
  implementation than fbgemm's fused one): 1e-5 relative; DDP averages the replicas' gradients.
- column-wise: 1e-3 relative. Row-wise Adagrad keeps one accumulator per row *per shard*, the mean squared
  gradient over that shard's columns, so a row split in two columns halves gets two step sizes where one
  process uses one: a real (small) difference of column-wise sharding, not an error.
- eval of the 1-process table-wise checkpoint on 2 processes (resharded to each sharding, uneven shares):
  AUC / UAUC / GAUC and the fusion gate's mean shares equal to 1e-9; the predictions are gathered on rank 0
  only, and rank 1 receives the same metrics.
- a checkpoint written on 2 processes (weights, fused and dense optimizer states) resumed on 1 and on 2:
  the next two losses equal those of the 2-process run continuing without a stop, to 1e-5 relative.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Dict, List

import pytest
import torch.multiprocessing as mp

from tests.jobs import dist_worker
from tests.logs import random_rows, write_rows


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(world: int, data: Path, out: Path, sharding: List[str], kernels: List[str]) -> Dict:
    mp.start_processes(dist_worker.run, args=(world, _port(), str(data), str(out), sharding, kernels),
                       nprocs=world, join=True, start_method="spawn")
    return json.loads((out / f"result-{world}-{sharding[0]}.json").read_text())


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("dist")
    rows = random_rows(dist_worker.GLOBAL_BATCH * dist_worker.STEPS + 200, seed=21, max_history=30, users=40)
    for i, r in enumerate(rows):
        r["request_id"] = i
    data = write_rows(root / "data" / "a.parquet", rows)
    return root, data, _launch(1, data, root, ["table_wise"], ["fused"])


@pytest.mark.parametrize(
    "sharding,kernels,rtol",
    [(["table_wise"], ["fused"], 1e-5), (["data_parallel"], ["dense"], 1e-5), (["column_wise"], ["fused"], 1e-3)],
)
def test_two_processes_match_one(one_process, sharding: List[str], kernels: List[str], rtol: float) -> None:  # type: ignore[no-untyped-def]
    root, data, table_wise = one_process
    single = table_wise if sharding == ["table_wise"] else _launch(1, data, root, sharding, kernels)
    double = _launch(2, data, root, sharding, kernels)
    assert double["losses"] == pytest.approx(single["losses"], rel=rtol)
    assert double["rows"] == table_wise["rows"] == 200
    for label, (auc, uauc, gauc) in table_wise["metrics"].items():
        assert double["metrics"][label] == pytest.approx([auc, uauc, gauc], abs=1e-9)
    # the adaptive fusion's shares: summed over both ranks' uneven shares of the rows, as over one process's
    assert table_wise["fusion_gate"] and set(double["fusion_gate"]) == set(table_wise["fusion_gate"])
    for layer, shares in table_wise["fusion_gate"].items():
        assert double["fusion_gate"][layer] == pytest.approx(shares, abs=1e-9)
    # only rank 0 gathers the predictions; rank 1 gets its metrics by broadcast
    assert json.loads((root / f"received-2-{sharding[0]}.json").read_text()) == double["metrics"]


def test_a_two_process_checkpoint_resumes_on_one_and_on_two(one_process) -> None:  # type: ignore[no-untyped-def]
    root, data, _ = one_process
    result = root / "result-2-table_wise.json"
    if not result.exists():  # when this test runs without the parametrized one before it
        _launch(2, data, root, ["table_wise"], ["fused"])
    continued = json.loads(result.read_text())["continued"]
    results = []
    for world in (1, 2):
        mp.start_processes(dist_worker.resume, args=(world, _port(), str(data), str(root)), nprocs=world,
                           join=True, start_method="spawn")
        results.append(json.loads((root / f"resume-{world}.json").read_text())["losses"])
    assert len(continued) == 2
    assert results[1] == pytest.approx(continued, rel=1e-5)  # the same run, stopped and resumed
    assert results[0] == pytest.approx(continued, rel=1e-5)  # resumed on one process
