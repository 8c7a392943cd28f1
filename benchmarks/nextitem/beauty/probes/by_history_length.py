"""Full-ranking NDCG@10 by history length: where one trained model gains or loses against another.

Scores a split (valid or eval) with each run's best checkpoint (``train.select`` keeps it in
``run_dir/checkpoints/best``) and prints the mean NDCG@10 of the users in each history-length bucket, with
the paired difference against the first run. The runs must share the data (the benchmark's trial runs do).

    python benchmarks/nextitem/beauty/probes/by_history_length.py valid RUN_DIR [RUN_DIR ...]
"""

import dataclasses
import json
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import pyarrow.parquet as pq
import torch

from pyramid_mixer.embeddings.model_parallel import DistEnv, init_distributed
from pyramid_mixer.features.spec import resolve_spec
from pyramid_mixer.jobs import checkpoint
from pyramid_mixer.jobs.build import build
from pyramid_mixer.jobs.config import load_config
from pyramid_mixer.jobs.data import read_options, sources
from pyramid_mixer.jobs.next_item_eval import next_item_inputs, rank_rows

BUCKETS = [(1, 5), (5, 8), (8, 11), (11, 21), (21, 51), (51, 10_000)]  # behaviours before the target


def full_ranks(run: Path, split: str, env: DistEnv) -> Dict[str, np.ndarray]:
    """Request ids, full-ranking ranks (1 = first) and history lengths of ``split``'s rows."""
    config = load_config(str(run / "config.json"), [f"run_dir={run}", "train.threads=1"])
    spec = resolve_spec(config.data.spec)
    built = build(config, spec, env)
    checkpoint.load(checkpoint.best(run), built.dmp)
    srcs = sources(config.data, spec)
    inputs = next_item_inputs(srcs, spec, config.model.next_item.item_features)
    options = dataclasses.replace(read_options(config, env, training=False),
                                  next_item=dataclasses.replace(inputs, negatives=0, seen=True))
    reader = srcs[split].reader(spec, config.model.effective_layout(), options)
    ranks, _ = rank_rows(built.dmp, reader, env, inputs, config.eval.sampled_negatives, config.train.seed)
    files = sorted(Path(config.data.path).glob("*.parquet"))
    table = pq.read_table(files, columns=["request_id", spec.sequence.fields[0].column]).to_pydict()
    length = dict(zip(table["request_id"], map(len, table[spec.sequence.fields[0].column])))
    return {"request_id": ranks["request_id"], "rank": ranks["full"],
            "length": np.array([length[r] for r in ranks["request_id"]])}


def ndcg10(rank: np.ndarray) -> np.ndarray:
    return np.where(rank <= 10, 1.0 / np.log2(rank + 1.0), 0.0)


def main() -> None:
    split, runs = sys.argv[1], [Path(r) for r in sys.argv[2:]]
    torch.set_num_threads(1)
    env = init_distributed()  # one process: every run scores in it
    scored = [full_ranks(run, split, env) for run in runs]
    for s in scored[1:]:
        if not np.array_equal(s["request_id"], scored[0]["request_id"]):
            raise SystemExit("the runs scored different rows: they must share the data")
    length = scored[0]["length"]
    rows = []
    for lo, hi in BUCKETS:
        m = (length >= lo) & (length < hi)
        gains = [ndcg10(s["rank"][m]) for s in scored]
        rows.append({"history": f"{lo}-{hi - 1}", "users": int(m.sum()),
                     "ndcg10": [float(g.mean()) if m.any() else None for g in gains],
                     "paired_se": [float((g - gains[0]).std() / max(m.sum(), 1) ** 0.5) for g in gains[1:]]})
    rows.append({"history": "all", "users": int(length.size),
                 "ndcg10": [float(ndcg10(s["rank"]).mean()) for s in scored], "paired_se": []})
    print(f"{split}: NDCG@10 by history length; runs: " + ", ".join(r.name for r in runs))
    for r in rows:
        cells = "  ".join(f"{v:.4f}" if v is not None else "-" for v in r["ndcg10"])
        print(f"{r['history']:>9} {r['users']:6d}  {cells}")
    print(json.dumps({"split": split, "runs": [str(r) for r in runs], "buckets": rows}))


if __name__ == "__main__":
    main()
