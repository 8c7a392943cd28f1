"""The command-line surface shared by every job: ``--config FILE`` plus ``--set key.path=value`` overrides."""

from __future__ import annotations

import argparse
import errno
import functools
import logging
import os
import sys
from typing import Any, Callable, List, Optional

from pyramid_mixer.features.config_io import ConfigError
from pyramid_mixer.features.schema import DataError
from pyramid_mixer.jobs.config import JobConfig, load_config
from pyramid_mixer.jobs.safe_checkpoint import CheckpointError

CONFIG_HELP = (
    "YAML config with sections run_dir, data, generate, model, train, eval "
    "(default: the packaged demo config, pyramid_mixer/jobs/configs/demo.yaml)"
)
DEBUG_HELP = "on an error, print the traceback too (else one line says what went wrong and what to do)"
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
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
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


# Errors a user can act on: bad configs, specs and data, refused checkpoints, and the file system's
# (missing or existing paths, permissions, a full disk). Anything else is a bug and keeps its traceback.
USER_ERRORS = (ConfigError, DataError, CheckpointError, OSError)
_OS_ADVICE = {
    errno.ENOSPC: "no space left on the device: free some, or point the job at another disk",
    errno.EDQUOT: "over the disk quota: free some, or point the job at another disk",
    errno.EACCES: "permission denied: pick a path you can write, or fix its permissions",
    errno.EPERM: "not permitted: pick a path you can write, or fix its permissions",
    errno.EROFS: "a read-only file system: pick a writable path",
    errno.ENOTDIR: "a part of the path is a file, not a directory: pick another path",
    errno.EISDIR: "a directory where a file is expected: pick another path",
    errno.EEXIST: "already exists, and is not the directory the job needs: pick another path",
    errno.ENOENT: "does not exist (a missing directory or mount?): create it, or pick another path",
}


def describe(e: BaseException) -> str:
    """One line for a user error: its message, or for a file-system error the path and what to do."""
    if isinstance(e, OSError) and e.errno in _OS_ADVICE:
        where = e.filename if e.filename is not None else "a path the job writes"
        return f"{where}: {_OS_ADVICE[e.errno]}"
    return " ".join(str(e).split()) or type(e).__name__


def job_main(fn: Callable[[List[str]], Any]) -> Callable[[Optional[List[str]]], Any]:
    """A job's entry point: runs ``fn(argv)`` and turns a user error (``USER_ERRORS``) into one line,
    ``error: ...``, and exit status 1, unless ``--debug`` is among the arguments (or ``PMX_DEBUG=1``)."""

    @functools.wraps(fn)
    def main(argv: Optional[List[str]] = None) -> Any:
        args = list(sys.argv[1:] if argv is None else argv)
        debug = "--debug" in args or os.environ.get("PMX_DEBUG") == "1"
        try:
            return fn([a for a in args if a != "--debug"])
        except USER_ERRORS as e:
            if debug:
                raise
            print(f"error: {describe(e)}", file=sys.stderr, flush=True)
            raise SystemExit(1) from None

    return main
