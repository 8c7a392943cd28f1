"""The ``bench-nextitem`` report, shaped like the paper's table: dataset x model x HR@10, NDCG@10, MRR@20.

Full ranking (every item, the user's seen items masked) in the first table, the sampled protocols (the
target among 100 unseen items drawn uniformly and by popularity) in the second; mean ± std over seeds, with
train and eval time and parameters. Pop is computed from the training counts (no training, no seed spread).
Findings are computed: per dataset and metric, the Pyramid Mixer's place and its margin to the best other
model, against the seed spread.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Any, Dict, List, Tuple

from pyramid_mixer.jobs.bench.common import machine_facts, write_report
from pyramid_mixer.jobs.bench.quality_tables import _mean_std, _pm

HEADLINE = ("HR@10", "NDCG@10", "MRR@20")  # the paper's three metrics
MORE = ("HR@1", "HR@5", "NDCG@5", "HR@20", "NDCG@20")  # shown where eval.ks gives them
SAMPLED = ("sampled_uniform", "sampled_popularity")
POP = "Pop"


def aggregate(final: List[Dict[str, Any]], reference: str) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """``{dataset: {model: {protocol: {metric: {mean, std, n, values}}, parameters, train_seconds, ...}}}``;
    Pop from the reference's trials (its metrics do not depend on the model)."""
    groups: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
    for r in final:
        groups.setdefault((r["dataset"], r["variant"]), []).append(r)
    out: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for (ds, variant), runs in groups.items():
        runs.sort(key=lambda r: r["seed"])
        test = [r["splits"]["test"] for r in runs]
        protocols = ("full",) + SAMPLED
        out.setdefault(ds, {})[variant] = {
            "metrics": {p: {m: _mean_std([t["metrics"][p][m] for t in test]) for m in test[0]["metrics"][p]}
                        for p in protocols},
            "valid_ndcg10": _mean_std([r["splits"]["valid"]["metrics"]["full"]["NDCG@10"] for r in runs]),
            "parameters": runs[0]["parameters"],
            "train_seconds": statistics.fmean(r["train_seconds"] for r in runs),
            "eval_seconds": statistics.fmean(t["eval_seconds"] for t in test),
            "score_seconds": statistics.fmean(t["score_seconds"] for t in test),
            "seeds": [r["seed"] for r in runs],
            "candidate": runs[0]["candidate"],
            "overrides": runs[0]["overrides"],
        }
        if variant == reference:
            out[ds][POP] = {
                "metrics": {p: {m: _mean_std([t["metrics"][f"pop_{p}"][m] for t in test[:1]])
                                for m in test[0]["metrics"][f"pop_{p}"]} for p in protocols},
                "parameters": 0, "train_seconds": 0.0, "eval_seconds": 0.0, "score_seconds": 0.0, "seeds": [],
            }
    return out


def dataset_facts(final: List[Dict[str, Any]], ds: str) -> Dict[str, Any]:
    r = next(r for r in final if r["dataset"] == ds)
    test = r["splits"]["test"]
    return {"users": test["users"], "items": test["catalogue"], "train_rows": r["rows_trained"],
            "test_rows": test["rows"]["rows_used"], "valid_rows": r["splits"]["valid"]["rows"]["rows_used"]}


def findings(table: Dict[str, Dict[str, Any]], reference: str) -> List[Dict[str, Any]]:
    """Per headline metric (full ranking): the reference's place among the models, and its margin to the best
    other model (negative: behind), against the larger of the two seed spreads."""
    out = []
    for metric in HEADLINE:
        means = {v: t["metrics"]["full"][metric]["mean"] for v, t in table.items()}
        order = sorted(means, key=lambda v: -means[v])
        best_other = next(v for v in order if v != reference)
        ref, other = table[reference]["metrics"]["full"][metric], table[best_other]["metrics"]["full"][metric]
        margin = ref["mean"] - other["mean"]
        spread = max(ref["std"], other["std"])
        out.append({"metric": metric, "place": order.index(reference) + 1, "of": len(order),
                    "best_other": best_other, "margin": margin,
                    "relative": margin / other["mean"] if other["mean"] else float("nan"), "spread": spread})
    return out


def _row(name: str, t: Dict[str, Any], protocol: str, metrics: Tuple[str, ...]) -> str:
    cells = " | ".join(_pm(t["metrics"][protocol][m]) for m in metrics)
    return f"| {name} | {cells} |"


