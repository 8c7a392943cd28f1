"""``generate``: write synthetic Douyin-style impression logs with planted structure to Parquet.

    python -m pyramid_mixer.jobs.generate --config my.yaml --set generate.rows=1000000

Writes ``data.path/part-*.parquet`` from the ``generate`` section of the config (seeded, deterministic).
Each user has a long-term taste, a middle-term drift and short bursts that decide click / finish / like; the
true probabilities are written beside the labels so that reports print the oracle AUC.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import List, Optional

from tqdm import tqdm

from pyramid_mixer.features.datasets.synthetic import GenerateSummary, generate
from pyramid_mixer.jobs.cli import config_from, parser, run_main, setup_logging
from pyramid_mixer.jobs.config import JobConfig


def run(config: JobConfig, overwrite: bool = True) -> GenerateSummary:
    out = Path(config.data.path)
    if out.exists() and overwrite:
        shutil.rmtree(out)
    with tqdm(total=config.generate.rows, desc="generate", unit="row", unit_scale=True) as bar:
        return generate(config.generate, out, progress=lambda n: bar.update(n - bar.n))


def main(argv: Optional[List[str]] = None) -> None:
    p = parser("pmx-generate", __doc__.strip().splitlines()[0],
               reads="the config's generate section (nothing else: the logs are synthetic)",
               writes="data.path/part-NNNNN.parquet (generate.rows impressions, with the true probabilities)",
               epilog=__doc__)
    config = config_from(p.parse_args(argv))
    setup_logging()
    s = run(config)
    print(
        f"wrote {s.rows:,} rows for {s.users:,} users to {config.data.path} ({len(s.files)} files) in "
        f"{s.seconds:.1f}s; mean history {s.mean_history:.0f}; click rate {s.click_rate:.3f}, finish "
        f"{s.finish_rate:.3f}, like {s.like_rate:.3f}; oracle click AUC {s.oracle_click_auc:.4f}"
    )


if __name__ == "__main__":
    run_main(main, None)
