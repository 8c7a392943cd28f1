"""The ``bench-speed`` report: per case examples/s, tower GFLOP/s against the matmul peak, memory; the
targets as ratios from the one run; JSON, Markdown and a log-log PNG of examples/s against history length.

Targets (all ratios of numbers measured in the same run):
- ``pyramid / mean, same reads``: the Pyramid Mixer model over the largest pyramid layout trains at >= 0.8x
  the mean-pooling model over the same layout (same embedding reads, near-zero tower);
- ``pyramid tower / fp32 peak``: the pyramid's tower (largest layout) reaches >= 40 % of the matmul peak;
- ``pyramid / sasrec@512`` >= 6 and ``pyramid / sasrec@2048`` >= 40: training examples/s of the pyramid
  model (largest layout) over the SASRec-style model at full resolution;
- ``tower time, largest / smallest layout`` <= 1.2 (same token count: flat in history);
- ``loader / pyramid training`` >= 3: the loader is never the bottleneck.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

from pyramid_mixer.jobs.bench.common import machine_facts, write_report


def _find(results: List[Dict[str, Any]], name: str, behaviours: int) -> Optional[Dict[str, Any]]:
    return next((r for r in results if r["name"] == name and r["behaviours"] == behaviours), None)


def _target(name: str, value: Optional[float], goal: float, at_least: bool, why: str) -> Dict[str, Any]:
    met = None if value is None else (value >= goal if at_least else value <= goal)
    return {"target": name, "value": value, "goal": f"{'>=' if at_least else '<='} {goal:g}", "met": met,
            "what": why}


def targets(results: List[Dict[str, Any]], peaks: Dict[str, float], loader: Dict[str, Any],
            largest: int, smallest: int) -> List[Dict[str, Any]]:
    """The issue's targets, each a ratio of two measurements of this run (None where a case is missing)."""
    pyr, pyr_small = _find(results, "pyramid_mixer", largest), _find(results, "pyramid_mixer", smallest)
    mean_same = _find(results, "mean (pyramid layout)", largest)

    def train(r: Optional[Dict[str, Any]]) -> Optional[float]:
        return None if r is None else r["train"]["examples_per_s"]

    def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
        return None if a is None or b is None else a / b

    alone = pyr and pyr["tower_alone"].get("matmuls_alone")
    ceiling = f"; its matmuls alone reach {alone['gflops'] / peaks['fp32']:.2f} of the peak" if alone else ""
    out = [
        _target("pyramid / mean pooling, same embedding reads", ratio(train(pyr), train(mean_same)), 0.8, True,
                f"training examples/s over {largest} behaviours"),
        _target("pyramid tower / fp32 matmul peak",
                ratio(pyr and pyr["tower_alone"]["fp32"]["gflops"], peaks["fp32"]), 0.4, True,
                f"tower forward + backward GFLOP/s (FLOPs counted from shapes){ceiling}"),
    ]
    for n, goal in ((512, 6.0), (2048, 40.0)):
        out.append(_target(f"pyramid / sasrec@{n}", ratio(train(pyr), train(_find(results, "sasrec", n))), goal,
                           True, f"training examples/s, pyramid over {largest} behaviours"))
    out.append(_target(f"pyramid tower time, {largest} / {smallest} behaviours",
                       ratio(pyr and pyr["tower_alone"]["fp32"]["seconds"],
                             pyr_small and pyr_small["tower_alone"]["fp32"]["seconds"]), 1.2, False,
                       "same token count; the tower alone, fp32"))
    out.append(_target("loader / pyramid training", ratio(loader["rows_per_s"], train(pyr)), 3.0, True,
                       f"loader rows/s against training examples/s, {largest} behaviours"))
    return out


def _fmt(x: Optional[float], digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:,.{digits}f}"


