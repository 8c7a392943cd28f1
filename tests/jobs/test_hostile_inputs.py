"""Bad configs, specs, data and run directories a user can hand the jobs: each gets a clear error (or the
right result), nothing is lost, and every row read is accounted for. ``docs/reliability.md`` points here."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pyramid_mixer.features.config_io import ConfigError
from pyramid_mixer.features.reader import ReadOptions
from pyramid_mixer.features.schema import DataError, SchemaError
from pyramid_mixer.features.spec import default_spec, load_spec
from pyramid_mixer.features.tokens import LevelSpec, PyramidLayout
from pyramid_mixer.jobs import checkpoint
from pyramid_mixer.jobs.cli import describe, job_main
from pyramid_mixer.jobs.config import load_config
from pyramid_mixer.jobs.data import sources
from pyramid_mixer.jobs.eval import main as eval_main
from pyramid_mixer.jobs.generate import MARKER
from pyramid_mixer.jobs.generate import run as generate
from pyramid_mixer.jobs.train import train
from tests.logs import SCHEMA, TINY_TRAIN_OVERRIDES, random_rows, write_rows

ROOT = Path(__file__).resolve().parents[2]
TINY = TINY_TRAIN_OVERRIDES + ["train.epochs=1"]
LAYOUT = PyramidLayout(levels=(LevelSpec(0, 8, 1),))


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("hostile") / "logs"
    write_rows(d / "a.parquet", random_rows(400, seed=3, max_history=12))
    return d


@pytest.fixture(scope="module")
def trained(logs: Path) -> Path:
    run = logs.parent / "run"
    train(load_config(None, TINY + [f"data.path={logs}", f"run_dir={run}"]))
    return run


def cli(module: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", f"pyramid_mixer.jobs.{module}", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


# --- data lost --------------------------------------------------------------------------------------------


def test_generate_refuses_a_directory_with_files_it_did_not_write(tmp_path: Path) -> None:
    mine = tmp_path / "logs" / "impressions.parquet"
    mine.parent.mkdir()
    mine.write_bytes(b"the user's own logs")
    with pytest.raises(FileExistsError, match=r"holds 1 file\(s\) pmx-generate did not write \(impressions"):
        generate(load_config(None, [f"data.path={mine.parent}", "generate.rows=200", "generate.users=20"]))
    assert mine.read_bytes() == b"the user's own logs" and sorted(mine.parent.iterdir()) == [mine]


def test_generate_again_finds_its_own_logs_or_replaces_only_them(tmp_path: Path) -> None:
    out = tmp_path / "logs"
    base = [f"data.path={out}", "generate.users=20", "generate.rows_per_file=150"]
    first = generate(load_config(None, base + ["generate.rows=300"]))
    again = generate(load_config(None, base + ["generate.rows=300"]))
    assert again.seconds == 0.0 and again.rows == first.rows and again.files == first.files
    other = generate(load_config(None, base + ["generate.rows=200"]))
    assert other.rows == 200 and sorted(p.name for p in out.iterdir()) == sorted(
        [MARKER] + [Path(f).name for f in other.files])


def test_generate_refuses_a_uri() -> None:
    with pytest.raises(ConfigError, match="writes to a local directory"):
        generate(load_config(None, ["data.path=s3://bucket/logs"]))


def test_rows_without_a_request_time_are_counted_not_lost(tmp_path: Path) -> None:
    rows = random_rows(200, seed=4, max_history=4)
    for r in rows[::5]:
        r["request_time"] = None
    write_rows(tmp_path / "logs" / "a.parquet", rows)
    srcs = sources(load_config(None, [f"data.path={tmp_path / 'logs'}", "data.eval_days=2"]).data, default_spec())
    stats = []
    for name in ("train", "eval"):
        reader = srcs[name].reader(default_spec(), LAYOUT, ReadOptions(64, bad_rows=srcs[name].bad_rows))
        try:
            list(reader)
        except DataError as e:  # 40 of the train split's rows are null: above data.max_bad_fraction
            assert "null request_time" in str(e) and "max_bad_fraction" in str(e)
        stats.append(reader.stats)
    assert sum(s.rows_read for s in stats) == 200  # every row read once: none left out of both splits
    assert stats[0].rejected["null request_time"] == 40


def test_a_key_given_twice_in_a_config_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "my.yaml"
    path.write_text("train:\n  epochs: 2\nmodel:\n  tower_kind: din\ntrain:\n  batch_size: 64\n")
    with pytest.raises(ConfigError, match=r"my.yaml: line 5: key 'train' is given twice .*\(first on line 1\)"):
        load_config(str(path))


def test_a_resume_with_another_model_is_refused_and_the_record_kept(logs: Path, trained: Path) -> None:
    before = (trained / "config.json").read_text()
    with pytest.raises(ConfigError, match=r"was trained with another config: model.tower.out_dim: 16 -> 24"):
        train(load_config(None, TINY + [f"data.path={logs}", f"run_dir={trained}", "model.tower.out_dim=24"]))
    assert (trained / "config.json").read_text() == before


def test_a_resume_that_changes_nothing_of_the_model_goes_on(logs: Path, trained: Path) -> None:
    result = train(load_config(None, TINY + [f"data.path={logs}", f"run_dir={trained}", "train.epochs=2",
                                             "train.threads=1", "eval.batch_size=100"]))
    assert result.epochs == 1 and Path(result.checkpoint).name == "epoch-2"  # one more epoch, resumed
    assert json.loads((trained / "config.json").read_text())["train"]["epochs"] == 1  # the first run's record


# --- silently wrong results -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [100, 2, -1, 0.5])
def test_labels_other_than_0_and_1_are_rejected_and_counted(tmp_path: Path, value: float) -> None:
    schema = SCHEMA.set(SCHEMA.get_field_index("click"), pa.field("click", pa.float32()))
    rows = random_rows(100, seed=5, max_history=4)
    for r in rows[:5]:
        r["click"] = value
    write_rows(tmp_path / "a.parquet", rows, schema=schema)
    from pyramid_mixer.features.reader import ParquetReader

    reader = ParquetReader([tmp_path / "a.parquet"], default_spec(), LAYOUT, ReadOptions(64))
    batches = list(reader)
    assert reader.stats.rejected == {"label not 0 or 1": 5} and reader.stats.rows_used == 95
    assert all(set(b.labels.unique().tolist()) <= {0.0, 1.0} for b in batches)


def test_training_on_no_rows_is_an_error(tmp_path: Path, logs: Path) -> None:
    empty = tmp_path / "empty" / "a.parquet"
    write_rows(empty, [])
    nothing_left = [f"data.path={logs}", "data.eval_days=1000"]  # every row held out
    for overrides in ([f"data.train=['{empty}']", f"data.test=['{logs}']"], nothing_left):
        with pytest.raises(DataError, match="the train split has no rows .* nothing to train on"):
            train(load_config(None, TINY + overrides + [f"run_dir={tmp_path / 'run'}"]))
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("override, message", [
    ("train.epochs=0", r"train.epochs=0: must be >= 1"),
    ("train.epochs=-1", r"train.epochs=-1: must be >= 1"),
    ("train.max_steps=-3", r"train.max_steps=-3: must be >= 0 \(0: no limit\)"),
    ("train.checkpoint_every=-5", r"train.checkpoint_every=-5: must be >= 0"),
    ("train.batch_size=-8", r"train.batch_size=-8: must be >= 1"),
    ("train.threads=-2", r"train.threads=-2: must be >= 0"),
    ("train.dense_lr=-0.1", r"train.dense_lr=-0.1: a learning rate must be a number >= 0"),
    ("train.sparse_lr=.inf", r"train.sparse_lr=inf: a learning rate must be a number >= 0"),
    ("eval.batch_size=0", r"eval.batch_size=0: must be >= 1"),
    ("data.valid_days=-1", r"data.valid_days=-1 >= 0"),
    ("model.dropout=1", r"model.dropout=1.0: the share of input values zeroed, in \[0, 1\)"),
])
def test_out_of_range_config_values_are_config_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


@pytest.mark.parametrize("edit, message", [
    ("labels:\n  - {name: click, column: click}\n  - {name: click, column: like}\n",
     r"label names must be unique, and \['click'\] is given more than once"),
    ("max_length: -3", r"sequence.max_length=-3: the history cap must be >= 1"),
])
def test_spec_values_that_would_mislead_are_spec_errors(tmp_path: Path, edit: str, message: str) -> None:
    text = (ROOT / "features" / "specs" / "douyin.yaml").read_text()
    if edit.startswith("labels"):
        start = text.index("labels:")
        end = text.index("\n\n", start)
        text = text[:start] + edit + text[end:]
    else:
        text = text.replace("max_length: 2336", edit) if "max_length: 2336" in text else text + "\n"
        assert edit in text
    (tmp_path / "spec.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_spec(tmp_path / "spec.yaml")


def test_eval_with_a_model_other_than_the_checkpoints_is_refused(logs: Path, trained: Path) -> None:
    for override, key in (("model.tower.fusion=sum", "model.tower.fusion: 'gate' -> 'sum'"),
                          ("model.tower.cross_period=false", "model.tower.cross_period: True -> False")):
        with pytest.raises(ConfigError, match=f"was trained with another config: {key}"):
            eval_main(["--debug", "--set", *TINY, f"data.path={logs}", f"run_dir={trained}", override])


def test_eval_writes_beside_the_training_runs_report(logs: Path, trained: Path) -> None:
    before = (trained / "eval.json").read_bytes()
    eval_main(["--set", *TINY, f"data.path={logs}", f"run_dir={trained}", "eval.batch_size=64"])
    assert (trained / "eval.json").read_bytes() == before
    latest = checkpoint.latest(trained)
    assert latest is not None and (trained / "evals" / latest.name / "eval.json").is_file()


def test_a_checkpoint_of_another_width_without_a_record_gets_a_message(logs: Path, trained: Path,
                                                                      tmp_path: Path) -> None:
    from pyramid_mixer.embeddings.model_parallel import init_distributed
    from pyramid_mixer.jobs.build import build

    config = load_config(None, TINY + [f"data.path={logs}", "model.tower.out_dim=24"])
    built = build(config, default_spec(), init_distributed())
    latest = checkpoint.latest(trained)
    assert latest is not None
    with pytest.raises(checkpoint.CheckpointError, match="does not fit this model .* another spec or other widths"):
        checkpoint.load(latest, built.dmp)


# --- crashes that are now messages ------------------------------------------------------------------------


def test_a_malformed_override_names_itself() -> None:
    with pytest.raises(ConfigError, match=r"override 'train.epochs=\[1': not valid YAML at line 1, column 3"):
        load_config(None, ["train.epochs=[1"])


def test_uint64_ids_are_refused_naming_the_file_and_column(tmp_path: Path) -> None:
    rows = random_rows(20, seed=6, max_history=3)
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    i = table.schema.get_field_index("item_id")
    table = table.set_column(i, pa.field("item_id", pa.uint64()),
                             pa.array([r["item_id"] + 2**63 for r in rows], pa.uint64()))
    pq.write_table(table, tmp_path / "a.parquet")
    from pyramid_mixer.features.reader import ParquetReader

    with pytest.raises(SchemaError, match=r"a.parquet: column 'item_id' is uint64, expected int64 .* ids from 2\^63"):
        ParquetReader([tmp_path / "a.parquet"], default_spec(), LAYOUT, ReadOptions(8))


@pytest.mark.parametrize("code, words", [
    (errno.ENOSPC, "no space left on the device"), (errno.EACCES, "permission denied"),
    (errno.EROFS, "a read-only file system"), (errno.ENOTDIR, "a part of the path is a file"),
    (errno.EEXIST, "already exists"), (errno.ENOENT, "does not exist"),
])
def test_file_system_errors_name_the_path_and_what_to_do(code: int, words: str) -> None:
    assert describe(OSError(code, os.strerror(code), "/mnt/runs/x")).startswith(f"/mnt/runs/x: {words}")


def test_a_full_disk_while_checkpointing_says_so_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import torch

    def full(*args, **kwargs):  # type: ignore[no-untyped-def]
        Path(kwargs["checkpoint_id"], "__0_0.distcp").write_bytes(b"x" * 100)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(checkpoint.dcp, "save", full)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 0))
    model = torch.nn.Linear(2, 2)
    with pytest.raises(OSError) as e:
        checkpoint.save(tmp_path, 1, model, torch.optim.SGD(model.parameters(), lr=0.1), {})
    assert e.value.errno == errno.ENOSPC and describe(e.value).startswith(f"{tmp_path / 'checkpoints'}: no space")
    assert list((tmp_path / "checkpoints").iterdir()) == []  # no .epoch-1.tmp left


def test_a_user_error_is_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    @job_main
    def job(argv: List[str]) -> None:
        raise DataError(f"{tmp_path}: no Parquet files found")

    with pytest.raises(SystemExit) as e:
        job([])
    assert e.value.code == 1
    with pytest.raises(DataError):
        job(["--debug"])


def test_the_jobs_print_one_line_for_a_user_error(tmp_path: Path, logs: Path) -> None:
    proc = cli("train", "--set", f"data.path={tmp_path / 'nothing'}", f"run_dir={tmp_path / 'run'}")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'nothing'}: no Parquet files found (give " \
                                                   "a file, a directory or a glob)"
    assert "Traceback" not in proc.stderr
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    proc = cli("train", "--set", *TINY, f"data.path={logs}", f"run_dir={a_file}")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"error: {a_file}: already exists, and is not the directory " \
                                                   "the job needs: pick another path"
    proc = cli("plan", "--hbm-gb", "-1")
    assert proc.returncode == 2 and "--hbm-gb must be > 0" in proc.stderr
