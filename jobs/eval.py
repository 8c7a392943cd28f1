"""``eval``: score a held-out split with a trained checkpoint; write the AUC / UAUC report.

    python -m pyramid_mixer.jobs.eval --config my.yaml [--checkpoint runs/demo/checkpoints/epoch-1]

Writes ``run_dir/eval.{json,md,png}`` and, with ``eval.predictions: true``, ``run_dir/predictions.parquet``
(request id, group id, each label, each score) for analysis elsewhere.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torchrec.distributed.model_parallel import DistributedModelParallel
from tqdm import tqdm

from pyramid_mixer.embeddings.model_parallel import DistEnv, init_distributed
from pyramid_mixer.features.config_io import ConfigError
from pyramid_mixer.features.kjt_builder import token_feature_names
from pyramid_mixer.features.next_item import NextItemInputs
from pyramid_mixer.features.prefetch import prefetch
from pyramid_mixer.features.reader import ParquetReader
from pyramid_mixer.features.schema import DataError
from pyramid_mixer.features.spec import FeatureSpec, resolve_spec
from pyramid_mixer.jobs import checkpoint, run_record
from pyramid_mixer.jobs.build import build
from pyramid_mixer.jobs.cli import config_from, job_main, parser, setup_logging
from pyramid_mixer.jobs.config import JobConfig
from pyramid_mixer.jobs.data import Source, read_options, sources
from pyramid_mixer.jobs.distributed import from_main, gather_arrays, lockstep, sum_over_ranks, sum_stats
from pyramid_mixer.jobs.next_item_eval import NextItemReport, evaluate_next_item
from pyramid_mixer.jobs.next_item_eval import summary_lines as next_item_summary
from pyramid_mixer.jobs.report import EvalReport, auc_by_history, calibration_curve, write
from pyramid_mixer.ranking.ctr.metrics import auc, ranking_metrics
from pyramid_mixer.ranking.ctr.popularity import Popularity
from pyramid_mixer.ranking.towers.gate_shares import GateShares, mean_shares

log = logging.getLogger(__name__)


@dataclass
class Predictions:
    """One row per scored impression: ``scores``/``labels``/``oracle`` are ``N X n_labels``."""

    scores: np.ndarray
    labels: np.ndarray
    oracle: np.ndarray
    groups: np.ndarray
    request_ids: np.ndarray
    history_length: np.ndarray
    gate_shares: Dict[str, List[float]] = field(default_factory=dict)  # see gate_shares_over_ranks

    def take(self, order: np.ndarray) -> "Predictions":
        """These predictions with the rows in ``order`` (every per-row array; ``gate_shares`` is per model)."""
        rows = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return dataclasses.replace(self, **{k: v[order] for k, v in rows.items() if isinstance(v, np.ndarray)})


@torch.no_grad()
def predict(
    dmp: DistributedModelParallel, reader: ParquetReader, env: DistEnv, depth: int = 0
) -> Optional[Predictions]:
    """Scores this rank's share of ``reader`` (``depth`` batches built ahead by a background thread); rank 0
    gets all ranks' predictions, in rank order, and the other ranks None."""
    dmp.eval()
    parts: List[List[np.ndarray]] = []
    bar = tqdm(prefetch(reader, depth), desc="eval", unit="batch", disable=not env.is_main, leave=False)
    with GateShares(dmp) as gates:
        for batch, real in lockstep(bar, env, reader.sample_batch):
            gates.active = real
            _, (_, logits, labels, _) = dmp(batch.to(env.device))
            if real:
                parts.append([
                    torch.sigmoid(logits).double().cpu().numpy(), labels.cpu().numpy(), batch.oracle.numpy(),
                    batch.group_ids.numpy(), batch.request_ids.numpy(), batch.history_length.numpy(),
                ])
    dmp.train()
    local = [np.concatenate(cols) for cols in zip(*parts)] if parts else _empty(len(reader.spec.labels))
    if sum_over_ranks(local[0].shape[0], env) == 0:  # every rank raises, none waits in a collective
        raise DataError(f"{reader.files}: the eval split has no usable rows ({reader.stats.as_dict()}); "
                        "check data.eval_days or data.test")
    gathered = gather_arrays(local, env, dst=0)
    shares = gate_shares_over_ranks(gates, env)
    return Predictions(*gathered, gate_shares=shares) if gathered is not None else None


