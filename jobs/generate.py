"""``generate``: write synthetic Douyin-style impression logs with planted structure to Parquet.

    python -m pyramid_mixer.jobs.generate --config my.yaml --set generate.rows=1000000

Writes ``data.path/part-*.parquet`` from the ``generate`` section of the config (seeded, deterministic), and
``data.path/_pmx_generated.json`` listing them. A rerun with the same settings finds them and writes
nothing; with other settings it replaces its own files; a directory holding other files is refused.
Each user has a long-term taste, a middle-term drift and short bursts that decide click / finish / like; the
true probabilities are written beside the labels so that reports print the oracle AUC.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from tqdm import tqdm

from pyramid_mixer.features.config_io import ConfigError, to_dict
from pyramid_mixer.features.datasets.synthetic import GenerateSummary, generate
from pyramid_mixer.jobs.cli import config_from, job_main, parser, setup_logging
from pyramid_mixer.jobs.config import JobConfig

# What pmx-generate wrote into data.path: its files, their sizes, its settings and its summary. The only
# files it ever removes are the ones listed here.
MARKER = "_pmx_generated.json"


def run(config: JobConfig) -> GenerateSummary:
    """Writes the logs into ``data.path``, or finds them there already (written by an earlier run with the
    same ``generate`` settings, every file intact: then the summary's ``seconds`` is 0). A directory
    holding anything else is refused and left as it is."""
    out = Path(config.data.path)
    if "://" in config.data.path:
        raise ConfigError(f"data.path={config.data.path}: pmx-generate writes to a local directory; generate "
                          "there and copy the files to the URI")
    settings = to_dict(config.generate)
    earlier = _earlier_run(out)
    if earlier is not None and earlier["generate"] == settings and _intact(out, earlier):
        return dataclasses.replace(GenerateSummary(**earlier["summary"]), seconds=0.0)
    if earlier is not None:  # our own files from other settings: replaced
        for name in earlier["files"]:
            (out / name).unlink(missing_ok=True)
        (out / MARKER).unlink()
    with tqdm(total=config.generate.rows, desc="generate", unit="row", unit_scale=True) as bar:
        summary = generate(config.generate, out, progress=lambda n: bar.update(n - bar.n))
    files = {Path(f).name: Path(f).stat().st_size for f in summary.files}
    record = {"generate": settings, "files": files, "summary": dataclasses.asdict(summary)}
    (out / MARKER).write_text(json.dumps(record, indent=2))
    return summary


def _earlier_run(out: Path) -> Optional[Dict[str, Any]]:
    """The marker of an earlier pmx-generate run in ``out`` (None: ``out`` is missing or empty); refuses a
    file, or a directory holding anything that run did not write."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise FileExistsError(f"data.path={out} is a file; give pmx-generate a new or empty directory")
    names = sorted(p.name for p in out.iterdir())
    if not names:
        return None
    record = None
    if MARKER in names:
        try:
            record = json.loads((out / MARKER).read_text())
        except ValueError:
            record = None
    ours = set(record["files"]) | {MARKER} if isinstance(record, dict) and "files" in record else set()
    foreign = [n for n in names if n not in ours]
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise FileExistsError(f"data.path={out} holds {len(foreign)} file(s) pmx-generate did not write "
                              f"({shown}); nothing was touched: generate into a new or empty directory "
                              "(--set data.path=...)")
    return record


def _intact(out: Path, record: Dict[str, Any]) -> bool:
    return all((out / n).is_file() and (out / n).stat().st_size == size for n, size in record["files"].items())


@job_main
def main(argv: Optional[List[str]] = None) -> None:
    p = parser("pmx-generate", __doc__.strip().splitlines()[0],
               reads="the config's generate section (nothing else: the logs are synthetic)",
               writes="data.path/part-NNNNN.parquet (generate.rows impressions, with the true probabilities)",
               epilog=__doc__)
    config = config_from(p.parse_args(argv))
    setup_logging()
    s = run(config)
    if s.seconds == 0.0:
        print(f"{config.data.path} already holds these logs (written with the same generate settings): "
              "nothing to write")
    print(
        f"wrote {s.rows:,} rows for {s.users:,} users to {config.data.path} ({len(s.files)} files) in "
        f"{s.seconds:.1f}s; mean history {s.mean_history:.0f}; click rate {s.click_rate:.3f}, finish "
        f"{s.finish_rate:.3f}, like {s.like_rate:.3f}; oracle click AUC {s.oracle_click_auc:.4f}"
    )


if __name__ == "__main__":
    main()
