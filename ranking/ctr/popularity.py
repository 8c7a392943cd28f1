"""The popularity-only score: each item's smoothed click rate in the training data.

The floor any ranking model must clear: a model that does not beat it has learned nothing about the user.

Example::

    >>> import numpy as np
    >>> pop = Popularity.fit(np.array([1, 1, 2, 2, 2]), np.array([1, 1, 0, 0, 1]), prior_weight=0.0)
    >>> pop.score(np.array([1, 2])).round(3).tolist()
    [1.0, 0.333]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Popularity:
    items: np.ndarray  # sorted unique item ids
    rate: np.ndarray  # smoothed click rate per item
    prior: float  # global click rate, the score of unseen items

    @staticmethod
    def fit(items: np.ndarray, labels: np.ndarray, prior_weight: float = 20.0) -> "Popularity":
        """``(clicks + w * prior) / (impressions + w)`` per item; ``w`` shrinks rare items to the prior."""
        uniq, inverse = np.unique(items, return_inverse=True)
        imps = np.bincount(inverse, minlength=uniq.size).astype(np.float64)
        clicks = np.bincount(inverse, weights=(labels > 0.5).astype(np.float64), minlength=uniq.size)
        prior = float(clicks.sum() / max(imps.sum(), 1.0))
        return Popularity(uniq, (clicks + prior_weight * prior) / (imps + prior_weight), prior)

    def score(self, items: np.ndarray) -> np.ndarray:
        if self.items.size == 0:
            return np.full(items.shape, self.prior)
        pos = np.clip(np.searchsorted(self.items, items), 0, self.items.size - 1)
        return np.where(self.items[pos] == items, self.rate[pos], self.prior)
