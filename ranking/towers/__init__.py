"""Every interaction tower by name, behind one interface.

**The tower interface.** A tower is an ``nn.Module`` built from one config (``PyramidMixerConfig`` for the
Pyramid Mixer, ``baselines.config.BaselineConfig`` for every other), which it keeps as ``config``; its width
is ``config.out_dim``. It is called as ``tower(tokens, mask, target) -> B X out_dim`` with:

- ``tokens``: ``B X S X F X D`` float, the history's ``S`` token slots (the pyramid's levels concatenated,
  short first; within a level most recent first), ``F`` per-behaviour features of width ``D``; a padded slot
  may hold anything (the model gives zeros, a test gives NaN);
- ``mask``: ``B X S`` bool, True where a slot holds a real token;
- ``target``: ``B X Ft X D``, the candidate's embeddings, from the same tables as the first ``Ft`` token
  features (zeros in next-item mode, where there is no candidate).

Every tower guarantees that whatever a padded slot holds, the output is bit-identical (padding never leaks),
and that a row with no real token gives a finite output and finite gradients. Each draws its initial weights
in its own random stream (``make_tower``), so which tower is built never moves the rest of the model's
weights. A baseline names the ``BaselineConfig`` widths it reads in its class attribute ``reads``.

``pyramid_mixer`` is the project's tower; the others are the baselines a ranking team compares it with
(same inputs, same tables, same readout into the over arch): ``mean`` (mean pooling), ``din`` (target
attention), ``sasrec`` (causal self-attention, BST/SASRec-style), ``gru`` (GRU4Rec-style), ``mixer``
(a plain MLP-Mixer over full-resolution tokens), ``mlp4rec`` (sequence, channel and feature mixing),
``none`` (DLRM-style: pooled request features only; the history is ignored), and the sequential
recommenders of next-item mode (``baselines.sequential``): ``last`` (FPMC's first-order transition),
``bert4rec`` (bidirectional, cloze) and ``fmlp`` (FMLP-Rec's frequency-domain filters).

Example::

    >>> from pyramid_mixer.ranking.towers.pyramid_mixer import PyramidMixerConfig
    >>> tower = make_tower("mean", PyramidMixerConfig(level_tokens=(8,), num_features=2, dim=4,
    ...                    num_target_features=1), BaselineConfig(num_tokens=8, num_features=2, dim=4,
    ...                    num_target_features=1, out_dim=6))
    >>> tower.config.out_dim
    6
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Union

from torch import nn

from pyramid_mixer.ranking.towers.baselines.attention import DinTower, SasRecTower
from pyramid_mixer.ranking.towers.baselines.config import BaselineConfig
from pyramid_mixer.ranking.towers.baselines.mixers import Mlp4RecTower, MlpMixerTower
from pyramid_mixer.ranking.towers.baselines.pooling import MeanPoolTower, NoTower
from pyramid_mixer.ranking.towers.baselines.recurrent import GruTower
from pyramid_mixer.ranking.towers.baselines.sequential import Bert4RecTower, FmlpTower, LastItemTower
from pyramid_mixer.ranking.towers.init_streams import init_stream
from pyramid_mixer.ranking.towers.pyramid_mixer import PyramidMixer, PyramidMixerConfig

BASELINES: Dict[str, Callable[[BaselineConfig], nn.Module]] = {
    "mean": MeanPoolTower,
    "din": DinTower,
    "sasrec": SasRecTower,
    "gru": GruTower,
    "mixer": MlpMixerTower,
    "mlp4rec": Mlp4RecTower,
    "none": NoTower,
    "last": LastItemTower,
    "bert4rec": Bert4RecTower,
    "fmlp": FmlpTower,
}
TOWER_KINDS = ("pyramid_mixer",) + tuple(BASELINES)
# The widths a baseline may read beyond its shapes; each baseline class names the ones it reads in ``reads``
WIDTHS = ("hidden", "layers", "heads", "mask_prob")


def make_tower(kind: str, pyramid: PyramidMixerConfig, baseline: BaselineConfig) -> nn.Module:
    """The tower called ``kind``, built from the config that kind reads, in its own random stream (what it
    draws leaves the rest of the model's initial weights unchanged)."""
    if kind != "pyramid_mixer" and kind not in BASELINES:
        raise ValueError(f"model.tower_kind={kind!r} is unknown; use one of {TOWER_KINDS}")
    with init_stream("tower"):
        return PyramidMixer(pyramid) if kind == "pyramid_mixer" else BASELINES[kind](baseline)


def effective_tower_config(
    kind: str, pyramid: PyramidMixerConfig, baseline: BaselineConfig
) -> Union[PyramidMixerConfig, BaselineConfig]:
    """The config tower ``kind`` is built from, with every field it does not read at its default: two
    settings with equal effective configs build the same tower (same weights from the same seed, same
    outputs), so a comparison can tell a search candidate that changes nothing for a tower from one that does.
    """
    if kind == "pyramid_mixer":
        return pyramid.without_unused()
    reads = BASELINES[kind].reads  # type: ignore[attr-defined]
    default = BaselineConfig()
    return dataclasses.replace(baseline, **{w: getattr(default, w) for w in WIDTHS if w not in reads})
