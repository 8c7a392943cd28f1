"""The eval report: JSON for machines, Markdown for people, PNGs where a picture reads faster.

Contents: AUC / UAUC (with the number of users having both classes) / GAUC / logloss / calibration per
label, the oracle AUC where the data has true probabilities, the popularity-only AUC, AUC by history
length, a calibration curve, and the row accounting of the data that was read.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from pyramid_mixer.ranking.ctr.metrics import LabelMetrics, auc

HISTORY_BUCKETS = (0, 1, 8, 32, 128, 512, 2048)


@dataclass
class EvalReport:
    split: str
    labels: List[LabelMetrics]
    rows: Dict[str, Any]
    popularity_auc: Optional[float] = None
    auc_by_history: List[Dict[str, Any]] = field(default_factory=list)
    calibration_curve: List[Dict[str, float]] = field(default_factory=list)
    # per fusion gate ("level0.layer0"), per token feature: the mean cross-behaviour share a of the adaptive
    # fusion over the rows scored (1 - a went to the cross-feature branch); empty for a tower without a gate
    fusion_gate: Dict[str, Dict[str, float]] = field(default_factory=dict)
    extra: Dict[str, Any] = field(default_factory=dict)

    def metric(self, label: str) -> LabelMetrics:
        return next(m for m in self.labels if m.label == label)

    def as_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        return json.loads(json.dumps(d, default=float).replace("NaN", "null"))


def auc_by_history(history_length: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> List[Dict[str, Any]]:
    """AUC of one label per bucket of the row's history length (``[lo, hi)``)."""
    edges = list(HISTORY_BUCKETS) + [np.iinfo(np.int64).max]
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (history_length >= lo) & (history_length < hi)
        if sel.sum() == 0:
            continue
        name = f"{lo}" if hi == lo + 1 else (f"{lo}+" if hi == edges[-1] else f"{lo}-{hi - 1}")
        out.append({"history": name, "rows": int(sel.sum()), "auc": auc(labels[sel], scores[sel])})
    return out


def calibration_curve(labels: np.ndarray, scores: np.ndarray, bins: int = 20) -> List[Dict[str, float]]:
    """Mean prediction vs mean label in equal-count bins of the prediction."""
    order = np.argsort(scores, kind="stable")
    out = []
    for chunk in np.array_split(order, bins):
        if chunk.size:
            out.append(
                {"mean_prediction": float(scores[chunk].mean()), "mean_label": float(labels[chunk].mean()),
                 "rows": int(chunk.size)}
            )
    return out


def _fmt(x: Optional[float]) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def gate_table(fusion_gate: Dict[str, Dict[str, float]]) -> List[str]:
    """A Markdown table of ``EvalReport.fusion_gate``: a row per layer, a column per token feature."""
    features = list(next(iter(fusion_gate.values())))
    lines = ["| layer | " + " | ".join(features) + " |", "|---|" + "---:|" * len(features)]
    return lines + [f"| {layer} | " + " | ".join(f"{a:.3f}" for a in shares.values()) + " |"
                    for layer, shares in fusion_gate.items()]


def markdown(report: EvalReport) -> str:
    lines = [f"# Eval report ({report.split})", ""]
    lines += [
        "| label | rows | positives | AUC | oracle AUC | UAUC | UAUC users | GAUC | logloss | calibration |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in report.labels:
        lines.append(
            f"| {m.label} | {m.rows} | {m.positives} | {_fmt(m.auc)} | {_fmt(m.oracle_auc)} | {_fmt(m.uauc)} | "
            f"{m.uauc_users} | {_fmt(m.gauc)} | {_fmt(m.logloss)} | {_fmt(m.calibration)} |"
        )
    if report.popularity_auc is not None:
        lines += ["", f"Popularity-only click AUC (item click rate in the training split): "
                      f"{_fmt(report.popularity_auc)}"]
    if report.auc_by_history:
        lines += ["", "## Click AUC by history length", "", "| history | rows | AUC |", "|---|---:|---:|"]
        lines += [f"| {b['history']} | {b['rows']} | {_fmt(b['auc'])} |" for b in report.auc_by_history]
    if report.fusion_gate:
        lines += ["", "## Adaptive fusion: the cross-behaviour share a per layer and token feature", "",
                  "Mean over the rows scored; the cross-feature branch gets 1 - a.", ""]
        lines += gate_table(report.fusion_gate)
    r = report.rows
    lines += ["", "## Rows", "", f"read {r['rows_read']}, used {r['rows_used']}, rejected {r['rows_rejected']}"]
    for reason, n in r.get("rejected_by_reason", {}).items():
        lines.append(f"- rejected, {reason}: {n}")
    for skipped in r.get("files_skipped", []):
        lines.append(f"- unreadable file skipped: {skipped}")
    for k, v in report.extra.items():
        lines.append(f"- {k}: {v}")
    return "\n".join(lines) + "\n"


def plot(report: EvalReport, path: Path) -> None:
    """Calibration curve and AUC by history length, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    c = report.calibration_curve
    if c:
        xs = [p["mean_prediction"] for p in c]
        a.plot(xs, [p["mean_label"] for p in c], "o-", label="model")
        hi = max(max(xs), max(p["mean_label"] for p in c))
        a.plot([0, hi], [0, hi], "k--", lw=1, label="perfect")
        a.set(xlabel="mean predicted click", ylabel="observed click rate", title="Calibration (click)")
        a.legend()
    h = [x for x in report.auc_by_history if x["auc"] == x["auc"]]
    if h:
        b.bar([x["history"] for x in h], [x["auc"] for x in h])
        b.set(xlabel="history length", ylabel="click AUC", title="Click AUC by history length",
              ylim=(min(0.5, min(x["auc"] for x in h)) - 0.02, 1.0))
        oracle = report.labels[0].oracle_auc
        if oracle is not None and oracle == oracle:
            b.axhline(oracle, color="k", ls="--", lw=1, label="oracle (all rows)")
            b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(report: EvalReport, out_dir: Path, stem: str) -> Dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{stem}.json", "markdown": out_dir / f"{stem}.md", "png": out_dir / f"{stem}.png"}
    paths["json"].write_text(json.dumps(report.as_dict(), indent=2))
    paths["markdown"].write_text(markdown(report))
    plot(report, paths["png"])
    return paths
