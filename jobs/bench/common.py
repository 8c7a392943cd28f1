"""What the benchmark jobs share: the command line, the machine facts in every report, and writing a report
as ``<stem>.json``, ``<stem>.md`` and ``<stem>.png``."""

from __future__ import annotations

import argparse
import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from pyramid_mixer.features.config_io import ConfigError
from pyramid_mixer.jobs.cli import DEBUG_HELP, reads_writes, setup_logging


def machine_facts() -> Dict[str, Any]:
    """Platform, processor, CPU count, the GPU (None without one), Python and the versions of the libraries the
    benchmarks time (fbgemm's CPU or CUDA build, whichever is installed)."""
    import torch

    versions = {}
    for pkg in ("torch", "torchrec", "fbgemm-gpu-cpu", "fbgemm-gpu", "pyarrow"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "versions": versions,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def write_report(out_dir: str, stem: str, data: Dict[str, Any], markdown: Callable[[Dict[str, Any]], str],
                 plot: Callable[[Dict[str, Any], Path], None]) -> Dict[str, Any]:
    """Writes ``out_dir/<stem>.{json,md,png}``; returns ``data`` plus ``markdown_summary`` (the Markdown and
    where it was written)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(data, indent=1))
    text = markdown(data)
    (out / f"{stem}.md").write_text(text)
    plot(data, out / f"{stem}.png")
    data["markdown_summary"] = text + f"\nwritten: {out / f'{stem}.md'}, {stem}.json, {stem}.png"
    return data


def bench_main(argv: Optional[List[str]], prog: str, doc: str, packaged: str, example: str, reads: str,
               writes: str, load: Callable[[Optional[str], List[str]], Any],
               run: Callable[[Any], Dict[str, Any]]) -> None:
    """The command line of a benchmark job: ``--config`` (default: the packaged ``packaged``) and ``--set``;
    ``--help`` says it reads that config and ``reads``, and writes ``writes``."""
    reads = f"the benchmark config (default: the packaged {packaged}); {reads}"
    p = argparse.ArgumentParser(prog=prog, description=reads_writes(doc.strip().splitlines()[0], reads, writes),
                                epilog=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None,
                   help=f"benchmark YAML (default: the packaged pyramid_mixer/jobs/configs/{packaged})")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help=f"override benchmark config values, e.g. --set {example}")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = p.parse_args(argv)
    setup_logging()
    try:
        cfg = load(args.config, args.overrides)
    except (ConfigError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}")
    print(run(cfg)["markdown_summary"])
