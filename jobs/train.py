"""``train``: Parquet logs -> sharded Pyramid Mixer ranking model -> checkpoint -> eval report.

    python -m pyramid_mixer.jobs.train --config my.yaml --set train.epochs=2

Reads the training split (by request time, or explicit paths), trains with the tables' fused row-wise
Adagrad and Adam on the dense parts, writes a checkpoint at the end of every epoch
(``run_dir/checkpoints/epoch-N``, and every ``train.checkpoint_every`` steps; a rerun resumes from the
newest good one, mid-epoch included; SIGTERM writes one and exits with status 143), logs scalars to
TensorBoard (``run_dir/tensorboard``), then evaluates the held-out split and writes
``run_dir/eval.{json,md,png}``.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from pyramid_mixer.embeddings.collisions import managed_tables
from pyramid_mixer.embeddings.model_parallel import init_distributed
from pyramid_mixer.features.config_io import ConfigError
from pyramid_mixer.features.prefetch import prefetch
from pyramid_mixer.features.schema import DataError
from pyramid_mixer.features.spec import FeatureSpec, resolve_spec
from pyramid_mixer.jobs import checkpoint, run_record
from pyramid_mixer.jobs.build import build
from pyramid_mixer.jobs.cli import config_from, env_rank, job_main, parser, setup_logging
from pyramid_mixer.jobs.config import JobConfig
from pyramid_mixer.jobs.data import Source, read_options, sources
from pyramid_mixer.jobs.distributed import sum_over_ranks, sum_stats
from pyramid_mixer.jobs.eval import evaluate, summary_lines
from pyramid_mixer.jobs.loops import in_lockstep, make_stepper
from pyramid_mixer.jobs.next_item_eval import NextItemReport, next_item_inputs
from pyramid_mixer.jobs.report import EvalReport
from pyramid_mixer.jobs.selection import Metric, Selector, check_metric, metric_value, parse_metric
from pyramid_mixer.jobs.stop import EXIT_STATUS, Stopped, StopRequest

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    epochs: int
    steps: int
    rows_trained: int
    seconds: float
    final_loss: float
    num_parameters: int
    read: List[Dict[str, Any]] = field(default_factory=list)  # row accounting per epoch
    checkpoint: Optional[str] = None
    report: Optional[Union[EvalReport, NextItemReport]] = None  # the eval (test) split's, or the first of eval.splits
    # best-epoch selection (train.select): the metric, the best valid score and where it was, every score
    selection: Dict[str, Any] = field(default_factory=dict)
    reports: Dict[str, Union[EvalReport, NextItemReport]] = field(default_factory=dict)  # every split of eval.splits


def count_rows(src: Source) -> int:
    return src.files().dataset().count_rows(filter=src.row_filter)


def train(config: JobConfig) -> TrainResult:
    """Trains (resuming after the newest complete checkpoint of ``run_dir``), then evaluates."""
    env = init_distributed()
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    spec = resolve_spec(config.data.spec)
    run_dir = Path(config.run_dir)
    trained_with = run_record.record(config, spec)
    run_record.check(run_record.recorded(run_dir), trained_with, "resume", str(run_dir))
    srcs = sources(config.data, spec)  # before building: a wrong path fails in a second
    src = srcs["train"]
    train_rows = count_rows(src)
    if train_rows == 0:
        raise DataError(f"the train split has no rows ({src.description}): nothing to train on; check data.path "
                        "and how much the split holds out (data.eval_days, data.user_test)")
    if env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        run_record.write(run_dir, config, spec)
    built = build(config, spec, env)
    dmp, opt = built.dmp, built.optimizer
    result = TrainResult(epochs=0, steps=0, rows_trained=0, seconds=0.0, final_loss=float("nan"),
                         num_parameters=built.num_parameters)
    first_epoch, skip, done_rows = 1, 0, 0
    select = config.train.select
    selector, metric = _selector(config, spec, srcs)
    last = checkpoint.latest(run_dir) if config.train.checkpoint else None
    if last is not None:
        manifest = checkpoint.load(last, dmp, opt)
        first_epoch, skip = int(manifest["epoch"]) + 1, int(manifest.get("epoch_steps", 0))
        result.steps, done_rows = int(manifest["steps"]), int(manifest["rows"]) - int(manifest.get("epoch_rows", 0))
        if selector is not None:
            selector.restore(manifest.get("selection"))
            if selector.stop:  # the run stopped early before: nothing more to train
                first_epoch = config.train.epochs + 1
        log.info("resuming from %s (epoch %d, %d steps into it)", last, first_epoch, skip)
    inputs = (next_item_inputs(srcs, spec, config.model.next_item.item_features)
              if config.model.task == "next_item" else None)
    reader = src.reader(spec, built.layout, read_options(config, env, training=True, next_item=inputs))
    total_batches = math.ceil(train_rows / (config.train.batch_size * env.world_size))
    writer = SummaryWriter(str(run_dir / "tensorboard")) if env.is_main else None
    if env.is_main:
        log.info("model: %s parameters; training on %s", f"{built.num_parameters:,}", src.description)

    result.rows_trained = done_rows
    start = time.perf_counter()
    dmp.train()
    # TorchRec's pipeline cannot move the input distribution of tables whose ids a module remaps first
    managed = bool(managed_tables(spec))
    if managed and config.train.pipeline and env.is_main:
        log.info("managed-collision tables: training with the plain loop (the train pipeline cannot prefetch them)")
    stepper = make_stepper(config.train.pipeline and not managed, dmp, opt, env)
    every = config.train.checkpoint_every if config.train.checkpoint else 0

    def save(epochs_done: int, steps_in: int, epoch_rows: int) -> Path:
        """A checkpoint after ``epochs_done`` epochs and ``steps_in`` steps of the next; ``epoch_rows``: rows
        trained in the current pass, not yet in ``result.rows_trained``."""
        meta = {"steps": result.steps, "rows": result.rows_trained + epoch_rows, "seed": config.train.seed,
                "trained_with": trained_with}
        if steps_in:
            meta["epoch_rows"] = epoch_rows
        if selector is not None:
            meta["selection"] = selector.state()
        return checkpoint.save(run_dir, epochs_done, dmp, opt, meta, step=steps_in)

    scored_at = -1  # the step of the last valid score

    def score_valid(at: str) -> None:
        """Best-epoch selection: scores the valid split now (``at``: the position's checkpoint name) and keeps
        the model if it is the best so far."""
        nonlocal scored_at
        assert selector is not None and metric is not None
        stepper.detach()
        report = evaluate(config, dmp, spec, env, split="valid", srcs=srcs, next_item=inputs, write_files=False)
        dmp.train()
        value, scored_at = metric_value(report, metric), result.steps
        if selector.update(value, at):
            checkpoint.save_best(run_dir, dmp, {"at": at, "steps": result.steps, "metric": select.metric,
                                                "value": value, "trained_with": trained_with})
        log.info("valid %s %.4f at %s (best %.4f at %s)", select.metric, value, at, selector.best, selector.best_at)
        if writer is not None:
            writer.add_scalar("valid/selection_metric", value, result.steps)

    with StopRequest() as stop:
        for epoch in range(first_epoch, config.train.epochs + 1):
            epoch_steps = skip if epoch == first_epoch else 0
            # the next batches are built while this one trains; both close on any exit, a cut pass included
            with closing(prefetch(reader, config.data.prefetch)) as ahead, tqdm(
                ahead, total=total_batches, initial=epoch_steps, desc=f"epoch {epoch}/{config.train.epochs}",
                unit="batch", disable=not env.is_main,
            ) as bar:
                reader.passes = epoch - 1  # the data position: epoch e reads in the order drawn from (seed, e - 1)
                reader.skip_batches = epoch_steps  # and a resumed run skips the steps it took before its stop
                epoch_start, batches, trained = time.perf_counter(), in_lockstep(bar, reader, env), 0
                while not (config.train.max_steps and result.steps >= config.train.max_steps) and not (
                        selector is not None and selector.stop):
                    try:
                        loss, weights = stepper.progress(batches)
                    except StopIteration:
                        break
                    result.steps += 1
                    epoch_steps += 1
                    trained += int(weights.sum())
                    result.final_loss = float(loss)
                    if result.steps % 10 == 0 or result.steps == 1:
                        rate = trained * env.world_size / max(time.perf_counter() - epoch_start, 1e-9)
                        bar.set_postfix(loss=f"{result.final_loss:.4f}", rows_s=f"{rate:,.0f}")
                        if writer is not None:
                            writer.add_scalar("train/loss", result.final_loss, result.steps)
                            writer.add_scalar("train/rows_per_s", rate, result.steps)
                    stopping = stop.agreed(env)
                    if config.train.checkpoint and (stopping or (every and epoch_steps % every == 0)):
                        epoch_rows = sum_over_ranks(trained + reader.stats.resumed_past, env)
                        log.info("checkpoint %s", save(epoch - 1, epoch_steps, epoch_rows))
                    if selector is not None and select.every_steps and result.steps % select.every_steps == 0:
                        score_valid(checkpoint.name(epoch - 1, epoch_steps))
                    if stopping:
                        raise Stopped(f"stopped by {stop.signal_name} after {result.steps} steps" + (
                            "; the last checkpoint holds this position: rerun the same command to resume"
                            if config.train.checkpoint else " (train.checkpoint is off: nothing was saved)"))
            stepper.detach()
            early = selector is not None and selector.stop  # patience spent: training ends here
            cut = (early or bool(config.train.max_steps) and result.steps >= config.train.max_steps) and (
                not reader.pass_complete)
            result.epochs += 0 if cut else 1
            read = sum_stats(reader.stats, env)
            # rows trained in this pass, by this run or (resumed past) by the one before its stop; < rows_used
            # only when max_steps cut the pass
            read["rows_trained"] = sum_over_ranks(trained + reader.stats.resumed_past, env)
            result.read.append(read)
            if selector is not None and scored_at != result.steps:
                score_valid(checkpoint.name(epoch - 1, epoch_steps) if cut else checkpoint.name(epoch))
            if config.train.checkpoint:  # max_steps cut the pass: a mid-epoch checkpoint, resumed from there
                done, at = (epoch - 1, epoch_steps) if cut else (epoch, 0)
                result.checkpoint = str(save(done, at, read["rows_trained"]))
            result.rows_trained += read["rows_trained"]
            if config.train.max_steps and result.steps >= config.train.max_steps or selector is not None and (
                    selector.stop):
                break
    result.seconds = time.perf_counter() - start
    if result.rows_trained == 0:
        read = result.read[-1] if result.read else {}
        raise DataError(f"no row of the train split was usable ({src.description}): read {read.get('rows_read', 0)}, "
                        f"rejected {read.get('rejected_by_reason', {})}; fix the data or the spec")
    if selector is not None:
        best = checkpoint.best(run_dir)
        if best is None:
            raise ConfigError(f"train.select: no valid score was taken (train.epochs={config.train.epochs}, "
                              f"train.max_steps={config.train.max_steps}); train at least one step")
        checkpoint.load(best, dmp)  # the test split is scored once, with the model the valid split chose
        result.selection = dict(selector.state(), metric=select.metric, stopped_early=selector.stop)
        log.info("selected %s by valid %s %.4f", selector.best_at, select.metric, selector.best)
    for split in config.eval.splits:
        result.reports[split] = evaluate(config, dmp, spec, env, split=split, srcs=srcs, next_item=inputs)
        if writer is not None and isinstance(result.reports[split], EvalReport):
            for m in result.reports[split].labels:
                writer.add_scalar(f"{split}/{m.label}_auc", m.auc, result.steps)
                writer.add_scalar(f"{split}/{m.label}_uauc", m.uauc, result.steps)
    result.report = result.reports.get("eval", result.reports[config.eval.splits[0]])
    if writer is not None:
        writer.close()
    return result


def _selector(config: JobConfig, spec: FeatureSpec, srcs: Dict[str, Source]) -> Tuple[Optional[Selector],
                                                                                     Optional[Metric]]:
    """The best-epoch selector of ``train.select`` (None, None when it is off), checked against the job."""
    select = config.train.select
    if not select.metric:
        return None, None
    metric = parse_metric(select.metric)
    check_metric(metric, config.model.task, [label.name for label in spec.labels], config.eval.ks)
    if "valid" not in srcs:
        raise ConfigError("train.select scores a valid split, and this config has none: set data.valid_days > 0 "
                          "(split by time), data.split=per_user with data.user_valid > 0, data.split=leave_one_out, "
                          "or data.valid with data.test")
    return Selector(select), metric


def summary(result: TrainResult) -> str:
    lines = [
        f"trained {result.epochs} epoch(s), {result.steps} steps, {result.rows_trained:,} rows in "
        f"{result.seconds:.1f}s ({result.rows_trained / max(result.seconds, 1e-9):,.0f} rows/s); "
        f"final loss {result.final_loss:.4f}; {result.num_parameters:,} parameters",
    ]
    for i, r in enumerate(result.read, 1):
        line = f"train rows, epoch {i}: read {r['rows_read']}, used {r['rows_used']}, rejected {r['rows_rejected']}"
        if r["rows_trained"] != r["rows_used"]:
            line += f", trained {r['rows_trained']} (the rest were read ahead when training stopped early)"
        if r["rejected_by_reason"]:
            line += f" {r['rejected_by_reason']}"
        if r.get("files_skipped"):
            line += f"; unreadable files skipped ({len(r['files_skipped'])}): {r['files_skipped']}"
        if r.get("rows_history_truncated"):
            line += f"; histories cut to the spec's cap: {r['rows_history_truncated']} rows"
        if r["rows_unconsumed"]:
            line += f", still in the shuffle buffer when training stopped early {r['rows_unconsumed']}"
        lines.append(line)
    if result.checkpoint:
        lines.append(f"checkpoint {result.checkpoint}")
    s = result.selection
    if s:
        scores = ", ".join(f"{h['at']} {h['value']:.4f}" for h in s["history"])
        lines.append(f"selected {s['best_at']} by valid {s['metric']} {s['best']:.4f} (scores: {scores})"
                     + ("; stopped early, patience spent" if s["stopped_early"] else ""))
    for split, report in result.reports.items():
        name = "eval (held-out split)" if split == "eval" else f"{split} split"
        lines += [f"{name}:"] + ["  " + s for s in summary_lines(report)]
    return "\n".join(lines)


@job_main
def main(argv: Optional[List[str]] = None) -> None:
    p = parser("pmx-train", __doc__.strip().splitlines()[0],
               reads="the Parquet logs at data.path (or data.train / data.test) through the feature spec "
                     "data.spec; the newest complete checkpoint under run_dir, to resume from",
               writes="run_dir/checkpoints/epoch-N/ (and epoch-N-step-K/), run_dir/{config,spec}.json, "
                      "run_dir/eval.{json,md,png} (and valid.*), run_dir/tensorboard/",
               epilog=__doc__)
    config = config_from(p.parse_args(argv))
    setup_logging(env_rank())
    try:
        result = train(config)
    except Stopped as e:
        print(f"pmx-train: {e}", flush=True)
        raise SystemExit(EXIT_STATUS)
    if env_rank() == 0:
        print(summary(result))


if __name__ == "__main__":
    main()
