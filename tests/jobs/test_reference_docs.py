"""The generated references (docs/config.md, docs/spec.md) are current, complete and read from the code."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from pyramid_mixer.features import schema
from pyramid_mixer.jobs import reference_docs
from pyramid_mixer.jobs.field_docs import class_summary, field_descriptions

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_committed_references_are_what_the_job_writes(tmp_path: Path) -> None:
    stale = reference_docs.write_references(DOCS, check=True)
    assert stale == [], "run: python -m pyramid_mixer.jobs.reference_docs (the references differ from the code)"
    assert reference_docs.write_references(tmp_path) == [tmp_path / "config.md", tmp_path / "spec.md"]
    assert reference_docs.write_references(tmp_path, check=True) == []
    (tmp_path / "spec.md").write_text("edited by hand\n")
    with pytest.raises(SystemExit):
        reference_docs.main(["--out", str(tmp_path), "--check"])


def test_every_key_of_every_config_is_in_the_reference() -> None:
    text = reference_docs.config_reference()
    for key in ("run_dir", "on_bad_rows", "gate_init", "readout_hidden", "warmup_steps", "per_table", "seeds",
                "case_batch", "levels", "group"):
        assert f"| `{key}` |" in text
    assert "### `model.layout.levels[]`" in text and "### `model.tower`" in text
    tower = text.split("### `model.tower`")[1].split("###")[0]
    derived = [line for line in tower.splitlines() if "a value here is ignored" in line]
    assert sorted(line.split("`")[1] for line in derived) == ["dim", "level_tokens", "num_features",
                                                              "num_target_features"]


def test_an_undocumented_key_is_an_error_that_says_where_to_document_it() -> None:
    @dataclasses.dataclass
    class Opt:
        """Args:
        lr: the learning rate.
        """

        lr: float = 0.1
        steps: int = 10

    with pytest.raises(ValueError, match=r"keys \['steps'\] have no description"):
        reference_docs.section_tables(Opt, "opt", {}, [])


def test_descriptions_come_from_args_entries_and_field_comments() -> None:
    @dataclasses.dataclass
    class Opt:
        """What it is.

        Args:
            a / b: two widths, read
                together.
            rank, world_size: this process.
        Example::
            nothing: not an entry
        """

        a: int = 1
        b: int = 2
        rank: int = 0
        world_size: int = 1
        # the first comment line
        # and the second
        c: int = 3
        d: int = 4  # on the line
        nothing: int = 5

    docs = field_descriptions(Opt)
    assert docs["a"] == docs["b"] == "two widths, read together."
    assert docs["rank"] == docs["world_size"] == "this process."
    assert docs["c"] == "the first comment line and the second" and docs["d"] == "on the line"
    assert "nothing" not in docs
    assert class_summary(Opt) == "What it is."


def test_the_bad_row_reasons_are_the_ones_check_rows_counts() -> None:
    """``REJECT_REASONS`` (rendered into docs/spec.md) names every reason ``check_rows`` rejects a row for,
    in the order it checks them."""
    source = Path(schema.__file__).read_text().split("def check_rows")[1]
    found = re.findall(r'reject\(f?"([^"]+)"', source)
    templates = [re.sub(r"\{[^}]+\}", "{column}", r) for r in found]
    assert list(dict.fromkeys(templates)) == [reason for reason, _ in schema.REJECT_REASONS]


def test_the_lists_of_choices_come_from_the_registries() -> None:
    from pyramid_mixer.features.datasets.registry import DATASETS
    from pyramid_mixer.ranking.towers import TOWER_KINDS

    text = (DOCS / "config.md").read_text()
    tower_kind = next(line for line in text.splitlines() if line.startswith("| `tower_kind` |"))
    assert tower_kind.endswith("One of: " + ", ".join(f"`{k}`" for k in TOWER_KINDS) + ". |")
    kind = next(line for line in text.splitlines() if line.startswith("| `kind` |"))
    assert all(f"`{name}`" in kind for name in ["planted", *DATASETS])
