"""Pre-emption: SIGTERM asks a training job to stop at the end of its current step, with a checkpoint.

Schedulers (Kubernetes, Slurm, torchrun when a peer fails) send SIGTERM and wait a grace period before
SIGKILL. ``StopRequest`` turns the signal into a flag; the training loop asks ``agreed(env)`` after every
step (a one-integer all-reduce when there are several ranks, so that all ranks stop at the same step),
writes a checkpoint at that position and raises ``Stopped``; the command exits with status 143 (128 +
SIGTERM) and the same command resumes from the checkpoint.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any, Optional, Type

from pyramid_mixer.embeddings.model_parallel import DistEnv
from pyramid_mixer.jobs.distributed import any_rank

EXIT_STATUS = 128 + signal.SIGTERM


class Stopped(Exception):
    """Training stopped on request (SIGTERM) after writing a checkpoint; rerun to resume."""


class StopRequest:
    """Context manager: while active, SIGTERM sets a flag instead of ending the process."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self._previous: Any = None

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def agreed(self, env: DistEnv) -> bool:
        """True when any rank was asked to stop (every rank must call this at the same step)."""
        stop = any_rank(self.requested, env)
        if stop and not self.signal_name:
            self.signal_name = "SIGTERM on another rank"
        return stop
