"""Next-item evaluation: each held-out user's rank of their next item, full and sampled, then HR / NDCG / MRR.

Per batch of users: one matmul scores every user against the whole catalogue (``NextItemTrain`` returns
``B X N`` scores), the items each user has already seen are masked, and the rank of the target counts every
item scored at least as high (``ranking.next_item_metrics``). The sampled protocols rank the target among
``eval.sampled_negatives`` unseen items drawn uniformly and by training popularity, per row from its request
id, so a row draws the same negatives in any batch on any process. The ranks are integers gathered to rank
0 and put in request-id order: metrics from 2 processes equal those of 1.

Pop (every user gets the items by training count, seen items masked) is scored beside the model, the floor
a model must clear, as the popularity AUC is in CTR mode.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import torch
from torchrec.distributed.model_parallel import DistributedModelParallel
from tqdm import tqdm

from pyramid_mixer.embeddings.model_parallel import DistEnv
from pyramid_mixer.features.next_item import NextItemInputs, catalogue_features, item_rows
from pyramid_mixer.features.prefetch import prefetch
from pyramid_mixer.features.reader import ParquetReader
from pyramid_mixer.features.schema import DataError
from pyramid_mixer.features.spec import FeatureSpec
from pyramid_mixer.jobs.config import JobConfig
from pyramid_mixer.jobs.data import Source, read_options
from pyramid_mixer.jobs.distributed import from_main, gather_arrays, lockstep, sum_over_ranks, sum_stats
from pyramid_mixer.ranking.next_item.metrics import (
    row_uniforms,
    sample_negatives,
    sampled_ranks,
    target_ranks,
    topk_metrics,
)

log = logging.getLogger(__name__)

# the model's ranks in full ranking and among sampled negatives (uniform, by popularity), then Pop's
PROTOCOLS = ("full", "sampled_uniform", "sampled_popularity", "pop_full", "pop_sampled_uniform",
             "pop_sampled_popularity")


def next_item_inputs(srcs: Dict[str, Source], spec: FeatureSpec, item_features: bool = False) -> NextItemInputs:
    """The catalogue (every item that is a target in any split) and the training-target counts per item;
    with ``item_features``, each item's bags of the other candidate features too (``catalogue_features``,
    from its first row in train, then valid, then eval)."""
    rows = {name: item_rows(s.files().dataset(), spec, s.row_filter) for name, s in srcs.items()}  # each read once
    catalogue = np.unique(np.concatenate(list(rows.values())))
    if catalogue.size == 0:
        raise DataError(f"{srcs['train'].description}: no rows with a target item; next-item mode has nothing to rank")
    counts = np.bincount(np.searchsorted(catalogue, rows["train"]), minlength=catalogue.size).astype(np.float64)
    features = None
    if item_features:
        columns = sorted({spec.sparse_feature(name).column for name in spec.target})
        table = pa.concat_tables([s.files().dataset().to_table(columns=columns, filter=s.row_filter).drop_null()
                                  for s in srcs.values()])
        features = catalogue_features(table, spec, catalogue)
    return NextItemInputs(catalogue=catalogue, item_counts=counts, features=features)


@dataclass
class NextItemReport:
    """One split's next-item metrics: ``metrics[protocol]["HR@10"]`` for each protocol of ``PROTOCOLS``."""

    split: str
    users: int
    catalogue: int
    metrics: Dict[str, Dict[str, float]]
    rows: Dict[str, Any]
    seconds: float  # the whole split: reading and building the batches, scoring, ranking, sampling
    score_seconds: float = 0.0  # full ranking alone: the model's forward (one matmul per batch) and the ranks
    sampled_negatives: int = 100
    extra: Dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> Dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=float).replace("NaN", "null"))