def markdown(data: Dict[str, Any]) -> str:
    m = data["machine"]
    peaks = data["matmul_peak_gflops"]
    fbgemm = next((f"{pkg} {m['versions'][pkg]}" for pkg in ("fbgemm-gpu-cpu", "fbgemm-gpu")
                   if m["versions"].get(pkg)), "fbgemm n/a")
    where = f"one {m['gpu']} GPU and " if m.get("gpu") else ""
    lines = [
        "# Speed: towers against history length",
        "",
        f"Made by `{data['command']}` in {data['seconds'] / 60:.1f} min on {where}{m['cpus']} CPUs "
        f"({m['processor']}), {data['threads']} thread(s) per measurement; torch {m['versions']['torch']}, torchrec "
        f"{m['versions']['torchrec']}, {fbgemm}, pyarrow "
        f"{m['versions']['pyarrow']}. Batch {data['batch_size']}; medians of up to {data['repeats']} steps after "
        f"{data['warmup']} warm-up steps; full models' towers in {data.get('tower_precision', 'fp32')}. "
        f"Matmul peak ({data['matmul_size']}^3, same run): fp32 "
        f"{peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s.",
        "",
        "## Targets (ratios from this run)",
        "",
        "| target | measured | goal | met | of what |",
        "|---|---:|---:|---|---|",
    ]
    for t in data["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {_fmt(t['value'])} | {t['goal']} | {met} | {t['what']} |")
    lines += [
        "",
        "## Cases",
        "",
        "Train / eval: the full model (embedding bags with the fused optimizer, tower, over arch). Tower: the "
        "tower alone, forward + backward, fp32 and bf16 autocast, and its share of the fp32 peak. Its matmuls "
        "alone: the same step's matmuls (shapes and layouts recorded) replayed back to back, the ceiling that "
        "fusing away all of the tower's other work (norms, activations, masks, copies) could reach.",
        "",
        "| case | behaviours | tokens | batch | train ex/s | eval ex/s | tower ms fp32 | tower ms bf16 "
        "| tower GFLOP/s fp32 | % of fp32 peak | its matmuls alone, % of fp32 peak | tower GFLOP/s bf16 "
        "| peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in data["cases"]:
        t = r["tower_alone"]
        alone = t.get("matmuls_alone")  # absent in results from before it was measured
        alone_pct = f"{100 * alone['gflops'] / peaks['fp32']:.0f} %" if alone else "n/a"
        lines.append(
            f"| {r['name']} | {r['behaviours']:,} | {r['tokens']} | {r['batch']} | "
            f"{r['train']['examples_per_s']:,.0f} | {r['eval']['examples_per_s']:,.0f} | "
            f"{t['fp32']['seconds'] * 1e3:,.1f} | {t['bf16']['seconds'] * 1e3:,.1f} | {t['fp32']['gflops']:,.1f} | "
            f"{100 * t['fp32']['gflops'] / peaks['fp32']:.0f} % | "
            f"{alone_pct} | {t['bf16']['gflops']:,.1f} | "
            f"{r['peak_rss_bytes'] / 2**20:,.0f} |"
        )
    lines += rewrite_lines(data["cases"]) + profile_lines(data["cases"], data["matmul_peak_gflops"])
    ld = data["loader"]
    lines += [
        "",
        f"Loader (Parquet -> batch, in-process, {ld['workers']} worker processes): {ld['rows_per_s']:,.0f} rows/s "
        f"over {ld['rows']:,} rows of {ld['behaviours']:,} behaviours (batch {ld['batch_size']}).",
    ]
    return "\n".join(lines) + "\n"


def rewrite_lines(cases: List[Dict[str, Any]]) -> List[str]:
    """The Pyramid Mixer against its former tower code (``jobs.bench.tower_reference``), timed in turn in one
    process: the full model's training step and the tower alone."""
    rows = [r for r in cases if r.get("train_former_tower") and r["tower_alone"].get("former_fp32")]
    if not rows:
        return []
    lines = ["", "## The tower's rewrite, against its former code (timed in turn, same process)", "",
             "| behaviours | train ex/s now | train ex/s former | gain | tower ms now | tower ms former | gain |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        now, former = r["train"]["seconds"], r["train_former_tower"]["seconds"]
        t_now, t_former = r["tower_alone"]["fp32"]["seconds"], r["tower_alone"]["former_fp32"]["seconds"]
        lines.append(f"| {r['behaviours']:,} | {r['train']['examples_per_s']:,.0f} | "
                     f"{r['train_former_tower']['examples_per_s']:,.0f} | {former / now:.2f}x | {t_now * 1e3:,.1f} | "
                     f"{t_former * 1e3:,.1f} | {t_former / t_now:.2f}x |")
    return lines


def profile_lines(cases: List[Dict[str, Any]], peaks: Dict[str, float]) -> List[str]:
    """Where the Pyramid Mixer's tower step goes (largest layout), by kind of work (``speed_profile``)."""
    rows = [r for r in cases if r["tower_alone"].get("profile")]
    if not rows:
        return []
    r = max(rows, key=lambda c: c["behaviours"])
    prof = r["tower_alone"]["profile"]
    total = prof["total_ms"]
    lines = ["", f"## Where the Pyramid Mixer's tower step goes ({r['behaviours']:,} behaviours, fp32, "
             f"torch.profiler, {prof['clock']} self time)", "",
             "| kind of work | ms per step | share |", "|---|---:|---:|"]
    for kind, ms in sorted(prof["ms_per_step"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {kind} | {ms:,.1f} | {100 * ms / total:.0f} % |")
    lines.append(f"| all | {total:,.1f} | 100 % |")
    alone = r["tower_alone"].get("matmuls_alone")
    if alone:
        lines += ["", f"The same step's matmuls replayed alone take {alone['seconds'] * 1e3:,.1f} ms "
                  f"({100 * alone['gflops'] / peaks['fp32']:.0f} % of the fp32 peak)."]
    return lines


def plot(data: Dict[str, Any], path: Path) -> None:
    """Training examples/s against behaviours read, log-log, one line per case name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    names = list(dict.fromkeys(r["name"] for r in data["cases"]))
    for name in names:
        rows = sorted((r for r in data["cases"] if r["name"] == name), key=lambda r: r["behaviours"])
        style = "-o" if name == "pyramid_mixer" else "--." if name.startswith("mean (") else "-."
        ax.plot([r["behaviours"] for r in rows], [r["train"]["examples_per_s"] for r in rows], style, label=name,
                lw=2.5 if name == "pyramid_mixer" else 1.2)
    ax.set(xscale="log", yscale="log", xlabel="behaviours read per example", ylabel="training examples/s",
           title=f"training throughput, batch {data['batch_size']}, {data['threads']} thread(s)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_results(cfg: Any, peaks: Dict[str, float], results: List[Dict[str, Any]], loader: Dict[str, Any],
                  seconds: float) -> Dict[str, Any]:
    """Writes ``out_dir/speed.{json,md,png}``; returns the JSON data plus a ``markdown_summary``."""
    default = cfg.source.endswith("configs/bench_speed.yaml")
    data: Dict[str, Any] = {
        "command": "python -m pyramid_mixer.jobs.bench.speed" + ("" if default else f" --config {cfg.source}"),
        "seconds": seconds, "machine": machine_facts(), "threads": cfg.threads, "batch_size": cfg.batch_size,
        "warmup": cfg.warmup, "repeats": cfg.repeats, "matmul_size": cfg.matmul_size,
        "matmul_peak_gflops": peaks, "cases": results, "loader": loader, "tower_precision": cfg.tower_precision,
        "targets": targets(results, peaks, loader, cfg.largest.coverage, cfg.smallest.coverage),
    }
    return write_report(cfg.out_dir, "speed", data, markdown, plot)
