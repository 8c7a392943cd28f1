"""Relative ratings for the UAUC probes: each row's history ratings centred on that history's own mean (rounded,
3 = the user's average so far, clipped to 1..5), written to data/ml-100k-rel; the user's rating level leaves
the history, which ratings stood out stays.

    python benchmarks/quality/probes/relative_ratings.py
    python benchmarks/quality/probes/run_probe.py pm_rel data.path=data/ml-100k-rel
"""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

table = pq.read_table("data/ml-100k-256/part-00000.parquet")
relative = []
for ratings in table["hist_action"].to_pylist():
    mean = np.mean(ratings) if ratings else 0.0
    relative.append([int(np.clip(np.rint(r - mean) + 3, 1, 5)) for r in ratings])
column = pa.array(relative, table.schema.field("hist_action").type)
table = table.set_column(table.schema.get_field_index("hist_action"), "hist_action", column)
Path("data/ml-100k-rel").mkdir(parents=True, exist_ok=True)
pq.write_table(table, "data/ml-100k-rel/part-00000.parquet", row_group_size=20000)
