"""One UAUC probe on MovieLens-100k's per-user split: pmx-train with the base overrides below plus the probe's,
one epoch, seed 0; appends the valid and test click AUC / UAUC to probes.jsonl (the table in
benchmarks/quality/README.md).

    pmx-convert movielens --out data/ml-100k-256 --max-history 256
    python benchmarks/quality/probes/run_probe.py pm model.tower_kind=pyramid_mixer
    python benchmarks/quality/probes/run_probe.py none_g8w3 model.tower_kind=none train.group_rows=8 \
        model.group_loss.weight=3
"""

import contextlib
import io
import json
import sys
import time
from pathlib import Path

from pyramid_mixer.jobs.config import load_config
from pyramid_mixer.jobs.train import train

BASE = [
    "data.path=data/ml-100k-256", "data.spec=movielens", "data.split=per_user",
    "data.user_test=0.1", "data.user_valid=0.1", "generate.max_history=256",
    "model.layout.levels=[{start: 0, end: 16, group: 1}, {start: 16, end: 64, group: 3}, "
    "{start: 64, end: 256, group: 8}]",
    "model.tower.out_dim=32", "model.over_arch.hidden=[64, 32]", "train.batch_size=256", "train.dense_lr=0.001",
    "train.threads=1", "train.checkpoint=false", "eval.splits=[valid, eval]", "train.epochs=1",
]
OUT = Path(__file__).with_name("probes.jsonl")

if __name__ == "__main__":
    name, extra = sys.argv[1], sys.argv[2:]
    start = time.time()
    config = load_config(None, BASE + extra + [f"run_dir=runs/probes/{name}"])
    with contextlib.redirect_stderr(io.StringIO()):
        result = train(config)
    out = {"name": name, "overrides": extra, "seconds": round(time.time() - start)}
    for split, report in result.reports.items():
        click = report.metric("click")
        out["test" if split == "eval" else split] = {"auc": round(click.auc, 4), "uauc": round(click.uauc, 4)}
    if result.selection:
        out["selected"] = result.selection["best_at"]
    with open(OUT, "a") as f:
        f.write(json.dumps(out) + "\n")
    print(json.dumps(out))
