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

All write OUT/part-*.parquet (replacing earlier parts) and print a one-line summary naming the spec.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

from pyramid_mixer.features.datasets.amazon import convert_amazon
from pyramid_mixer.features.datasets.kuairand import convert_kuairand
from pyramid_mixer.features.datasets.movielens import ML100K_FILES, ConvertSummary, convert_movielens, fetch_recbole_ml100k
from pyramid_mixer.features.datasets.movielens1m import convert_movielens1m
from pyramid_mixer.features.spec import default_spec_path
from pyramid_mixer.jobs.cli import reads_writes, run_main, setup_logging

MAX_HISTORY_HELP = "keep at most N most recent behaviours per history (default: %(default)s)"
K_CORE_HELP = ("keep only users and items with at least K events, dropping them repeatedly until stable "
               "(default: %(default)s, off)")
DATASETS = ("movielens", "movielens-1m", "beauty", "kuairand")
# dataset -> the packaged spec that reads its output
SPECS = {"movielens": "movielens.yaml", "movielens-1m": "movielens1m.yaml", "beauty": "beauty.yaml",
         "kuairand": "douyin.yaml"}


def parser() -> argparse.ArgumentParser:
    """The ``convert`` command line: one subcommand per dataset."""
    p = argparse.ArgumentParser(
        prog="pmx-convert",
        description=reads_writes(
            __doc__.strip().splitlines()[0],
            reads="movielens: ml-100k.{inter,item,user} in --source, or the recbole 1.2.1 wheel fetched from "
                  "PyPI; movielens-1m: {ratings,movies,users}.dat in --source; beauty: reviews_Beauty_5.json and "
                  "meta_Beauty.json (or .gz) in --source; kuairand: the KuaiRand log CSVs in --source",
            writes="OUT/part-NNNNN.parquet in the schema of the dataset's feature spec"),
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="dataset", required=True, metavar="{" + ",".join(DATASETS) + "}")
    ml = sub.add_parser("movielens", help="MovieLens-100k from RecBole's atomic files")
    ml.add_argument("--source", type=Path, default=None,
                    help="directory with ml-100k.inter/.item/.user (default: download the recbole 1.2.1 "
                         "wheel from PyPI into OUT/source)")
    m1 = sub.add_parser("movielens-1m", help="MovieLens-1M from GroupLens' .dat files, in the movielens schema")
    m1.add_argument("--source", type=Path, required=True,
                    help="the unzipped ml-1m directory (ratings.dat, movies.dat, users.dat)")
    be = sub.add_parser("beauty", help="Amazon Beauty (2014 5-core reviews and metadata)")
    be.add_argument("--source", type=Path, required=True,
                    help="directory with reviews_Beauty_5.json and meta_Beauty.json (or .json.gz)")
    kr = sub.add_parser("kuairand", help="KuaiRand standard logs, in the default spec's schema")
    kr.add_argument("--source", type=Path, required=True,
                    help="the KuaiRand data directory (log_standard_*.csv, user_features*.csv, "
                         "video_features_basic*.csv)")
    for s in (ml, m1, be, kr):
        s.add_argument("--out", type=Path, required=True, help="output directory for part-*.parquet")
        s.add_argument("--max-history", type=int, default=256, metavar="N", help=MAX_HISTORY_HELP)
    for s in (ml, m1, be):
        s.add_argument("--k-core", type=int, default=0, metavar="K", help=K_CORE_HELP)
    return p


def spec_path(dataset: str) -> Path:
    """The packaged feature spec that reads a dataset's output."""
    return default_spec_path().with_name(SPECS[dataset])


def summary_line(s: ConvertSummary, out: Path, spec: Path) -> str:
    return (
        f"wrote {s.rows:,} rows ({s.users:,} users, {s.items:,} items, click rate {s.click_rate:.3f}, mean "
        f"history {s.mean_history:.1f}) to {out} ({len(s.files)} files) in {s.seconds:.1f}s; spec: {spec}"
    )


def run(args: argparse.Namespace) -> ConvertSummary:
    """Runs the conversion the parsed arguments name."""
    if args.max_history < 0:
        raise SystemExit(f"error: --max-history must be >= 0, got {args.max_history}")
    if getattr(args, "k_core", 0) < 0:
        raise SystemExit(f"error: --k-core must be >= 0, got {args.k_core}")
    if args.dataset == "kuairand":
        return convert_kuairand(args.source, args.out, max_history=args.max_history)
    if args.dataset == "movielens-1m":
        return convert_movielens1m(args.source, args.out, max_history=args.max_history, k_core=args.k_core)
    if args.dataset == "beauty":
        return convert_amazon(args.source, args.out, category="Beauty", max_history=args.max_history,
                              k_core=args.k_core)
    source = args.source
    if source is None:
        source = args.out / "source"
        if all((source / name).is_file() for name in ML100K_FILES):
            print(f"no --source: using the ml-100k files fetched earlier into {source}", flush=True)
        else:
            print(f"no --source: fetching ml-100k from the recbole 1.2.1 wheel on PyPI into {source}", flush=True)
        fetch_recbole_ml100k(source)
    return convert_movielens(source, args.out, max_history=args.max_history, k_core=args.k_core)


def main(argv: Optional[List[str]] = None) -> None:
    args = parser().parse_args(argv)
    setup_logging()
    s = run(args)
    print(summary_line(s, args.out, spec_path(args.dataset)))


if __name__ == "__main__":
    run_main(main, None)
