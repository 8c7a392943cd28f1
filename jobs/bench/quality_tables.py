"""The ``bench-quality`` report: mean ± std over seeds per dataset, variant and label; JSON, Markdown, PNG.

Findings are computed, not typed: per dataset, the reference tower's margin over the best other tower and
each ablation's change, each against the seed spread (the larger of the two standard deviations).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Dict, List, Tuple

from pyramid_mixer.jobs.bench.common import machine_facts, write_report
from pyramid_mixer.jobs.report import gate_table

METRICS = ("auc", "uauc", "gauc")


def _mean_std(xs: List[float]) -> Dict[str, Any]:
    """Mean, std and count of ``xs``, and the values themselves (in seed order, for paired comparisons)."""
    return {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0, "n": len(xs),
            "values": list(xs)}


def aggregate(final: List[Dict[str, Any]]) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """``{dataset: {variant: {labels: {label: {metric: {mean, std, n}}}, parameters, train_seconds, ...}}}``."""
    groups: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
    for r in final:
        groups.setdefault((r["dataset"], r["variant"]), []).append(r)
    out: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for (ds, variant), runs in groups.items():
        runs.sort(key=lambda r: r["seed"])
        labels = runs[0]["splits"]["test"]["labels"]
        out.setdefault(ds, {})[variant] = {
            "labels": {lab: {m: _mean_std([r["splits"]["test"]["labels"][lab][m] for r in runs]) for m in METRICS}
                       for lab in labels},
            "valid_click_auc": _mean_std([_first(r["splits"]["valid"])["auc"] for r in runs]),
            "parameters": runs[0]["parameters"],
            "train_seconds": statistics.fmean(r["train_seconds"] for r in runs),
            "seeds": [r["seed"] for r in runs],
            "candidate": runs[0]["candidate"],
            "overrides": runs[0]["overrides"],
            "fusion_gate": _mean_gate([r["splits"]["test"].get("fusion_gate", {}) for r in runs]),
        }
    return out


def _mean_gate(per_seed: List[Dict[str, Dict[str, float]]]) -> Dict[str, Dict[str, float]]:
    """The adaptive fusion's cross-behaviour share per layer and feature, averaged over seeds ({} without a gate)."""
    if not per_seed or not per_seed[0]:
        return {}
    return {layer: {f: statistics.fmean(g[layer][f] for g in per_seed) for f in features}
            for layer, features in per_seed[0].items()}


def _first(split: Dict[str, Any]) -> Dict[str, Any]:
    labels = split["labels"]
    return labels[next(iter(labels))]


def dataset_facts(final: List[Dict[str, Any]], ds: str) -> Dict[str, Any]:
    r = next(r for r in final if r["dataset"] == ds)
    test = r["splits"]["test"]
    return {
        "test_rows": test["rows"]["rows_used"],
        "valid_rows": r["splits"]["valid"]["rows"]["rows_used"],
        # one pass over the train split (records from before "epochs" was kept: every epoch's rows)
        "train_rows": r["rows_trained"] // r.get("epochs", 1),
        "train_rows_are_passes": "epochs" not in r,
        "oracle_auc": {lab: m["oracle_auc"] for lab, m in test["labels"].items() if m["oracle_auc"] is not None},
        "popularity_auc": test["popularity_auc"],
    }


def findings(table: Dict[str, Dict[str, Any]], roles: Dict[str, str], reference: str) -> List[Dict[str, Any]]:
    """The reference against each other variant, on the first label's test AUC and UAUC: the difference of the
    means against the seed spread, and the paired view, seed by seed (a variant and the reference trained with
    the same seed share the data order and, for the Pyramid Mixer's ablations, the kept parts' initial
    weights): the std of the per-seed differences and the seeds on which the reference wins."""
    ref = table[reference]
    label = next(iter(ref["labels"]))
    out = []
    for name, row in table.items():
        if name == reference:
            continue
        f: Dict[str, Any] = {"variant": name, "role": roles[name], "label": label}
        paired = row["seeds"] == ref["seeds"]
        for m in ("auc", "uauc"):
            a, b = ref["labels"][label][m], row["labels"][label][m]
            f[f"{m}_delta"] = b["mean"] - a["mean"]  # variant minus reference: < 0 means the reference wins
            f[f"{m}_spread"] = max(a["std"], b["std"])
            if paired:
                deltas = [y - x for x, y in zip(a["values"], b["values"])]
                f[f"{m}_paired_std"] = statistics.stdev(deltas) if len(deltas) > 1 else 0.0
                f[f"{m}_reference_wins"] = sum(d < 0 for d in deltas)
        f["seeds"] = len(ref["seeds"]) if paired else 0
        out.append(f)
    return out


