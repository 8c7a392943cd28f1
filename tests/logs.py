"""Small hand-rolled Douyin-style tables for tests: random but valid rows in the default spec's schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pyramid_mixer.features.datasets import synthetic

# The generator's schema without stay_time (the default spec does not read it) and without the finish and
# like true probabilities, so that only the click label has an oracle column.
# A model and a run small enough to train two epochs of a few hundred rows in seconds (fault and resume tests).
TINY_TRAIN_OVERRIDES = [
    "model.layout.levels=[{start: 0, end: 4, group: 1}, {start: 4, end: 12, group: 4}]",
    "model.tower.out_dim=16",
    "model.over_arch.hidden=[16]",
    "train.batch_size=16",
    "train.epochs=2",
    "train.shuffle_rows=64",
    "train.threads=1",
    "data.eval_days=2",
]

SCHEMA = pa.schema([f for f in synthetic.SCHEMA if f.name not in ("stay_time", "finish_prob", "like_prob")])


def random_rows(n: int, seed: int = 0, max_history: int = 400, users: int = 7) -> List[Dict[str, Any]]:
    """``n`` valid rows; history lengths vary from 0 to ``max_history`` (times decreasing, before the request)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        L = int(rng.integers(0, max_history + 1)) if i % 5 else 0
        t = 1_700_000_000 + int(rng.integers(0, 10 * 86400))
        gaps = np.cumsum(rng.integers(1, 20_000, size=L))
        rows.append(
            {
                "request_id": 1000 + i,
                "user_id": int(rng.integers(1, users + 1)) * 7919,
                "item_id": int(rng.integers(1, 500)),
                "author_id": int(rng.integers(1, 50)),
                "request_time": t,
                "item_category": int(rng.integers(1, 20)),
                "item_tags": [int(x) for x in rng.integers(1, 80, size=int(rng.integers(0, 4)))],
                "user_region": int(rng.integers(1, 30)),
                "device": int(rng.integers(1, 8)),
                "item_duration": float(rng.uniform(5, 300)),
                "user_active_days": float(rng.integers(0, 365)),
                "click": int(rng.integers(0, 2)),
                "finish": int(rng.integers(0, 2)),
                "like": int(rng.integers(0, 2)),
                "hist_item_id": [int(x) for x in rng.integers(1, 500, size=L)],
                "hist_author_id": [int(x) for x in rng.integers(1, 50, size=L)],
                "hist_item_category": [int(x) for x in rng.integers(1, 20, size=L)],
                "hist_action": [int(x) for x in rng.integers(1, 4, size=L)],
                "hist_time": [t - int(g) for g in gaps],
                "click_prob": float(rng.uniform()),
            }
        )
    return rows


def write_rows(
    path: Path, rows: List[Dict[str, Any]], row_group_size: int = 64, schema: Optional[pa.Schema] = None
) -> Path:
    table = pa.Table.from_pylist(rows, schema=schema or SCHEMA)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path
