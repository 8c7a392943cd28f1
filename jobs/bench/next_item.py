"""``bench-nextitem``: the paper's next-item table (RQ1): every model, same budget, HR@10, NDCG@10, MRR@20.

    python -m pyramid_mixer.jobs.bench.next_item [--config bench.yaml] [--set seeds=[0] workers=1]

For each dataset (MovieLens-100k, fetched; MovieLens-1M and Amazon Beauty when their files are given) and
each model (the Pyramid Mixer and the baselines behind the same tower interface, on the same tables): every
search candidate trains once with the first seed and is scored on the valid split (each user's second-to-last
item); the candidate with the best valid full-ranking NDCG@10 trains with the other seeds. The test split is
each user's last item, ranked against the whole catalogue with the seen items masked, and among 100 sampled
negatives (uniform and by popularity). Pop is scored from the training counts. Writes
``out_dir/nextitem.{json,md,png}``; finished trials are cached in ``work_dir`` (a rerun picks up where an
interrupted one stopped).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional

from pyramid_mixer.jobs.bench.common import bench_main
from pyramid_mixer.jobs.bench.config import BenchConfig, load_bench_config
from pyramid_mixer.jobs.bench.next_item_tables import write_results
from pyramid_mixer.jobs.bench.quality import search_and_seeds
from pyramid_mixer.jobs.cli import job_main
from pyramid_mixer.jobs.config import load_config

log = logging.getLogger(__name__)


def valid_ndcg(result: Dict[str, Any]) -> float:
    """A next-item trial's selection score: full-ranking NDCG@10 on the valid split."""
    return float(result["splits"]["valid"]["metrics"]["full"]["NDCG@10"])


def load_next_item_bench(path: Optional[str], overrides: Optional[List[str]] = None) -> BenchConfig:
    """The benchmark config (None: the packaged ``bench_next_item.yaml``), with ``key=value`` overrides."""
    default = Path(str(resources.files("pyramid_mixer.jobs") / "configs" / "bench_next_item.yaml"))
    return load_bench_config(path or str(default), overrides)


def runnable(bench: BenchConfig) -> BenchConfig:
    """The benchmark without the datasets whose files are not given (MovieLens-1M and Beauty need a source)."""
    kept = tuple(d for d in bench.datasets if d.kind == "movielens" or d.source)
    for d in bench.datasets:
        if d not in kept:
            log.info("%s: skipped (set its source to the directory with its files to run it)", d.name)
    if not kept:
        raise ValueError("no dataset to run: every dataset of the config needs files it was not given")
    return dataclasses.replace(bench, datasets=kept)


def run_bench(bench: BenchConfig) -> Dict[str, Any]:
    """Runs the benchmark and writes ``out_dir/nextitem.{json,md,png}``; returns the JSON data."""
    start = time.perf_counter()
    bench = runnable(bench)
    final, search, chosen = search_and_seeds(bench, valid_ndcg)
    negatives = load_config(bench.datasets[0].config, list(bench.datasets[0].overrides)).eval.sampled_negatives
    command = " ".join(["pmx-bench-nextitem"] + sys.argv[1:]) if len(sys.argv) > 1 else "make bench-nextitem"
    return write_results(bench, final, search, chosen, time.perf_counter() - start, command, negatives)


@job_main
def main(argv: Optional[List[str]] = None) -> None:
    bench_main(argv, "pmx-bench-nextitem", __doc__, "bench_next_item.yaml", "seeds=[0] workers=1",
               "MovieLens-100k from a dataset's source directory or the recbole 1.2.1 wheel it fetches from PyPI; "
               "MovieLens-1M and Amazon Beauty from the source directories the config gives",
               "out_dir/nextitem.{json,md,png} (default benchmarks/nextitem); data, trial runs and the trial cache "
               "under work_dir (default runs/bench-nextitem)", load_next_item_bench, run_bench)


if __name__ == "__main__":
    main()
