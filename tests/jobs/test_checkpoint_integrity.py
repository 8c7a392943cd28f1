"""Checkpoints are checked against their manifest: a partial, truncated or corrupt one is skipped with a
warning and the previous good one is used; loading a damaged one directly is an error that says why."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from pyramid_mixer.jobs import checkpoint

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled")


def two_epochs(run_dir: Path) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Linear(8, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    checkpoint.save(run_dir, 1, model, opt, {"steps": 1})
    with torch.no_grad():
        model.weight.add_(1.0)
    checkpoint.save(run_dir, 2, model, opt, {"steps": 2})
    return model


def data_file(path: Path) -> Path:
    return max((p for p in path.iterdir() if p.name != checkpoint.MANIFEST), key=lambda p: p.stat().st_size)


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "no-manifest", "bad-manifest"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(
    tmp_path: Path, damage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    warnings: list = []
    monkeypatch.setattr(checkpoint.log, "warning", lambda msg, *args: warnings.append(msg % args))
    two_epochs(tmp_path)
    newest = tmp_path / "checkpoints" / "epoch-2"
    assert checkpoint.latest(tmp_path) == newest and checkpoint.problem(newest) is None
    f = data_file(newest)
    if damage == "flip":
        raw = bytearray(f.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        f.write_bytes(bytes(raw))
    elif damage == "truncate":
        f.write_bytes(f.read_bytes()[:-10])
    elif damage == "delete":
        f.unlink()
    elif damage == "no-manifest":
        (newest / checkpoint.MANIFEST).unlink()
    else:
        (newest / checkpoint.MANIFEST).write_text('{"epoch": 2, "fil')
    assert checkpoint.latest(tmp_path) == tmp_path / "checkpoints" / "epoch-1"
    expected = {"flip": "damaged", "truncate": "damaged", "delete": "is missing", "no-manifest": "no MANIFEST",
                "bad-manifest": "unreadable"}[damage]
    (warning,) = warnings
    assert "epoch-2 is not usable" in warning and expected in warning
    with pytest.raises(FileNotFoundError, match=f"not a usable checkpoint: .*{expected}"):
        checkpoint.load(newest, nn.Linear(8, 4))


def test_the_previous_checkpoint_loads_the_previous_weights(tmp_path: Path) -> None:
    model = two_epochs(tmp_path)
    data_file(tmp_path / "checkpoints" / "epoch-2").write_bytes(b"")
    fresh = nn.Linear(8, 4)
    manifest = checkpoint.load(checkpoint.latest(tmp_path), fresh)  # type: ignore[arg-type]
    assert manifest["epoch"] == 1
    torch.testing.assert_close(fresh.weight, model.weight - 1.0)


def test_no_usable_checkpoint_is_none(tmp_path: Path) -> None:
    assert checkpoint.latest(tmp_path) is None
    two_epochs(tmp_path)
    for n in (1, 2):
        (tmp_path / "checkpoints" / f"epoch-{n}" / checkpoint.MANIFEST).unlink()
    assert checkpoint.latest(tmp_path) is None
