"""``convert``: turn a public dataset into Parquet impressions that the reader and the jobs take.

    python -m pyramid_mixer.jobs.convert movielens --out data/ml-100k [--source DIR] [--max-history 256]
    python -m pyramid_mixer.jobs.convert movielens-1m --source ml-1m --out data/ml-1m
    python -m pyramid_mixer.jobs.convert beauty --source DIR --out data/beauty
    python -m pyramid_mixer.jobs.convert kuairand --source KuaiRand-1K/data --out data/kuairand-1k

movielens: RecBole's ml-100k atomic files (ml-100k.inter, .item, .user). Without --source, the files are
taken out of the recbole 1.2.1 wheel, downloaded from PyPI with pip into OUT/source (the data is not
committed). Train on the output with the MovieLens spec:
    --set data.path=OUT data.spec=<pyramid_mixer/features/specs/movielens.yaml>

movielens-1m: GroupLens' ratings.dat, movies.dat and users.dat (unzipped from
https://files.grouplens.org/datasets/movielens/ml-1m.zip), in the same schema as movielens; spec:
pyramid_mixer/features/specs/movielens1m.yaml (tables sized for ml-1m).

beauty: Amazon Beauty of the 2014 release (https://jmcauley.ucsd.edu/data/amazon/): reviews_Beauty_5.json
and meta_Beauty.json, plain or .gz; one row per review, with each item's category, brand and price bucket
as request features and in the history; spec: pyramid_mixer/features/specs/beauty.yaml.

kuairand: KuaiRand's log_standard_*.csv, user_features*.csv and video_features_basic*.csv, written in the
default (Douyin-style) spec's schema, so the default spec reads it: --set data.path=OUT.

movielens, movielens-1m and beauty write events_after (the user's later events) for next-item mode
(data.split=leave_one_out); --k-core K keeps only users and items with at least K events, dropped
repeatedly until stable (default 0: off; the Beauty 5-core file is already 5-core).

All write OUT/part-*.parquet (an OUT that holds part files already is refused: nothing is overwritten) and
print a one-line summary naming the spec. The datasets are listed in features/datasets/registry.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

from pyramid_mixer.features.datasets.conversion import ConvertSummary
from pyramid_mixer.features.datasets.registry import DATASETS, convert, spec_path
from pyramid_mixer.jobs.cli import DEBUG_HELP, job_main, reads_writes, setup_logging

MAX_HISTORY_HELP = "keep at most N most recent behaviours per history (default: %(default)s)"
K_CORE_HELP = ("keep only users and items with at least K events, dropping them repeatedly until stable "
               "(default: %(default)s, off)")


def parser() -> argparse.ArgumentParser:
    """The ``convert`` command line: one subcommand per dataset of the registry."""
    p = argparse.ArgumentParser(
        prog="pmx-convert",
        description=reads_writes(
            __doc__.strip().splitlines()[0],
            reads="; ".join(f"{d.name}: {d.source} in --source" for d in DATASETS.values()),
            writes="OUT/part-NNNNN.parquet in the schema of the dataset's feature spec"),
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="dataset", required=True, metavar="{" + ",".join(DATASETS) + "}")
    for d in DATASETS.values():
        s = sub.add_parser(d.name, help=d.title)
        s.add_argument("--source", type=Path, default=None, required=d.fetch is None, help=d.source)
        s.add_argument("--out", type=Path, required=True, help="output directory for part-*.parquet (no part "
                       "files in it yet)")
        s.add_argument("--max-history", type=int, default=256, metavar="N", help=MAX_HISTORY_HELP)
        if d.k_core:
            s.add_argument("--k-core", type=int, default=0, metavar="K", help=K_CORE_HELP)
        s.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    return p


def summary_line(s: ConvertSummary, out: Path, spec: Path) -> str:
    return (
        f"wrote {s.rows:,} rows ({s.users:,} users, {s.items:,} items, click rate {s.click_rate:.3f}, mean "
        f"history {s.mean_history:.1f}) to {out} ({len(s.files)} files) in {s.seconds:.1f}s; spec: {spec}"
    )


def run(args: argparse.Namespace) -> ConvertSummary:
    """Runs the conversion the parsed arguments name."""
    if args.max_history < 0:
        raise SystemExit(f"error: --max-history must be >= 0, got {args.max_history}")
    k_core = getattr(args, "k_core", 0)
    if k_core < 0:
        raise SystemExit(f"error: --k-core must be >= 0, got {k_core}")
    return convert(args.dataset, args.source, args.out, args.max_history, k_core,
                   say=lambda line: print(line, flush=True))


@job_main
def main(argv: Optional[List[str]] = None) -> None:
    args = parser().parse_args(argv)
    setup_logging()
    s = run(args)
    print(summary_line(s, args.out, spec_path(args.dataset)))


if __name__ == "__main__":
    main()
