"""The command-line surface shared by every job: ``--config FILE`` plus ``--set key.path=value`` overrides."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional

from pyramid_mixer.features.config_io import ConfigError
from pyramid_mixer.features.schema import DataError
from pyramid_mixer.jobs.config import JobConfig, load_config

CONFIG_HELP = (
    "YAML config with sections run_dir, data, generate, model, train, eval "
    "(default: the packaged demo config, pyramid_mixer/jobs/configs/demo.yaml)"
)
SET_HELP = (
    "override config values, e.g. --set train.epochs=2 model.tower.fusion=sum "
    "(several after one --set, or --set repeated)"
)


def reads_writes(summary: str, reads: str, writes: str) -> str:
    """A job's ``--help`` description: what it does, then what it reads and what it writes."""
    return f"{summary}\n\nreads:  {reads}\nwrites: {writes}"


def parser(prog: str, summary: str, reads: str, writes: str, epilog: str = "") -> argparse.ArgumentParser:
    """The command line of a config-driven job; ``--help`` says what it ``reads`` and ``writes``."""
    p = argparse.ArgumentParser(prog=prog, description=reads_writes(summary, reads, writes), epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help=CONFIG_HELP)
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help=SET_HELP)
    return p


def config_from(args: argparse.Namespace) -> JobConfig:
    try:
        return load_config(args.config, args.overrides)
    except (ConfigError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")


def setup_logging(rank: int = 0) -> None:
    """Rank 0 logs at INFO; other ranks only warnings, so multi-process runs stay readable."""
    level = logging.INFO if rank == 0 else logging.WARNING
    # force: importing fbgemm_gpu logs at module level, which configures the root logger at WARNING first
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S",
                        force=True)


def env_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def run_main(fn, argv: Optional[List[str]]) -> None:  # type: ignore[no-untyped-def]
    """Runs a job's main, turning expected user errors into one clear line instead of a traceback."""
    try:
        fn(argv)
    except (ConfigError, DataError, FileNotFoundError, FileExistsError) as e:
        sys.exit(f"error: {e}")
