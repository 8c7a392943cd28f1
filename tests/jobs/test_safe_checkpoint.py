"""A crafted checkpoint runs nothing: DCP's pickled metadata and byte values are read as plain data only, and
a refused file is a ``CheckpointError`` that names it; a manifest must list every file, ``.metadata`` first."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch import nn

from pyramid_mixer.jobs import checkpoint
from pyramid_mixer.jobs.safe_checkpoint import CheckpointError, read_state

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled")


class Touch:
    """Unpickling it creates ``path`` (what a crafted checkpoint would do, harmlessly)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.path}",))


def reseal(path: Path) -> None:
    """Rewrites the manifest to match the files, as whoever crafts a checkpoint would."""
    manifest = json.loads((path / checkpoint.MANIFEST).read_text())
    manifest["files"] = {p.name: checkpoint._fingerprint(p) for p in sorted(path.iterdir())
                         if p.is_file() and p.name != checkpoint.MANIFEST}
    (path / checkpoint.MANIFEST).write_text(json.dumps(manifest))


def saved(run_dir: Path) -> tuple:
    torch.manual_seed(0)
    model = nn.Linear(8, 4)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(2, 8)).sum().backward()
    opt.step()
    return model, opt, checkpoint.save(run_dir, 1, model, opt, {"steps": 1})


def test_a_project_checkpoint_still_loads_weights_and_optimizer_state(tmp_path: Path) -> None:
    model, opt, path = saved(tmp_path)
    fresh = nn.Linear(8, 4)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=0.5)
    checkpoint.load(path, fresh, fresh_opt)
    assert torch.equal(fresh.weight, model.weight)
    assert fresh_opt.state_dict()["param_groups"][0]["lr"] == 0.1  # a byte value, read back as plain data


def test_crafted_metadata_runs_nothing_and_names_the_file(tmp_path: Path) -> None:
    model, opt, path = saved(tmp_path / "run")
    marker = tmp_path / "ran"
    (path / ".metadata").write_bytes(pickle.dumps(Touch(marker)))
    reseal(path)
    assert checkpoint.problem(path) is None  # the manifest matches: it does not protect against this
    with pytest.raises(CheckpointError, match=r"\.metadata: posix\.system is not a type .* refusing to load it"):
        checkpoint.load(path, model, opt)
    assert not marker.exists()


def test_a_crafted_value_runs_nothing_and_names_the_value(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    dcp.save({"w": torch.ones(3), "lr": Touch(marker)}, checkpoint_id=str(tmp_path / "ckpt"))
    with pytest.raises(CheckpointError, match=r"checkpoint value 'lr' holds more than tensors.*posix\.system"):
        read_state({"w": torch.zeros(3), "lr": 0.0}, tmp_path / "ckpt")
    assert not marker.exists()


def test_metadata_that_is_not_dcp_metadata_is_refused(tmp_path: Path) -> None:
    dcp.save({"w": torch.ones(3)}, checkpoint_id=str(tmp_path / "ckpt"))
    (tmp_path / "ckpt" / ".metadata").write_bytes(pickle.dumps({"state_dict_metadata": {}}))
    with pytest.raises(CheckpointError, match="holds a dict, not DCP checkpoint metadata"):
        read_state({"w": torch.zeros(3)}, tmp_path / "ckpt")


@pytest.mark.parametrize("case", ["empty-list", "extra-file"])
def test_a_manifest_must_list_every_file(tmp_path: Path, case: str) -> None:
    _, _, path = saved(tmp_path)
    if case == "empty-list":
        manifest = json.loads((path / checkpoint.MANIFEST).read_text())
        (path / checkpoint.MANIFEST).write_text(json.dumps(dict(manifest, files={})))
        assert "lists no .metadata" in str(checkpoint.problem(path))
    else:
        (path / "extra.bin").write_bytes(b"x")
        assert checkpoint.problem(path) == f"extra.bin not in its {checkpoint.MANIFEST}"
