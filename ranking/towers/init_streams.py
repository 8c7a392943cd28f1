"""Named random streams for parameter initialisation, so that an ablation changes only what it removes.

Modules draw their initial weights from torch's global generator in construction order. Removing one
component (an ablation) then shifts the stream, and every module built after it starts from different
weights: the ablation measures the component *and* a new draw of everything else. On small benchmarks
that draw can move AUC by more than the component does.

``init_stream(name)`` gives the modules built inside it their own stream, seeded by the enclosing
stream's seed and ``name``, and leaves the enclosing stream exactly as it found it. Nested streams chain
(the tower's ``"tower"``, then ``"level0.layer0"``, then ``"cb"``), so a module's initial weights depend on
the run's seed and its place in the model only, never on which of its siblings exist.

Example::

    >>> _ = torch.manual_seed(0)
    >>> with init_stream("a"):
    ...     a = torch.randn(2)
    >>> with init_stream("b"):
    ...     _ = torch.randn(1000)  # whatever "b" draws ...
    >>> with init_stream("a"):
    ...     torch.equal(a, torch.randn(2))  # ... "a" draws the same
    True
"""

from __future__ import annotations

import zlib
from contextlib import contextmanager
from typing import Iterator

import torch


def stream_seed(name: str) -> int:
    """The seed of stream ``name`` inside the current one (the current generator's initial seed)."""
    return zlib.crc32(f"{torch.initial_seed()}/{name}".encode())


@contextmanager
def init_stream(name: str) -> Iterator[None]:
    """Within the block, torch's CPU generator draws from stream ``name``; afterwards it is restored.

    Only the CPU generator is forked: build modules on the CPU (or the meta device) and move them.
    """
    seed = stream_seed(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
