"""The feature spec and schema checks: every error names the file, the entry and what to do."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from pyramid_mixer.features.config_io import ConfigError
from pyramid_mixer.features.reader import ParquetReader, ReadOptions
from pyramid_mixer.features.schema import SchemaError
from pyramid_mixer.features.spec import default_spec, default_spec_path, load_spec
from pyramid_mixer.features.tokens import PyramidLayout
from tests.logs import SCHEMA, random_rows, write_rows


def _spec_file(tmp_path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(default_spec_path().read_text())
    edit(data)
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_default_spec_roles() -> None:
    spec = default_spec()
    assert spec.label_names == ("click", "finish", "like")
    assert spec.sparse_feature("tags").multi_valued
    assert spec.table(spec.sparse_feature("item").table) is spec.table(spec.sequence.fields[0].table)
    assert spec.num_token_features == 5


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    p = _spec_file(tmp_path, lambda d: d["sequence"].update(time_colum="hist_time"))
    with pytest.raises(ConfigError, match=r"spec\.yaml.*unknown key.*time_colum"):
        load_spec(p)


def test_wrong_value_type_is_an_error(tmp_path: Path) -> None:
    p = _spec_file(tmp_path, lambda d: d["tables"][0].update(num_embeddings="many"))
    with pytest.raises(ConfigError, match=r"num_embeddings: expected an integer"):
        load_spec(p)


def test_undeclared_table(tmp_path: Path) -> None:
    p = _spec_file(tmp_path, lambda d: d["sparse"][0].update(table="t_users"))
    with pytest.raises(ConfigError, match=r"'user' uses table 't_users', which is not declared"):
        load_spec(p)


def test_target_must_share_the_history_table(tmp_path: Path) -> None:
    p = _spec_file(tmp_path, lambda d: d.update(target=["author", "item"]))
    with pytest.raises(ConfigError, match=r"must share a table"):
        load_spec(p)


def test_unknown_hashing(tmp_path: Path) -> None:
    p = _spec_file(tmp_path, lambda d: d["sparse"][1].update(hashing="murmur"))
    with pytest.raises(ConfigError, match=r"hashing 'murmur'; use one of"):
        load_spec(p)


def test_sequence_tables_share_dim(tmp_path: Path) -> None:
    p = _spec_file(tmp_path, lambda d: d["tables"][3].update(dim=8))
    with pytest.raises(ConfigError, match=r"must share one dim"):
        load_spec(p)


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    schema = SCHEMA.remove(SCHEMA.get_field_index("hist_action"))
    rows = [{k: v for k, v in r.items() if k != "hist_action"} for r in random_rows(5)]
    path = write_rows(tmp_path / "bad.parquet", rows, schema=schema)
    with pytest.raises(SchemaError, match=r"bad\.parquet: column 'hist_action' is missing, expected list<int64>"):
        ParquetReader([path], default_spec(), PyramidLayout(), ReadOptions(4))


def test_wrong_list_element_type_names_spec_entry(tmp_path: Path) -> None:
    i = SCHEMA.get_field_index("hist_time")
    schema = SCHEMA.set(i, pa.field("hist_time", pa.list_(pa.string())))
    rows = random_rows(5)
    for r in rows:
        r["hist_time"] = [str(t) for t in r["hist_time"]]
    write_rows(tmp_path / "ok.parquet", random_rows(5))
    path = write_rows(tmp_path / "typed.parquet", rows, schema=schema)
    with pytest.raises(
        SchemaError,
        match=r"typed\.parquet: column 'hist_time' is list<string>, expected list<int64> "
        r"\(see feature spec 'sequence.time_column'",
    ):
        ParquetReader([tmp_path], default_spec(), PyramidLayout(), ReadOptions(4))  # the second file is checked too
    assert path.exists()


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no Parquet files found"):
        ParquetReader([tmp_path / "nope"], default_spec(), PyramidLayout(), ReadOptions(4))