def gate_shares_over_ranks(gates: GateShares, env: DistEnv) -> Dict[str, List[float]]:
    """The fusion gates' mean cross-behaviour shares over every rank's rows, on every rank (a collective)."""
    names, sums, rows = gates.totals()  # the same gates on every rank, zeros where a rank saw no row
    if names and env.world_size > 1:
        sums, rows = (x.sum(0) for x in gather_arrays([sums[None], rows[None]], env))
    return mean_shares(names, sums, rows)


def _empty(num_labels: int) -> List[np.ndarray]:
    two = np.zeros((0, num_labels))
    one = np.zeros(0, dtype=np.int64)
    return [two, two.astype(np.float32), two.astype(np.float32), one, one, one]


def popularity_auc(train: Source, held_out: Source, spec: FeatureSpec) -> Optional[float]:
    """Click AUC of the items' training click rate on the held-out rows (the floor a model must clear)."""
    item = spec.sparse_feature(spec.target[0]).column
    label = spec.labels[0].column

    def columns(src: Source) -> pa.Table:
        table = src.files().dataset().to_table(
            columns=[item, label], filter=src.row_filter
        )
        return table.drop_null()

    fit, test = columns(train), columns(held_out)
    pop = Popularity.fit(fit.column(item).to_numpy(), fit.column(label).to_numpy().astype(np.float64))
    return auc(test.column(label).to_numpy().astype(np.float64), pop.score(test.column(item).to_numpy()))


def report_for(preds: Predictions, spec: FeatureSpec, rows: Dict[str, Any], split: str) -> EvalReport:
    names = spec.label_names
    oracle = {n: preds.oracle[:, j] for j, n in enumerate(names) if not np.isnan(preds.oracle[:, j]).any()}
    return EvalReport(
        split=split,
        labels=ranking_metrics(names, preds.labels, preds.scores, preds.groups, oracle),
        rows=rows,
        auc_by_history=auc_by_history(preds.history_length, preds.labels[:, 0], preds.scores[:, 0]),
        calibration_curve=calibration_curve(preds.labels[:, 0], preds.scores[:, 0]),
        fusion_gate={name: dict(zip(token_feature_names(spec), shares)) for name, shares in preds.gate_shares.items()},
    )


def write_predictions(preds: Predictions, spec: FeatureSpec, path: Path) -> None:
    cols = {"request_id": preds.request_ids, spec.group_key: preds.groups}
    for j, name in enumerate(spec.label_names):
        cols[name] = preds.labels[:, j].astype(np.float32)
        cols[f"{name}_score"] = preds.scores[:, j].astype(np.float32)
    pq.write_table(pa.table(cols), path)


def evaluate(config: JobConfig, dmp: DistributedModelParallel, spec: FeatureSpec, env: DistEnv,
             split: str = "eval", srcs: Optional[Dict[str, Source]] = None,
             next_item: Optional[NextItemInputs] = None, write_files: bool = True,
             out_dir: Optional[Path] = None) -> Union[EvalReport, NextItemReport]:
    """Scores ``split`` and writes ``{split}.{json,md,png}`` to ``out_dir`` (default ``run_dir``); returns
    the report (on every rank).
    ``write_files=False`` (the valid scores of best-epoch selection): no files and no popularity baseline.
    ``srcs``: the job's ``sources`` when the caller has them (their files are listed and opened once).
    In next-item mode the report is ``next_item_eval``'s (``next_item``: the catalogue, when the caller has it).
    """
    srcs = srcs if srcs is not None else sources(config.data, spec)
    if split not in srcs:
        raise ConfigError(f"split {split!r} needs data.valid_days > 0 (a split by time) or data.valid and "
                          "data.test (explicit paths) in the config")
    if config.model.task == "next_item":
        return evaluate_next_item(config, dmp, spec, env, split, srcs, next_item, write_files, out_dir)
    reader = srcs[split].reader(spec, config.model.effective_layout(), read_options(config, env, training=False))
    preds = predict(dmp, reader, env, config.data.prefetch)
    rows = sum_stats(reader.stats, env)
    report: Optional[EvalReport] = None
    if env.is_main:  # the only rank that holds the predictions: it scores them and shares the small report
        report = report_for(preds, spec, rows, split)
        report.extra["source"] = srcs[split].description
        if write_files:
            report.popularity_auc = popularity_auc(srcs["train"], srcs[split], spec)
            out = Path(out_dir) if out_dir is not None else Path(config.run_dir)
            out.mkdir(parents=True, exist_ok=True)
            paths = write(report, out, split)
            if config.eval.predictions:
                write_predictions(preds, spec, out / "predictions.parquet")
            log.info("report: %s", ", ".join(str(p) for p in paths.values()))
    return from_main(report, env)


