"""``bench-speed``: how fast each tower trains and evaluates against history length, on this machine.

    python -m pyramid_mixer.jobs.bench.speed [--config bench_speed.yaml] [--set batch_size=256 repeats=5]

For every case (a tower over a layout, see ``speed_config.py``), in one process run:
- training examples/s: forward + backward + optimizer of the full model (embedding bags with the fused
  row-wise Adagrad, tower, over arch), built the way ``pmx-train`` builds it (planner, DMP), on batches
  built by the reader's ``BatchBuilder`` from a table whose histories fill the layout; and eval examples/s;
- the tower alone, forward + backward on random tokens: its time, its FLOPs (counted by
  ``torch.utils.flop_counter`` from the shapes of every matmul, attention and recurrent op) and so its
  GFLOP/s, in fp32 and under bf16 autocast, against this machine's matmul peak measured in the same run;
- peak memory (RSS) of the case's process.
Then the loader (Parquet file -> ``RankingBatch``, the reader as ``pmx-train`` uses it: in-process, no
worker processes) in rows/s over the largest pyramid layout. Timings are the median of ``repeats`` steps
after ``warmup``, each measurement with ``threads`` threads. Writes ``out_dir/speed.{json,md,png}``, with
the issue's targets as ratios from this one run.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import multiprocessing
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from pyramid_mixer.embeddings.model_parallel import init_distributed
from pyramid_mixer.features.datasets.synthetic import SCHEMA
from pyramid_mixer.features.kjt_builder import BatchBuilder
from pyramid_mixer.features.reader import ParquetReader, ReadOptions
from pyramid_mixer.features.spec import FeatureSpec, resolve_spec
from pyramid_mixer.features.tokens import PyramidLayout
from pyramid_mixer.jobs.bench.common import bench_main
from pyramid_mixer.jobs.bench.gemm_bound import matmul_flops, record_matmuls, replay_seconds
from pyramid_mixer.jobs.bench.speed_config import SpeedCase, SpeedConfig, load_speed_config
from pyramid_mixer.jobs.bench.speed_profile import profile_categories
from pyramid_mixer.jobs.bench.speed_tables import write_results
from pyramid_mixer.jobs.bench.tower_reference import former_code, reference_tower
from pyramid_mixer.jobs.build import build
from pyramid_mixer.jobs.cli import job_main
from pyramid_mixer.jobs.config import JobConfig, load_config
from pyramid_mixer.jobs.loops import PlainLoop
from pyramid_mixer.ranking.towers import make_tower

log = logging.getLogger(__name__)

MIN_REPEATS = 3


def full_history_logs(rows: int, history: int, seed: int = 0) -> pa.Table:
    """``rows`` impressions in the generator's schema, each with exactly ``history`` behaviours (random ids,
    times one to ten minutes apart): every token slot of a layout covering ``history`` is real."""
    rng = np.random.default_rng(seed)
    n = rows * history
    offsets = pa.array(np.arange(0, n + 1, history, dtype=np.int32))

    def lists(values: np.ndarray) -> pa.Array:
        return pa.ListArray.from_arrays(offsets, pa.array(values.astype(np.int64)))

    request_time = 1_700_000_000 + rng.integers(0, 86_400, size=rows)
    gaps = rng.integers(60, 600, size=(rows, history)).cumsum(1)
    hist_time = (request_time[:, None] - gaps).ravel()
    ids = {
        "request_id": np.arange(rows), "user_id": rng.integers(1, 50_000, rows),
        "item_id": rng.integers(1, 200_000, rows), "author_id": rng.integers(1, 50_000, rows),
        "request_time": request_time, "item_category": rng.integers(1, 1_000, rows),
        "user_region": rng.integers(1, 1_000, rows), "device": rng.integers(1, 100, rows),
    }
    columns: Dict[str, Any] = {k: pa.array(v.astype(np.int64)) for k, v in ids.items()}
    tag_offsets = pa.array(np.arange(0, 2 * rows + 1, 2, dtype=np.int32))
    columns["item_tags"] = pa.ListArray.from_arrays(tag_offsets, pa.array(rng.integers(1, 10_000, 2 * rows)))
    for name in ("item_duration", "user_active_days", "stay_time", "click_prob", "finish_prob", "like_prob"):
        columns[name] = pa.array(rng.random(rows, dtype=np.float32))
    for name in ("click", "finish", "like"):
        columns[name] = pa.array(rng.integers(0, 2, rows).astype(np.int8))
    columns["hist_item_id"] = lists(rng.integers(1, 200_000, n))
    columns["hist_author_id"] = lists(rng.integers(1, 50_000, n))
    columns["hist_item_category"] = lists(rng.integers(1, 1_000, n))
    columns["hist_action"] = lists(rng.integers(1, 4, n))
    columns["hist_time"] = lists(hist_time)
    return pa.Table.from_pydict({f.name: columns[f.name] for f in SCHEMA}, schema=SCHEMA)


def timed(fn: Callable[[], Any], warmup: int, repeats: int, max_seconds: float) -> Tuple[float, int]:
    """Median seconds of ``fn`` over up to ``repeats`` calls after ``warmup`` untimed ones; stops early once
    ``max_seconds`` have gone by and ``MIN_REPEATS`` calls are timed. Returns (median, calls timed)."""
    return alternating({"fn": fn}, warmup, repeats, max_seconds)["fn"]


def alternating(fns: Dict[str, Callable[[], Any]], warmup: int, repeats: int,
                max_seconds: float) -> Dict[str, Tuple[float, int]]:
    """Like ``timed``, for several functions called in turn (a, b, a, b, ...), so that the shared machine's drifts
    reach each alike: per name, the median seconds and the calls timed."""
    names = list(fns)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: Dict[str, List[float]] = {name: [] for name in names}
    start = time.perf_counter()
    while len(times[names[0]]) < repeats and (len(times[names[0]]) < MIN_REPEATS
                                               or time.perf_counter() - start < len(names) * max_seconds):
        for name in names:
            sync()
            t0 = time.perf_counter()
            fns[name]()
            sync()
            times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(t), len(t)) for name, t in times.items()}


def matmul_peak(n: int, dtype: torch.dtype, threads: int, device: torch.device, repeats: int = 5) -> float:
    """GFLOP/s of ``n X n @ n X n`` in ``dtype`` on ``device`` with ``threads`` threads (median of ``repeats``)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
    seconds, _ = timed(lambda: torch.mm(a, b), 1, repeats, 60.0)
    return 2 * n**3 / seconds / 1e9