def _pm(x: Dict[str, float]) -> str:
    return f"{x['mean']:.4f} ± {x['std']:.4f}"


def markdown(data: Dict[str, Any]) -> str:
    m = data["machine"]
    lines = [
        "# Ranking quality: towers and ablations",
        "",
        f"Made by `{data['command']}` in {data['seconds'] / 60:.1f} min on {m['cpus']} CPUs ({m['processor']}), "
        f"{data['workers']} trial(s) at a time with {data['threads']} thread(s) each; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) + ".",
        f"Seeds {data['seeds']} unless a dataset names its own. Search budget, the same for every variant "
        "(a dataset may name its own): "
        f"{len(data['search'])} candidate(s) {[list(c) for c in data['search']]}, each trained with the dataset's "
        f"first seed and chosen on the valid split's {data.get('select', 'click AUC')}; the winner trains with "
        "every seed. "
        "Test metrics: mean ± std over seeds.",
    ]
    for ds, table in data["tables"].items():
        facts = data["datasets"][ds]
        oracle = facts["oracle_auc"]
        lines += ["", f"## {ds}", "",
                  f"Seeds {facts['seeds']}. "
                  + ("Rows trained (every epoch of the first trial)" if facts.get("train_rows_are_passes")
                     else "Train") + f" {facts['train_rows']:,} rows, valid {facts['valid_rows']:,}, "
                  f"test {facts['test_rows']:,}. "
                  + ("Oracle AUC (true probabilities): "
                     + ", ".join(f"{k} {v:.4f}" for k, v in oracle.items()) + ". " if oracle else "")
                  + (f"Popularity-only click AUC {facts['popularity_auc']:.4f}." if facts["popularity_auc"] else "")
                  + (f" Search on this dataset, the same for every variant: {len(facts['search'])} candidate(s) "
                     f"{facts['search']}." if facts.get("search", data["search"]) != data["search"] else "")]
        labels = list(next(iter(table.values()))["labels"])
        for lab in labels:
            lines += ["", f"### {lab} (test)", "",
                      "| variant | role | AUC | UAUC | GAUC | parameters | train s | candidate |",
                      "|---|---|---:|---:|---:|---:|---:|---:|"]
            order = sorted(table, key=lambda v: -table[v]["labels"][lab]["auc"]["mean"])
            for v in order:
                row = table[v]
                x = row["labels"][lab]
                lines.append(f"| {v} | {data['roles'][v]} | {_pm(x['auc'])} | {_pm(x['uauc'])} | {_pm(x['gauc'])} | "
                             f"{row['parameters']:,} | {row['train_seconds']:.0f} | {row['candidate']} |")
        gate = table.get(data["reference"], {}).get("fusion_gate")
        if gate:
            lines += ["", f"### What {data['reference']}'s adaptive fusion learned (test rows, mean over seeds)", "",
                      "The cross-behaviour share a per mixer layer and token feature; the cross-feature branch gets "
                      "1 - a (the gate starts every layer at the config's `gate_init`).", ""]
            lines += gate_table(gate)
        lines += ["", f"### {data['reference']} against the others ({labels[0]}, test; Δ = other − "
                      f"{data['reference']}, spread = the larger std; paired: seed by seed, the std of the "
                      f"per-seed Δ and the seeds on which {data['reference']} wins)", "",
                  "| variant | role | Δ AUC | Δ UAUC | spread AUC | spread UAUC | paired std Δ AUC | wins AUC | "
                  "wins UAUC | reference better by more than the spread |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for f in data["findings"][ds]:
            beyond = [m.upper() for m in ("auc", "uauc") if -f[f"{m}_delta"] > f[f"{m}_spread"]]
            paired = [f"{f['auc_paired_std']:.4f}", f"{f['auc_reference_wins']}/{f['seeds']}",
                      f"{f['uauc_reference_wins']}/{f['seeds']}"] if f.get("seeds") else ["-", "-", "-"]
            lines.append(f"| {f['variant']} | {f['role']} | {f['auc_delta']:+.4f} | {f['uauc_delta']:+.4f} | "
                         f"{f['auc_spread']:.4f} | {f['uauc_spread']:.4f} | {' | '.join(paired)} | "
                         f"{', '.join(beyond) or 'no'} |")
    return "\n".join(lines) + "\n"


def plot(data: Dict[str, Any], path: Path) -> None:
    """Per dataset: the first label's test AUC and UAUC per variant (± std), the oracle AUC as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(data["tables"])
    fig, axes = plt.subplots(len(names), 1, figsize=(12, 4.2 * len(names)), squeeze=False)
    for ax, ds in zip(axes[:, 0], names):
        table = data["tables"][ds]
        lab = next(iter(next(iter(table.values()))["labels"]))
        variants = list(table)
        xs = range(len(variants))
        for k, (metric, shift) in enumerate((("auc", -0.2), ("uauc", 0.2))):
            stats = [table[v]["labels"][lab][metric] for v in variants]
            ax.bar([x + shift for x in xs], [s["mean"] for s in stats], width=0.4, yerr=[s["std"] for s in stats],
                   label=f"{lab} {metric.upper()}", capsize=2, color=("tab:blue", "tab:orange")[k])
        values = [table[v]["labels"][lab][m]["mean"] for v in variants for m in ("auc", "uauc")]
        top = max(values)
        oracle = data["datasets"][ds]["oracle_auc"].get(lab)
        if oracle is not None:
            ax.axhline(oracle, color="k", ls="--", lw=1, label=f"oracle AUC {oracle:.3f}")
            top = max(top, oracle)
        pop = data["datasets"][ds]["popularity_auc"]
        if pop:
            ax.axhline(pop, color="gray", ls=":", lw=1, label=f"popularity AUC {pop:.3f}")
        ax.set_ylim(min(values + ([pop] if pop else [])) - 0.02, top + 0.02)
        ax.set_xticks(list(xs))
        ax.set_xticklabels(variants, rotation=30, ha="right")
        ax.set(title=f"{ds}: test {lab} AUC / UAUC, mean ± std over seeds {data['datasets'][ds]['seeds']}")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_results(bench: Any, final: List[Dict[str, Any]], search: List[Dict[str, Any]],
                  chosen: Dict[Tuple[str, str], int], seconds: float) -> Dict[str, Any]:
    """Writes ``out_dir/quality.{json,md,png}``; returns the JSON data plus a short ``markdown_summary``."""
    tables = aggregate(final)
    roles = {v.name: v.role for v in bench.variants}
    order = [v.name for v in bench.variants]
    tables = {ds.name: {v: tables[ds.name][v] for v in order} for ds in bench.datasets}
    data: Dict[str, Any] = {
        "command": "python -m pyramid_mixer.jobs.bench.quality" + (
            f" --config {bench.source}" if not bench.source.endswith("configs/bench_quality.yaml") else ""),
        "seconds": seconds, "machine": machine_facts(), "workers": bench.workers, "threads": bench.threads,
        "seeds": list(bench.seeds), "search": [list(c) for c in bench.search], "reference": bench.reference,
        "select": bench.select,
        "roles": roles,
        "datasets": {ds.name: dict(dataset_facts(final, ds.name), seeds=list(bench.seeds_for(ds)),
                                   search=[list(c) for c in bench.search_for(ds)])
                     for ds in bench.datasets},
        "tables": tables,
        "findings": {ds: findings(t, roles, bench.reference) for ds, t in tables.items()},
        "search_trials": [{"dataset": r["dataset"], "variant": r["variant"], "candidate": r["candidate"],
                           "valid_click_auc": _first(r["splits"]["valid"])["auc"],
                           "valid_click_uauc": _first(r["splits"]["valid"])["uauc"],
                           "selected_epoch": r.get("selected")} for r in search],
    }
    return write_report(bench.out_dir, "quality", data, markdown, plot)
