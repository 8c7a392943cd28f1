"""Best-epoch selection: score the valid split as training goes, keep the best model, stop when it stops
improving, and score the test split once, with the best.

``train.select.metric`` names what is maximised on the valid split:

- CTR: ``"<label> <AUC|UAUC|GAUC>"``, or two or three of them joined by ``+`` (``"click AUC+UAUC"``: their
  mean, for a model that must rank users and each user's items at once);
- next item: ``"<HR|NDCG|MRR>@K"`` in full ranking (K one of ``eval.ks``).

The valid split is scored at each epoch end and, with ``every_steps``, every that many steps. A better score
(by more than ``min_delta``) saves the model to ``run_dir/checkpoints/best`` (its own directory, whatever
``train.checkpoint`` says); ``patience`` scores in a row without one stop training (0: never stop early).
The selector's state travels in every checkpoint's manifest, so a resumed run goes on selecting where it
stopped.

Example::

    >>> s = Selector(SelectConfig(metric="click AUC", patience=2))
    >>> [s.update(v, f"epoch-{i}") for i, v in enumerate([0.70, 0.72, 0.71, 0.72], 1)]
    [True, True, False, False]
    >>> s.best, s.best_at, s.stop
    (0.72, 'epoch-2', True)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from pyramid_mixer.features.config_io import ConfigError

CTR_METRICS = ("AUC", "UAUC", "GAUC")
NEXT_ITEM_METRICS = ("HR", "NDCG", "MRR")


@dataclass(frozen=True)
class SelectConfig:
    """Best-epoch selection on the valid split (``jobs.selection``); off while ``metric`` is empty.

    Args:
        metric: what is maximised on the valid split: ``"click AUC"``, ``"click UAUC"``, ``"click AUC+UAUC"``
            (the mean of both), ... for CTR; ``"NDCG@10"``, ``"HR@10"``, ``"MRR@20"`` (full ranking) for next
            item. Empty: train every epoch and score the last model.
        patience: stop after this many valid scores in a row without a gain (0: train every epoch).
        every_steps: also score the valid split every this many steps (0: at epoch ends only).
        min_delta: a gain smaller than this is no gain.
    """

    metric: str = ""
    patience: int = 0
    every_steps: int = 0
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        if self.patience < 0 or self.every_steps < 0 or self.min_delta < 0:
            raise ConfigError(f"train.select: patience={self.patience}, every_steps={self.every_steps} and "
                              f"min_delta={self.min_delta:g} must be >= 0")
        if self.metric:
            parse_metric(self.metric)


@dataclass(frozen=True)
class Metric:
    """A parsed ``train.select.metric``: the CTR label and its metrics, or the next-item metric at K."""

    text: str
    label: Optional[str] = None
    names: Sequence[str] = ()
    k: int = 0


def parse_metric(text: str) -> Metric:
    """``"click AUC+UAUC"`` -> label ``click``, names ``(auc, uauc)``; ``"NDCG@10"`` -> ``NDCG`` at 10."""
    m = re.fullmatch(r"\s*(HR|NDCG|MRR)@(\d+)\s*", text)
    if m:
        return Metric(text, names=(m.group(1),), k=int(m.group(2)))
    m = re.fullmatch(r"\s*(\S+)\s+((?:AUC|UAUC|GAUC)(?:\+(?:AUC|UAUC|GAUC))*)\s*", text)
    if m:
        names = tuple(n.lower() for n in m.group(2).split("+"))
        if len(set(names)) == len(names):
            return Metric(text, label=m.group(1), names=names)
    raise ConfigError(f"train.select.metric={text!r}: use '<label> AUC', '<label> UAUC', '<label> GAUC' or some "
                      "of them joined by '+' ('click AUC+UAUC'), or a next-item metric 'NDCG@10', 'HR@10', 'MRR@20'")


def check_metric(metric: Metric, task: str, labels: Sequence[str], ks: Sequence[int]) -> None:
    """The metric exists for this job: a CTR metric names one of the spec's labels; a next-item one a K of
    ``eval.ks``; each in its own task."""
    if task == "next_item":
        if metric.label is not None or metric.k not in ks:
            raise ConfigError(f"train.select.metric={metric.text!r}: next-item mode selects on 'NDCG@K', 'HR@K' or "
                              f"'MRR@K' with K one of eval.ks={list(ks)}")
    elif metric.label not in labels:
        raise ConfigError(f"train.select.metric={metric.text!r}: CTR mode selects on one of the spec's labels "
                          f"{list(labels)}, e.g. '{labels[0]} AUC'")


def metric_value(report: Any, metric: Metric) -> float:
    """The metric's value in a valid report (``EvalReport`` or ``NextItemReport``; the mean of the named metrics
    for ``+``)."""
    if metric.label is None:
        return float(report.metrics["full"][f"{metric.names[0]}@{metric.k}"])
    label = report.metric(str(metric.label))
    return sum(float(getattr(label, n)) for n in metric.names) / len(metric.names)


@dataclass
class Selector:
    """The running selection: the best valid score so far, where it was, and the scores without a gain."""

    config: SelectConfig
    best: float = float("-inf")
    best_at: str = ""
    since_best: int = 0
    history: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def stop(self) -> bool:
        """Patience is spent: training should stop."""
        return self.config.patience > 0 and self.since_best >= self.config.patience

    def update(self, value: float, at: str) -> bool:
        """Records a valid score taken at ``at`` (a checkpoint name); True when it is the new best. An undefined
        score (NaN) is no gain."""
        value = float("-inf") if math.isnan(value) else value
        better = value > self.best + self.config.min_delta or not self.best_at
        self.history.append({"at": at, "value": value, "best": better})
        if better:
            self.best, self.best_at, self.since_best = value, at, 0
        else:
            self.since_best += 1
        return better

    def state(self) -> Dict[str, Any]:
        """What a checkpoint keeps to resume the selection."""
        return {"best": self.best, "best_at": self.best_at, "since_best": self.since_best, "history": self.history}

    def restore(self, state: Optional[Dict[str, Any]]) -> None:
        if state:
            self.best, self.best_at = float(state["best"]), str(state["best_at"])
            self.since_best, self.history = int(state["since_best"]), list(state["history"])