def _job_config(cfg: SpeedConfig, case: SpeedCase) -> JobConfig:
    job = load_config(None)
    model = dataclasses.replace(job.model, layout=case.layout, levels=0, tower_kind=case.tower,
                                tower_precision=cfg.tower_precision)
    train = dataclasses.replace(job.train, batch_size=case.batch_size, pipeline=False, threads=cfg.threads)
    return dataclasses.replace(job, model=model, train=train)


def measure_tower(cfg: SpeedConfig, case: SpeedCase, job: JobConfig, spec: FeatureSpec,
                  device: torch.device) -> Dict[str, Any]:
    """The tower alone (``job``'s), forward + backward on random tokens (every slot real): seconds, FLOPs,
    GFLOP/s, in fp32 and under bf16 autocast."""
    tower = make_tower(case.tower, job.model.tower_config(spec), job.model.baseline_config(spec)).to(device)
    B, S, F, D = case.batch_size, case.tokens, spec.num_token_features, spec.sequence_dim
    tokens = torch.randn(B, S, F, D, device=device, requires_grad=True)
    mask = torch.ones(B, S, dtype=torch.bool, device=device)
    target = torch.randn(B, len(spec.target), D, device=device)
    step = step_of(tower, tokens, mask, target)

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    calls = record_matmuls(step)  # the same step's matmuls, replayed alone: the tower's ceiling (gemm_bound.py)
    replay_s, replay_flops = replay_seconds(calls, max(cfg.repeats, MIN_REPEATS)), matmul_flops(calls)
    out: Dict[str, Any] = {"flops": flops, "matmuls_alone": {
        "calls": len(calls), "flops": replay_flops, "seconds": replay_s, "gflops": replay_flops / replay_s / 1e9}}
    for dtype in ("fp32", "bf16"):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
            if dtype == "fp32" and case.tower == "pyramid_mixer":  # the former tower in turn with this one
                former = reference_tower(tower)
                former_step = step_of(former, tokens, mask, target)
                both = alternating({"now": step, "former": former_step}, cfg.warmup, cfg.repeats, cfg.max_seconds)
                seconds, runs = both["now"]
                out["former_fp32"] = {"seconds": both["former"][0], "runs": both["former"][1]}
                out["profile"] = profile_categories(step, device)
            else:
                seconds, runs = timed(step, cfg.warmup, cfg.repeats, cfg.max_seconds)
        out[dtype] = {"seconds": seconds, "runs": runs, "gflops": flops / seconds / 1e9}
    return out


def step_of(tower: torch.nn.Module, tokens: torch.Tensor, mask: torch.Tensor,
            target: torch.Tensor) -> Callable[[], None]:
    """One forward + backward of ``tower`` on these inputs."""
    def step() -> None:
        tower.zero_grad(set_to_none=True)
        tokens.grad = None
        tower(tokens, mask, target).sum().backward()
    return step