def summary_lines(report: Union[EvalReport, NextItemReport]) -> List[str]:
    """The few lines a person reads at the end of a job."""
    if isinstance(report, NextItemReport):
        return next_item_summary(report)
    lines = []
    for m in report.labels:
        oracle = f"  (oracle AUC {m.oracle_auc:.4f})" if m.oracle_auc is not None else ""
        lines.append(f"{m.label:>8}: AUC {m.auc:.4f}  UAUC {m.uauc:.4f} over {m.uauc_users} users  "
                     f"GAUC {m.gauc:.4f}{oracle}")
    if report.popularity_auc is not None:
        lines.append(f"popularity-only click AUC {report.popularity_auc:.4f}")
    if report.fusion_gate:
        shares = [sum(s.values()) / len(s) for s in report.fusion_gate.values()]
        lines.append("adaptive fusion, cross-behaviour share a per layer (mean over features; cross-feature "
                     "gets 1 - a): " + ", ".join(f"{n} {a:.3f}" for n, a in zip(report.fusion_gate, shares)))
    r = report.rows
    lines.append(f"rows read {r['rows_read']}, used {r['rows_used']}, rejected {r['rows_rejected']}")
    if r.get("files_skipped"):
        lines.append(f"unreadable files skipped ({len(r['files_skipped'])}): {r['files_skipped']}")
    return lines


@job_main
def main(argv: Optional[List[str]] = None) -> None:
    p = parser("pmx-eval", __doc__.strip().splitlines()[0],
               reads="a checkpoint (default: the one best-epoch selection chose, run_dir/checkpoints/best, else the "
                     "newest complete one under run_dir/checkpoints) and the split's Parquet rows",
               writes="run_dir/evals/<checkpoint>/<split>.{json,md,png} (AUC, UAUC, GAUC, logloss, calibration "
                      "per label; --out: elsewhere), and predictions.parquet there with eval.predictions=true")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint directory (default: run_dir/checkpoints/best, which train.select writes, "
                        "else the newest complete one under run_dir/checkpoints)")
    p.add_argument("--split", default="eval", choices=["eval", "valid"],
                   help="eval: data.test (or the last data.eval_days by time); valid: data.valid when "
                        "both data.valid and data.test are given (or the data.valid_days before the eval "
                        "days by time)")
    p.add_argument("--out", default=None,
                   help="the folder for the report (default: run_dir/evals/<checkpoint>, beside the training "
                        "run's own report, never over it)")
    args = p.parse_args(argv)
    config = config_from(args)
    env = init_distributed()
    setup_logging(env.rank)
    spec = resolve_spec(config.data.spec)
    run_dir = Path(config.run_dir)
    path = Path(args.checkpoint) if args.checkpoint else checkpoint.best(run_dir) or checkpoint.latest(run_dir)
    if path is None:
        raise FileNotFoundError(f"{config.run_dir}/checkpoints: no complete checkpoint; run pmx-train first")
    manifest = checkpoint.read_manifest(path)
    trained_with = manifest.get("trained_with") or run_record.recorded(run_dir)
    run_record.check(trained_with, run_record.record(config, spec), "eval", f"checkpoint {path}")
    built = build(config, spec, env)
    checkpoint.load(path, built.dmp, manifest=manifest)
    out = Path(args.out) if args.out else run_dir / "evals" / Path(path).name
    report = evaluate(config, built.dmp, spec, env, split=args.split, out_dir=out)
    if env.is_main:
        print("\n".join([f"checkpoint {path}; report in {out}"] + summary_lines(report)))


if __name__ == "__main__":
    main()
