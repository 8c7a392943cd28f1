"""Where UAUC goes on MovieLens-100k's per-user split: the within-user AUC (UAUC) of plain history summaries on
the train, valid and test rows, the click rate along each user's sequence, and the item click rate as a
candidate-only score. Reads data/ml-100k-256 (pmx-convert movielens --out data/ml-100k-256 --max-history 256).

    python benchmarks/quality/probes/history_signals.py
"""

import numpy as np
import pyarrow.parquet as pq

from pyramid_mixer.features.splits import assign_per_user
from pyramid_mixer.ranking.ctr.metrics import auc, grouped_auc

table = pq.read_table("data/ml-100k-256/part-00000.parquet",
                      columns=["user_id", "request_time", "request_id", "item_id", "click", "hist_action"])
split = assign_per_user(table, "user_id", "request_time", "request_id", valid=0.1, test=0.1)
rid = table["request_id"].to_numpy()
test, valid = np.isin(rid, split.test_ids), np.isin(rid, split.valid_ids)
train = ~test & ~valid
user, item = table["user_id"].to_numpy(), table["item_id"].to_numpy()
click = table["click"].to_numpy().astype(float)
ratings = table["hist_action"].to_pylist()  # most recent first


def uauc(score: np.ndarray, rows: np.ndarray) -> float:
    return grouped_auc(click[rows], score[rows], user[rows]).uauc


print(f"click rate: train {click[train].mean():.3f}, valid {click[valid].mean():.3f}, test {click[test].mean():.3f}")
for k in (1, 3, 10, 1000):
    mean_k = np.array([np.mean(r[:k]) if r else 3.5 for r in ratings])
    print(f"mean of the last {k:4d} ratings: UAUC train {uauc(mean_k, train):.4f}, valid {uauc(mean_k, valid):.4f}, "
          f"test {uauc(mean_k, test):.4f}; global test AUC {auc(click[test], mean_k[test]):.4f}")
counts = np.bincount(item[train], minlength=item.max() + 1)
likes = np.bincount(item[train], weights=click[train], minlength=item.max() + 1)
item_rate = ((likes + 20 * click[train].mean()) / (counts + 20))[item]
print(f"item click rate (train): UAUC train {uauc(item_rate, train):.4f}, valid {uauc(item_rate, valid):.4f}, "
      f"test {uauc(item_rate, test):.4f}; global test AUC {auc(click[test], item_rate[test]):.4f}")
order = np.lexsort((rid, table["request_time"].to_numpy(), user))
position = np.empty(len(user))
starts = np.r_[0, np.flatnonzero(user[order][1:] != user[order][:-1]) + 1]
for a, b in zip(starts, np.r_[starts[1:], len(user)]):
    position[order[a:b]] = (np.arange(b - a) + 0.5) / (b - a)
decile = np.minimum((position * 10).astype(int), 9)
deciles = " ".join(f"{click[decile == d].mean():.3f}" for d in range(10))
print(f"click rate by decile of each user's sequence: {deciles}")
