"""The README's tower diagram (``docs/tower_diagram.py``): it writes a PNG, and its labels come from the code."""

from __future__ import annotations

import dataclasses
import importlib.util
import struct
from pathlib import Path
from types import ModuleType

import pytest
from matplotlib import pyplot as plt

from pyramid_mixer.features.spec import default_spec
from pyramid_mixer.features.tokens import LevelSpec, PyramidLayout
from pyramid_mixer.jobs.config import ModelConfig
from pyramid_mixer.ranking.towers.pyramid_mixer import PyramidMixerConfig

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "tower_diagram.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def diagram() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tower_diagram", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def drawn_text(diagram: ModuleType, layout: PyramidLayout | None = None) -> str:
    fig = diagram.build_figure(layout)
    try:
        return "\n".join(t.get_text() for ax in fig.axes for t in ax.texts)
    finally:
        plt.close(fig)


def test_writes_a_png(diagram: ModuleType, tmp_path: Path) -> None:
    out = diagram.main(["--out", str(tmp_path / "sub" / "tower.png")])
    data = out.read_bytes()
    assert out == tmp_path / "sub" / "tower.png"
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 10_000
    assert data[12:16] == b"IHDR" and struct.unpack(">II", data[16:24]) == (1600, 900)


def test_labels_come_from_the_default_layout_config_and_spec(diagram: ModuleType) -> None:
    text = drawn_text(diagram)
    layout, spec, model = PyramidLayout(), default_spec(), ModelConfig()
    cfg = model.tower_config(spec)
    for lv in layout.levels:
        assert f"[{lv.start}, {lv.end})" in text
        assert f"{lv.group} behaviour" in text
        assert f"= {lv.tokens} tokens" in text
    assert f"{cfg.layers_per_level} mixer layer" in text
    assert f"low-rank r = {cfg.low_rank}" in text
    assert f"a₀ = {cfg.gate_init}" in text
    assert f"fusion {cfg.fusion}" in text
    assert f"carry {cfg.carry_tokens} tokens" in text
    assert f"{cfg.carry_tokens} carried + " in text
    assert f"K = {len(layout.levels)} period tokens" in text
    assert f"out_dim = {cfg.out_dim}" in text
    assert f"F = {spec.num_token_features}" in text and f"D = {spec.sequence_dim}" in text
    assert f"Ft = {len(spec.target)}" in text
    assert "(" + ", ".join(map(str, model.over_arch.hidden)) + ")" in text
    for name in [f.name for f in spec.sequence.fields] + [spec.sequence.time_gap_table]:
        assert name in text
    assert " · ".join(spec.target) in text
    assert " · ".join(spec.label_names) in text


def test_another_layout_changes_the_labels(diagram: ModuleType) -> None:
    layout = PyramidLayout(levels=(LevelSpec(0, 8, 1), LevelSpec(8, 40, 4)))
    text = drawn_text(diagram, layout)
    assert "[0, 8)" in text and "[8, 40)" in text and "4 behaviours" in text and "= 8 tokens" in text
    assert "K = 2 period tokens" in text
    assert "[288, 2336)" not in text


def test_switches_name_config_fields(diagram: ModuleType) -> None:
    text = drawn_text(diagram)
    tower_fields = {f.name for f in dataclasses.fields(PyramidMixerConfig)}
    switches = [line for line in text.splitlines() if line.startswith("tower.")]
    drawn = {s.split("=")[0].removeprefix("tower.") for s in switches}
    assert drawn <= tower_fields
    assert {"cross_behavior", "cross_feature", "fusion", "low_rank", "carry_tokens", "cross_period",
            "target_aware"} <= drawn
    assert "tower.fusion=sum" in switches and "levels=1" in text.splitlines()
    with pytest.raises(KeyError):
        diagram.switch("no_such_switch", 0)