def markdown(data: Dict[str, Any]) -> str:
    lines = [f"# Next-item recommendation: {', '.join(data['datasets'])}", "",
             f"Command: `{data['command']}`", "",
             f"Machine: {data['machine']['processor']}, {data['machine']['cpus']} CPUs, {data['machine']['platform']}; "
             f"torch {data['machine']['versions']['torch']}, torchrec {data['machine']['versions']['torchrec']}. "
             f"Seeds {data['seeds']}; every model gets the same search ({len(data['search'])} candidates chosen on "
             f"the valid split by full-ranking NDCG@10) and the same epochs. Total {data['seconds'] / 60:.1f} min.",
             ""]
    for ds, table in data["table"].items():
        f = data["facts"][ds]
        order = sorted(table, key=lambda v: -table[v]["metrics"]["full"]["NDCG@10"]["mean"])
        more = [m for m in MORE if m in table[order[0]]["metrics"]["full"]]
        lines += [f"## {ds}: {f['users']} users, {f['items']} items, {f['train_rows']:,} training rows per run", "",
                  "Full ranking (every item; the user's seen items masked), test split, mean ± std over seeds:", "",
                  "| model | " + " | ".join(HEADLINE + tuple(more)) + " | train s | full-rank eval s | params |",
                  "|---|" + "---:|" * (len(HEADLINE) + len(more) + 3)]
        for v in order:
            t = table[v]
            extra = " | ".join(_pm(t["metrics"]["full"][m]) for m in more)
            lines.append(_row(v, t, "full", HEADLINE)[:-1] + (f"| {extra} " if extra else "")
                         + f"| {t['train_seconds']:.0f} | {t['score_seconds']:.2f} | {t['parameters']:,} |")
        lines += published_lines(data.get("published", {}).get(ds, []))
        lines += ["", f"Sampled protocols (the target among {data['sampled_negatives']} unseen items drawn uniformly "
                  "/ by training popularity):", "",
                  "| model | " + " | ".join(f"{m} uni" for m in HEADLINE) + " | " +
                  " | ".join(f"{m} pop" for m in HEADLINE) + " |", "|---|" + "---:|" * (2 * len(HEADLINE))]
        for v in order:
            t = table[v]
            lines.append(f"| {v} | " + " | ".join(_pm(t["metrics"]["sampled_uniform"][m]) for m in HEADLINE) +
                         " | " + " | ".join(_pm(t["metrics"]["sampled_popularity"][m]) for m in HEADLINE) + " |")
        lines += ["", "Findings (full ranking; margin to the best other model, spread = the larger seed std):", ""]
        for x in data["findings"][ds]:
            verdict = "first" if x["place"] == 1 else f"place {x['place']} of {x['of']}"
            lines.append(f"- {x['metric']}: {data['reference']} {verdict}; vs {x['best_other']} "
                         f"{x['margin']:+.4f} ({x['relative']:+.1%}), spread {x['spread']:.4f}")
        lines.append("")
    return "\n".join(lines)


def published_lines(rows: List[Dict[str, Any]]) -> List[str]:
    """The published numbers of a dataset, marked as such, with their protocol and source (none: nothing)."""
    if not rows:
        return []
    names = [m for m in ("HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR@20")
             if any(m in r["metrics"] for r in rows)]
    out = ["", "Published on exactly this data (not run here; their code, training and protocol):", "",
           "| published model | protocol | " + " | ".join(names) + " | source |", "|---|---|" + "---:|" * len(names)
           + "---|"]
    for r in rows:
        cells = " | ".join(f"{r['metrics'][m]:.4f}" if m in r["metrics"] else "—" for m in names)
        out.append(f"| {r['model']} | {r['protocol']} | {cells} | {r['source']} |")
    return out


def plot(data: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(data["table"])
    fig, axes = plt.subplots(1, len(datasets) * 3, figsize=(5 * 3 * len(datasets), 4.5), squeeze=False)
    for i, ds in enumerate(datasets):
        table = data["table"][ds]
        for j, metric in enumerate(HEADLINE):
            ax = axes[0][3 * i + j]
            order = sorted(table, key=lambda v: table[v]["metrics"]["full"][metric]["mean"])
            means = [table[v]["metrics"]["full"][metric]["mean"] for v in order]
            stds = [table[v]["metrics"]["full"][metric]["std"] for v in order]
            colors = ["tab:red" if v == data["reference"] else "tab:gray" for v in order]
            ax.barh(order, means, xerr=stds, color=colors)
            ax.set_title(f"{ds}: {metric} (full ranking)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_results(bench: Any, final: List[Dict[str, Any]], search: List[Dict[str, Any]],
                  chosen: Dict[Tuple[str, str], int], seconds: float, command: str,
                  sampled_negatives: int) -> Dict[str, Any]:
    datasets = sorted({r["dataset"] for r in final}, key=[d.name for d in bench.datasets].index)
    table = aggregate(final, bench.reference)
    data = {
        "command": command,
        "machine": machine_facts(),
        "seconds": seconds,
        "seeds": list(bench.seeds),
        "search": [list(c) for c in bench.search],
        "reference": bench.reference,
        "sampled_negatives": sampled_negatives,
        "datasets": datasets,
        "facts": {ds: dataset_facts(final, ds) for ds in datasets},
        "table": table,
        "findings": {ds: findings(table[ds], bench.reference) for ds in datasets},
        "published": {d.name: [dataclasses.asdict(p) for p in d.published] for d in bench.datasets
                      if d.name in datasets and d.published},
        "chosen": {f"{d}/{v}": c for (d, v), c in chosen.items()},
        "search_trials": [{"dataset": r["dataset"], "variant": r["variant"], "candidate": r["candidate"],
                           "valid_ndcg10": r["splits"]["valid"]["metrics"]["full"]["NDCG@10"]} for r in search],
    }
    return write_report(bench.out_dir, "nextitem", data, markdown, plot)
