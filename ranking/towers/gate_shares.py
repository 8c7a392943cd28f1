"""What the adaptive fusion learned: every fusion gate's cross-behaviour share, averaged over the rows scored.

A mixer layer with both branches and ``fusion="gate"`` outputs ``a * CB(Z) + (1 - a) * CF(Z)``, with ``a`` per
example and per token feature (``mixer_layer.FusionGate``). ``GateShares`` hooks the gates of a model (a tower,
a ranking model, or a ``DistributedModelParallel`` around one) and sums ``a`` over the rows that pass through
while ``active``; ``shares()`` gives the mean per gate and feature. ``a`` near 1 means the layer has learned to
ignore its cross-feature branch there, near 0 its cross-behaviour branch. The hook reads the gate's logits
(its ``proj`` output), so it adds a sigmoid per row and changes nothing in the forward pass.

Example::

    >>> from pyramid_mixer.ranking.towers.pyramid_mixer import PyramidMixer, PyramidMixerConfig
    >>> tower = PyramidMixer(PyramidMixerConfig(level_tokens=(4, 4), num_features=3, dim=8,
    ...                                         num_target_features=2, out_dim=16, gate_init=0.9))
    >>> with GateShares(tower) as gates:
    ...     _ = tower(torch.randn(5, 8, 3, 8), torch.ones(5, 8, dtype=torch.bool), torch.randn(5, 2, 8))
    >>> {name: [round(a, 3) for a in shares] for name, shares in gates.shares().items()}
    {'level0.layer0': [0.9, 0.9, 0.9], 'level1.layer0': [0.9, 0.9, 0.9]}
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from pyramid_mixer.ranking.towers.mixer_layer import FusionGate

_LEVEL_LAYER = re.compile(r"levels\.(\d+)\.layers\.(\d+)\.gate$")


def gate_name(module_name: str) -> str:
    """``"...levels.1.layers.0.gate"`` -> ``"level1.layer0"``; any other name is kept as it is."""
    m = _LEVEL_LAYER.search(module_name)
    return f"level{m.group(1)}.layer{m.group(2)}" if m else module_name


class GateShares:
    """Sums each fusion gate's ``a`` (``B X F`` per forward) over the rows seen while ``active``.

    Args:
        model (nn.Module): searched with ``named_modules()`` for ``FusionGate``s; a model without one (a
            baseline tower, an ablation without the gate) gives empty ``shares()``.

    Use as a context manager: the hooks exist only inside the ``with`` block.
    """

    def __init__(self, model: nn.Module) -> None:
        self.gates: Dict[str, FusionGate] = {
            gate_name(n): m for n, m in model.named_modules() if isinstance(m, FusionGate)
        }
        self.active = True
        self._sums: Dict[str, Tensor] = {  # per gate: a summed over rows, one float64 per token feature
            name: torch.zeros(g.proj.out_features, dtype=torch.float64, device=g.proj.weight.device)
            for name, g in self.gates.items()
        }
        self._rows: Dict[str, int] = {name: 0 for name in self.gates}
        self._handles: List[Any] = []

    def __enter__(self) -> "GateShares":
        for name, gate in self.gates.items():
            self._handles.append(gate.proj.register_forward_hook(partial(self._record, name)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _record(self, name: str, module: nn.Module, inputs: Tuple[Tensor, ...], logits: Tensor) -> None:
        if not self.active:
            return
        self._sums[name] += torch.sigmoid(logits.detach().double()).sum(0)  # B X F -> F
        self._rows[name] += logits.size(0)

    def totals(self) -> Tuple[List[str], np.ndarray, np.ndarray]:
        """Every gate's name, its sums of ``a`` (``G X F``) and its rows (``G``): what ranks add before dividing."""
        names = list(self.gates)  # every gate, seen or not, so that every rank returns the same shapes
        if not names:
            return [], np.zeros((0, 0)), np.zeros(0)
        sums = torch.stack([self._sums[n] for n in names]).cpu().numpy()
        return names, sums, np.array([float(self._rows[n]) for n in names])

    def shares(self) -> Dict[str, List[float]]:
        """Per gate that saw rows: the mean ``a`` per token feature (the cross-behaviour branch's share)."""
        names, sums, rows = self.totals()
        return mean_shares(names, sums, rows)


def mean_shares(names: List[str], sums: np.ndarray, rows: np.ndarray) -> Dict[str, List[float]]:
    """``{name: sums[g] / rows[g]}`` as plain floats, for the gates that saw a row."""
    return {n: [float(x) for x in sums[g] / rows[g]] for g, n in enumerate(names) if rows[g] > 0}