@torch.no_grad()
def rank_rows(dmp: DistributedModelParallel, reader: ParquetReader, env: DistEnv, inputs: NextItemInputs,
              negatives: int, seed: int, depth: int = 0) -> Tuple[Optional[Dict[str, np.ndarray]], float]:
    """This rank's rows' ranks under every protocol; rank 0 gets every rank's, in request-id order, the
    others None; and the seconds this rank spent in full ranking (forward, matmul, ranks)."""
    dmp.eval()
    popularity = torch.from_numpy(inputs.item_counts if inputs.item_counts is not None else np.ones(inputs.size))
    parts: List[Tuple[np.ndarray, ...]] = []
    bar = tqdm(prefetch(reader, depth), desc="rank", unit="batch", disable=not env.is_main, leave=False)
    score_seconds = 0.0
    for batch, real in lockstep(bar, env, reader.sample_batch):
        start = time.perf_counter()
        _, (_, scores, targets, _) = dmp(batch.to(env.device))
        if not real:
            continue
        scores, targets = scores.float().cpu(), targets.cpu()
        seen = batch.seen_mask(inputs.size)
        full = target_ranks(scores, targets, seen)
        score_seconds += time.perf_counter() - start
        excluded = seen.clone()
        excluded[torch.arange(targets.shape[0]), targets] = True
        keys = batch.request_ids.numpy()
        uniform = sample_negatives(excluded, negatives, torch.from_numpy(row_uniforms(keys, inputs.size, seed)))
        by_pop = sample_negatives(excluded, negatives, torch.from_numpy(row_uniforms(keys, inputs.size, seed + 1)),
                                  popularity)
        pop_scores = popularity[None].expand(targets.shape[0], -1)
        ranks = (full, sampled_ranks(scores, targets, uniform), sampled_ranks(scores, targets, by_pop),
                 target_ranks(pop_scores, targets, seen), sampled_ranks(pop_scores, targets, uniform),
                 sampled_ranks(pop_scores, targets, by_pop))
        parts.append((keys, *(r.numpy() for r in ranks)))
    dmp.train()
    local = [np.concatenate(c) for c in zip(*parts)] if parts else [np.zeros(0, np.int64)] * (1 + len(PROTOCOLS))
    if sum_over_ranks(local[0].shape[0], env) == 0:
        raise DataError(f"{reader.files}: the split has no usable rows ({reader.stats.as_dict()}); check the data "
                        "and data.split")
    gathered = gather_arrays(local, env, dst=0)
    if gathered is None:
        return None, score_seconds
    order = np.argsort(gathered[0], kind="stable")
    return {"request_id": gathered[0][order], **{p: r[order] for p, r in zip(PROTOCOLS, gathered[1:])}}, score_seconds


def evaluate_next_item(config: JobConfig, dmp: DistributedModelParallel, spec: FeatureSpec, env: DistEnv,
                       split: str, srcs: Dict[str, Source], inputs: Optional[NextItemInputs] = None,
                       write_files: bool = True, out_dir: Optional[Path] = None) -> NextItemReport:
    """Scores ``split`` and writes ``{split}.{json,md}`` to ``out_dir`` (default ``run_dir``; nothing when
    ``write_files`` is False); returns the report on every rank."""
    inputs = inputs if inputs is not None else next_item_inputs(srcs, spec, config.model.next_item.item_features)
    options = dataclasses.replace(read_options(config, env, training=False),
                                  next_item=dataclasses.replace(inputs, negatives=0, seen=True))
    reader = srcs[split].reader(spec, config.model.effective_layout(), options)
    start = time.perf_counter()
    ranks, score_seconds = rank_rows(dmp, reader, env, inputs, config.eval.sampled_negatives, config.train.seed,
                                     config.data.prefetch)
    seconds = time.perf_counter() - start
    rows = sum_stats(reader.stats, env)
    report: Optional[NextItemReport] = None
    if env.is_main:
        report = NextItemReport(
            split=split, users=int(ranks["request_id"].size), catalogue=inputs.size, rows=rows, seconds=seconds,
            score_seconds=score_seconds,
            metrics={p: topk_metrics(ranks[p], config.eval.ks) for p in PROTOCOLS},
            sampled_negatives=config.eval.sampled_negatives,
            extra={"source": srcs[split].description},
        )
        if write_files:
            write_report(report, Path(out_dir) if out_dir is not None else Path(config.run_dir), split)
    return from_main(report, env)


def write_report(report: NextItemReport, out_dir: Path, stem: str) -> Dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{stem}.json", "markdown": out_dir / f"{stem}.md"}
    paths["json"].write_text(json.dumps(report.as_dict(), indent=2))
    names = list(next(iter(report.metrics.values())))
    lines = [f"# Next-item {report.split} split: {report.users} users, {report.catalogue} items", "",
             "| protocol | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for p, m in report.metrics.items():
        lines.append(f"| {p} | " + " | ".join(f"{m[n]:.4f}" for n in names) + " |")
    lines += ["", f"full: every item, seen items masked; sampled: the target among {report.sampled_negatives} "
              "unseen items drawn uniformly / by training popularity; pop_*: the same for Pop (items by training "
              f"count). Full ranking (forward, one matmul per batch, ranks) took {report.score_seconds:.2f}s of "
              f"the split's {report.seconds:.1f}s."]
    paths["markdown"].write_text("\n".join(lines) + "\n")
    return paths


def summary_lines(report: NextItemReport) -> List[str]:
    """The few lines a person reads at the end of a job."""
    lines = [f"{report.users} users, {report.catalogue} items; full ranking {report.score_seconds:.2f}s of "
             f"{report.seconds:.1f}s"]
    for p, m in report.metrics.items():
        lines.append(f"{p:>19}: " + "  ".join(f"{n} {v:.4f}" for n, v in m.items()))
    r = report.rows
    lines.append(f"rows read {r['rows_read']}, used {r['rows_used']}, rejected {r['rows_rejected']}")
    return lines
