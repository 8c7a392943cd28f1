"""Draws the Pyramid Mixer tower as a PNG for the README: levels, mixer layers, carry tokens, readout, heads.

Every number and name on the diagram is read from the code's defaults, so the picture cannot drift from it:
the levels (behaviour range, behaviours per token, token count) from ``PyramidLayout``; the tower's shape
from ``ModelConfig().tower_config(spec)`` (``PyramidMixerConfig``'s defaults with the token features, width
and candidate features filled in from the spec, as the jobs build it) and the over arch from
``ModelConfig().over_arch``; the per-behaviour features, candidate features and labels from
``default_spec()``. Each ablation switch (red, ``--set model.<switch>``) is checked against the config
dataclasses before it is drawn. The PNG is 1600 x 900 px at 150 dpi.

Rerun after changing any of them::

    .venv/bin/python docs/tower_diagram.py            # writes docs/tower.png
    .venv/bin/python docs/tower_diagram.py --out x.png
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

from pyramid_mixer.features.spec import default_spec  # noqa: E402
from pyramid_mixer.features.tokens import PyramidLayout  # noqa: E402
from pyramid_mixer.jobs.config import ModelConfig  # noqa: E402
from pyramid_mixer.ranking.towers.mixer_layer import FUSIONS  # noqa: E402
from pyramid_mixer.ranking.towers.pyramid_mixer import PyramidMixerConfig  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "tower.png"
WIDTH, HEIGHT, DPI = 16.0, 9.0, 150  # drawing units of 100 px: 1600 x 900 px
FONT, MONO_COLOR = 8, "#a01818"  # points; ablation switches in red monospace
PERIODS = ("short", "middle", "long")
COLORS = {"hist": "#e8eef8", "ebc": "#eef6e8", "mix": "#fdf3e3", "sub": "#ffffff", "read": "#f1e9f7",
          "out": "#e9f4f4", "cand": "#fde9e4"}
ROW_H, ROW_GAP, ROW_TOP = 2.1, 0.4, 8.05  # level rows, short level on top
X_HIST, X_EBC, X_MIX, X_READ, X_OUT = (0.2, 1.8), (2.3, 2.2), (4.75, 4.85), (10.05, 2.0), (12.5, 3.3)


def switch(name: str, value: object, owner: type = PyramidMixerConfig, prefix: str = "tower.") -> str:
    """``tower.name=value`` for a field of ``owner``; a renamed field fails here instead of in the README."""
    if name not in {f.name for f in dataclasses.fields(owner)}:
        raise KeyError(f"{owner.__name__} has no field {name!r}: update the diagram")
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return f"{prefix}{name}={text}"


def level_label(k: int, layout: PyramidLayout) -> str:
    """``short\n[0, 32)\n1 behaviour\nper token\n= 32 tokens``: the level's range, group and token count."""
    lv, name = layout.levels[k], PERIODS[k] if len(layout.levels) == len(PERIODS) else f"level {k}"
    per = "behaviours" if lv.group > 1 else "behaviour"
    return f"{name}\n[{lv.start}, {lv.end})\n{lv.group} {per}\nper token\n= {lv.tokens} tokens"


def box(ax: plt.Axes, x: float, y: float, w: float, h: float, text: str, color: str,
        switches: Sequence[str] = (), bold: bool = False) -> None:
    """A rounded box with centred text, and below it the ablation switches in red monospace."""
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.08", fc=color, ec="#555555",
                                lw=0.9))
    low = y + 0.1 + 0.19 * len(switches) if switches else y  # the text is centred above the switches
    ax.text(x + w / 2, (low + y + h) / 2, text, ha="center", va="center", fontsize=FONT,
            fontweight="bold" if bold else "normal", linespacing=1.25)
    for i, s in enumerate(switches):
        ax.text(x + w / 2, y + 0.1 + 0.19 * (len(switches) - 1 - i), s, ha="center", va="bottom", fontsize=FONT,
                family="monospace", color=MONO_COLOR)


def arrow(ax: plt.Axes, start: Tuple[float, float], end: Tuple[float, float], color: str = "#333333",
          head: bool = True) -> None:
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="-|>" if head else "-", color=color, lw=1.1,
                                                          shrinkA=0, shrinkB=0, mutation_scale=9))


