"""Why reading recent feedback costs UAUC on the per-user split: the within-user AUC (UAUC) of the mean of the
last k ratings in each held-out row's logged history, with the held-out rows in their logged order and with
their (rating, click) pairs shuffled at random within each user's window (5 shuffles, mean).

If the shuffled windows score as low as the logged ones, the low UAUC is not a drift in behaviour: the
later of two held-out rows with different labels holds the earlier one's label, the opposite of its own,
so any score that rises with recent feedback ranks a window's rows backwards. Reads data/ml-100k-256
(pmx-convert movielens --out data/ml-100k-256 --max-history 256).

    python benchmarks/quality/probes/window_labels.py
"""

import numpy as np
import pyarrow.parquet as pq

from pyramid_mixer.features.splits import assign_per_user
from pyramid_mixer.ranking.ctr.metrics import grouped_auc

table = pq.read_table("data/ml-100k-256/part-00000.parquet",
                      columns=["user_id", "request_time", "request_id", "click", "rating"])
split = assign_per_user(table, "user_id", "request_time", "request_id", valid=0.1, test=0.1)
rid, user = table["request_id"].to_numpy(), table["user_id"].to_numpy()
click, rating = table["click"].to_numpy().astype(float), table["rating"].to_numpy()
order = np.lexsort((rid, table["request_time"].to_numpy(), user))
starts = np.r_[0, np.flatnonzero(user[order][1:] != user[order][:-1]) + 1]
ends = np.r_[starts[1:], len(order)]
rng = np.random.default_rng(0)


def window_uauc(window: np.ndarray, k: int, shuffle: bool) -> float:
    """UAUC over the window's rows of the mean of each row's last ``k`` ratings (one rating per earlier row)."""
    labels, scores, users = [], [], []
    for a, b in zip(starts, ends):
        rows = order[a:b]
        held = np.flatnonzero(window[rows])
        r, c = rating[rows].copy(), click[rows].copy()
        if shuffle:
            p = rng.permutation(held)
            r[held], c[held] = r[p], c[p]
        for j in held:
            earlier = r[max(0, j - k):j]
            scores.append(earlier.mean() if len(earlier) else 3.5)
            labels.append(c[j])
            users.append(user[rows[0]])
    return grouped_auc(np.array(labels), np.array(scores), np.array(users)).uauc


for name, ids in (("valid", split.valid_ids), ("test", split.test_ids)):
    window = np.isin(rid, ids)
    for k in (1, 3, 1000):
        shuffled = np.mean([window_uauc(window, k, True) for _ in range(5)])
        print(f"{name}: mean of the last {k:4d} ratings: UAUC as logged {window_uauc(window, k, False):.4f}, "
              f"window shuffled {shuffled:.4f}")