def measure_case(cfg: SpeedConfig, case: SpeedCase) -> Dict[str, Any]:
    """Training and eval examples/s of the full model, the tower alone, and this process's peak RSS."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(0)
    spec = resolve_spec(cfg.spec)
    env = init_distributed()
    job = _job_config(cfg, case)
    built = build(job, spec, env)
    B = case.batch_size
    table = full_history_logs(3 * B, case.behaviours)
    builder = BatchBuilder(spec, case.layout)
    batches = itertools.cycle([builder.build(table.slice(i * B, B)).to(env.device) for i in range(3)])
    loop = PlainLoop(built.dmp, built.optimizer, env.device)
    built.dmp.train()
    former: Optional[Dict[str, Any]] = None
    if case.tower == "pyramid_mixer":  # the same model with the former tower code, steps taken in turn
        def former_step() -> None:
            with former_code(built.dmp):
                loop.progress(batches)

        both = alternating({"now": lambda: loop.progress(batches), "former": former_step}, cfg.warmup,
                           cfg.repeats, cfg.max_seconds)
        (train_s, train_runs), (former_s, former_runs) = both["now"], both["former"]
        former = {"seconds": former_s, "runs": former_runs, "examples_per_s": B / former_s}
    else:
        train_s, train_runs = timed(lambda: loop.progress(batches), cfg.warmup, cfg.repeats, cfg.max_seconds)
    built.dmp.eval()
    with torch.no_grad():
        eval_s, eval_runs = timed(lambda: built.dmp(next(batches)), cfg.warmup, cfg.repeats, cfg.max_seconds)
    tower = measure_tower(cfg, case, job, spec, env.device)
    return {
        "name": case.name, "tower": case.tower, "behaviours": case.behaviours, "tokens": case.tokens, "batch": B,
        "levels": [dataclasses.asdict(lv) for lv in case.layout.levels],
        "parameters": built.num_parameters,
        "train": {"seconds": train_s, "runs": train_runs, "examples_per_s": B / train_s},
        "train_former_tower": former,
        "eval": {"seconds": eval_s, "runs": eval_runs, "examples_per_s": B / eval_s},
        "tower_alone": tower,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_device_bytes": torch.cuda.max_memory_allocated() if env.device.type == "cuda" else None,
    }


def _measure(args: Tuple[SpeedConfig, SpeedCase]) -> Dict[str, Any]:
    logging.basicConfig(level=logging.WARNING, force=True)
    return measure_case(*args)


def measure_loader(cfg: SpeedConfig, spec: FeatureSpec, layout: PyramidLayout) -> Dict[str, Any]:
    """Rows/s of the reader (Parquet file -> ``RankingBatch``) over ``cfg.loader_rows`` rows whose histories
    fill ``layout``; the median of three passes over the file."""
    torch.set_num_threads(cfg.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "logs.parquet"
        pq.write_table(full_history_logs(cfg.loader_rows, layout.coverage, seed=1), path,
                       row_group_size=max(cfg.batch_size, cfg.loader_rows // 4))
        reader = ParquetReader([path], spec, layout, ReadOptions(cfg.batch_size))

        def one_pass() -> None:
            rows = sum(b.labels.shape[0] for b in reader)
            assert rows == cfg.loader_rows, (rows, cfg.loader_rows)

        seconds, runs = timed(one_pass, 1, 3, cfg.max_seconds)
    return {"rows": cfg.loader_rows, "behaviours": layout.coverage, "seconds": seconds, "runs": runs,
            "rows_per_s": cfg.loader_rows / seconds, "workers": 0, "batch_size": cfg.batch_size}


def run_bench(cfg: SpeedConfig) -> Dict[str, Any]:
    """Measures every case, the matmul peaks and the loader; writes ``out_dir/speed.{json,md,png}``."""
    start = time.perf_counter()
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    peaks = {"fp32": matmul_peak(cfg.matmul_size, torch.float32, cfg.threads, device),
             "bf16": matmul_peak(cfg.matmul_size, torch.bfloat16, cfg.threads, device)}
    log.info("matmul peak with %d thread(s): fp32 %.0f GFLOP/s, bf16 %.0f GFLOP/s", cfg.threads,
             peaks["fp32"], peaks["bf16"])
    cases = cfg.cases()
    results: List[Dict[str, Any]] = []
    with tqdm(total=len(cases), desc="bench-speed", unit="case") as bar:
        for res in _run(cfg, cases):
            results.append(res)
            bar.write(f"{res['name']:<24} {res['behaviours']:>6} behaviours  train "
                      f"{res['train']['examples_per_s']:>8.0f} ex/s  eval {res['eval']['examples_per_s']:>8.0f} ex/s"
                      f"  tower {res['tower_alone']['fp32']['gflops']:>6.1f} GFLOP/s")
            bar.update(1)
    spec = resolve_spec(cfg.spec)
    loader = measure_loader(cfg, spec, cfg.largest)
    return write_results(cfg, peaks, results, loader, time.perf_counter() - start)


def _run(cfg: SpeedConfig, cases: List[SpeedCase]):  # type: ignore[no-untyped-def]
    if not cfg.isolate:
        for case in cases:
            yield measure_case(cfg, case)
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:  # one case at a time, each in a fresh process
        yield from pool.imap(_measure, [(cfg, case) for case in cases])


@job_main
def main(argv: Optional[List[str]] = None) -> None:
    bench_main(argv, "pmx-bench-speed", __doc__, "bench_speed.yaml", "batch_size=256 repeats=5",
               "batches and a Parquet file it generates (nothing else)",
               "out_dir/speed.{json,md,png} (default benchmarks/speed)", load_speed_config, run_bench)


if __name__ == "__main__":
    main()