def header(ax: plt.Axes, col: Tuple[float, float], text: str, switches: Sequence[str] = ()) -> None:
    ax.text(col[0] + col[1] / 2, ROW_TOP + 0.08, text, ha="center", va="bottom", fontsize=9, fontweight="bold")
    for i, s in enumerate(switches):
        ax.text(col[0] + col[1] / 2, ROW_TOP + 0.29 + 0.21 * i, s, ha="center", va="bottom", fontsize=FONT,
                family="monospace", color=MONO_COLOR)


def draw_level(ax: plt.Axes, k: int, y: float, layout: PyramidLayout, cfg: PyramidMixerConfig) -> None:
    """One row: the level's behaviours, its mixer layers (CB, CF, gate) and its target-aware readout."""
    lv, mid = layout.levels[k], y + ROW_H / 2
    box(ax, X_HIST[0], y, X_HIST[1], ROW_H, level_label(k, layout), COLORS["hist"])
    arrow(ax, (X_HIST[0] + X_HIST[1], mid), (X_EBC[0], mid))
    arrow(ax, (X_EBC[0] + X_EBC[1], mid + 0.2), (X_MIX[0], mid + 0.2))
    x, w = X_MIX
    carried = cfg.carry_tokens if cfg.cross_behavior and k > 0 else 0
    n = cfg.layers_per_level
    tokens = f"{carried} carried + {lv.tokens}" if carried else f"{lv.tokens}"
    box(ax, x, y, w, ROW_H, "", COLORS["mix"])
    ax.text(x + w / 2, y + ROW_H - 0.08, f"{n} mixer layer{'s' if n > 1 else ''} over {tokens} tokens",
            ha="center", va="top", fontsize=FONT, fontweight="bold")
    rank = f"low-rank r = {cfg.low_rank}" if cfg.low_rank else "full rank"
    box(ax, x + 0.1, y + 0.78, 2.7, 1.0, f"cross-behaviour token mixer\n{rank}", COLORS["sub"],
        [switch("cross_behavior", False), switch("low_rank", 0)])
    box(ax, x + 0.1, y + 0.1, 2.7, 0.58, "cross-feature mixer (F·D MLP)", COLORS["sub"],
        [switch("cross_feature", False)])
    other = next(f for f in FUSIONS if f != cfg.fusion)
    box(ax, x + 2.98, y + 0.1, w - 3.08, 1.68, f"adaptive\nfusion {cfg.fusion}\na₀ = {cfg.gate_init}\n(CB share)",
        COLORS["sub"], [switch("fusion", other)])
    arrow(ax, (x + 2.8, y + 1.28), (x + 2.98, y + 1.28))
    arrow(ax, (x + 2.8, y + 0.4), (x + 2.98, y + 0.4))
    box(ax, X_READ[0], y, X_READ[1], ROW_H, f"DIN attention unit:\ncandidate scores\nthe {lv.tokens} tokens,\n"
        "unnormalised sum\n+ masked mean\n= period token", COLORS["read"])
    arrow(ax, (x + w, mid + 0.2), (X_READ[0], mid + 0.2))
    arrow(ax, (X_READ[0] + X_READ[1], mid), (X_OUT[0] - 0.2, mid), head=False)
    arrow(ax, (X_MIX[0] + X_MIX[1] + 0.2, mid - 0.45), (X_READ[0], mid - 0.45), color="#c0502c")
    if k > 0 and cfg.carry_tokens and cfg.cross_behavior:  # carry from the level above into this one
        cx, cy = x + w - 0.6, y + ROW_H + ROW_GAP / 2
        arrow(ax, (cx, y + ROW_H + ROW_GAP), (cx, y + ROW_H))
        ax.text(cx - 0.1, cy, f"carry {cfg.carry_tokens} tokens", ha="right", va="center", fontsize=FONT)
        ax.text(cx + 0.1, cy, switch("carry_tokens", 0), ha="left", va="center", fontsize=FONT, family="monospace",
                color=MONO_COLOR)


def build_figure(layout: Optional[PyramidLayout] = None) -> Figure:
    """The whole diagram from the code's defaults (``layout`` overrides the default levels).

    The tower config is ``ModelConfig().tower_config(spec)``, as the jobs build it: ``PyramidMixerConfig``'s
    defaults with the token count, features, width and candidate features taken from the layout and the spec.
    """
    spec, model = default_spec(), ModelConfig()
    layout = layout or model.layout
    cfg = dataclasses.replace(model, layout=layout).tower_config(spec)
    if not (cfg.cross_behavior and cfg.cross_feature and cfg.cross_period and cfg.target_aware):
        raise ValueError("the default tower switches a component off: the diagram draws every one; update it")
    K = len(layout.levels)
    fig = plt.figure(figsize=(WIDTH * 100 / DPI, HEIGHT * 100 / DPI), dpi=DPI, facecolor="white")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(0, HEIGHT)
    ax.axis("off")
    ax.text(0.15, 8.88, "Pyramid Mixer tower (library defaults)", fontsize=11, fontweight="bold", va="top")
    ax.text(WIDTH - 0.15, 8.88, "red: ablation switch, --set model.<switch>", fontsize=FONT, va="top", ha="right",
            family="monospace", color=MONO_COLOR)
    span = ROW_H * K + ROW_GAP * (K - 1)  # the level rows, top to bottom
    rows = [ROW_TOP - ROW_H - k * (ROW_H + ROW_GAP) for k in range(K)]
    header(ax, X_HIST, "history, newest first", [switch("levels", 1, ModelConfig, "")])
    header(ax, X_EBC, "embedding bags")
    header(ax, X_MIX, f"pyramid: {K} levels, short → long")
    header(ax, X_READ, "target-aware readout", [switch("target_aware", False)])
    header(ax, X_OUT, "cross-period, output")
    seq = "\n".join([f.name for f in spec.sequence.fields] + [f"time gap ({spec.sequence.time_gap_table})"])
    box(ax, X_EBC[0], ROW_TOP - span, X_EBC[1], span, "EmbeddingBagCollection\n(fbgemm): one mean-\npooled bag "
        f"per token\nand feature\n\nF = {spec.num_token_features} per-behaviour\nfeatures:\n{seq}\n\nD = "
        f"{spec.sequence_dim}", COLORS["ebc"])
    for k in range(K):
        draw_level(ax, k, rows[k], layout, cfg)
    bottom = ROW_TOP - span
    box(ax, X_EBC[0], 0.15, X_MIX[0] + X_MIX[1] + 0.2 - X_EBC[0], bottom - 0.3,
        f"candidate (the spec's target features): {' · '.join(spec.target)}\nFt = {cfg.num_target_features} × D "
        "from the same tables, layer-normed; it queries each level's tokens", COLORS["cand"])
    cand_x = X_MIX[0] + X_MIX[1] + 0.2
    arrow(ax, (cand_x, bottom - 0.15), (cand_x, rows[0] + ROW_H / 2 - 0.45), color="#c0502c", head=False)
    bus = X_OUT[0] - 0.2
    arrow(ax, (bus, rows[-1] + ROW_H / 2), (bus, rows[0] + ROW_H / 2), head=False)
    xo, wo = X_OUT
    h_out = (ROW_TOP - 0.15 - 3 * 0.4) / 4  # four boxes down the right column
    y_out = [ROW_TOP - h_out - i * (h_out + 0.4) for i in range(4)]
    hidden = ", ".join(str(h) for h in model.over_arch.hidden)
    contents = [
        (f"multi-scale cross-period module:\nmixes the K = {K} period tokens\nalong K, then along F·D = "
         f"{cfg.num_features * cfg.dim}", [switch("cross_period", False)]),
        (f"concat: {K} attention-pooled,\n{K} mixed period tokens,\n{2 * K} match terms (query × pooled)\n"
         f"→ Linear → out_dim = {cfg.out_dim}", []),
        (f"over arch MLP ({hidden}) on\nthe tower's output\n+ {len(spec.sparse)} pooled sparse features\n"
         f"+ {len(spec.dense)} dense features", []),
        ("one logit per label (BCE):\n" + " · ".join(spec.label_names), []),
    ]
    for i, (text, switches) in enumerate(contents):
        box(ax, xo, y_out[i], wo, h_out, text, COLORS["out"], switches, bold=i == 3)
        if i:
            arrow(ax, (xo + wo / 2, y_out[i - 1]), (xo + wo / 2, y_out[i] + h_out))
    arrow(ax, (bus, rows[0] + ROW_H / 2), (xo, rows[0] + ROW_H / 2))
    arrow(ax, (bus, y_out[1] + h_out / 2), (xo, y_out[1] + h_out / 2))
    return fig


def main(argv: Optional[Sequence[str]] = None) -> Path:
    """Writes the diagram to ``--out`` (default ``docs/tower.png``) and returns that path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"PNG to write (default {DEFAULT_OUT})")
    out = parser.parse_args(argv).out
    fig = build_figure()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, facecolor="white")
    plt.close(fig)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
