"""``bench-quality``: every tower and every Pyramid Mixer ablation, same budget, planted and real logs.

    python -m pyramid_mixer.jobs.bench.quality [--config bench.yaml] [--set seeds=[0] workers=1]

For each dataset (the planted synthetic logs, MovieLens-100k converted from RecBole's files) and each
variant (the Pyramid Mixer, its ablations, the baseline towers): every search candidate trains once with
the first seed and is scored on the valid split (unseen in training: the days before the test days, or
each user's rows before the test rows); the candidate with the best valid ``select`` metric (the packaged
config: click AUC+UAUC, the mean of both) trains with the other seeds too. The report gives test AUC,
UAUC and GAUC per label as mean ± std over the seeds, parameters and train time, and writes
``out_dir/quality.{json,md,png}``. Every variant gets the same candidates: no tower is tuned more than
another. Trials run ``workers`` at a time, one process each; finished trials are cached in ``work_dir``,
so a rerun of an interrupted benchmark picks up where it stopped (delete ``work_dir`` to start over).
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import hashlib
import importlib
import io
import json
import logging
import multiprocessing
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from tqdm import tqdm

from pyramid_mixer.features.config_io import to_dict
from pyramid_mixer.features.datasets.registry import convert, spec_path
from pyramid_mixer.features.spec import resolve_spec
from pyramid_mixer.jobs.bench.common import bench_main
from pyramid_mixer.jobs.bench.config import BenchConfig, BenchDataset, load_bench_config
from pyramid_mixer.jobs.bench.quality_tables import write_results
from pyramid_mixer.jobs.cli import job_main
from pyramid_mixer.jobs.config import JobConfig, load_config
from pyramid_mixer.jobs.next_item_eval import NextItemReport
from pyramid_mixer.jobs.selection import parse_metric
from pyramid_mixer.ranking.towers import effective_tower_config
from pyramid_mixer.ranking.towers.pyramid_mixer import PyramidMixer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trial:
    """One training run: a dataset, a variant, a search candidate and a seed."""

    dataset: str
    variant: str
    candidate: int
    seed: int
    config: Optional[str]
    overrides: Tuple[str, ...]
    run_dir: str

    @property
    def key(self) -> str:
        """A file name: readable names, and a hash of everything the trial trains with: its overrides, the
        job config and the feature spec they resolve to (``inputs``: an edited config file or spec is a new
        trial, never a stale cached one) and the code its tower kind runs (``code_fingerprint``)."""
        text = json.dumps([self.config, self.overrides, self.inputs, code_fingerprint(self.tower_kind)],
                          sort_keys=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.dataset}-{self.variant}").strip("_")
        return f"{name}-c{self.candidate}-s{self.seed}-" + hashlib.sha1(text.encode()).hexdigest()[:10]

    @functools.cached_property
    def job(self) -> JobConfig:
        """The job config the trial trains with."""
        return load_config(self.config, list(self.overrides))

    @functools.cached_property
    def inputs(self) -> str:
        """A hash of the job config as resolved (``effective_config``) and of the feature spec it reads (not
        where either was read from: an installed wheel and a checkout give the same hash)."""
        spec = to_dict(resolve_spec(self.job.data.spec))
        del spec["source"]
        return hashlib.sha1(json.dumps([effective_config(self.job), spec], sort_keys=True).encode()).hexdigest()

    @property
    def tower_kind(self) -> str:
        return self.job.model.tower_kind

    @functools.cached_property
    def model(self) -> str:
        """A hash of what the trial trains (``inputs`` and the code): equal for two trials that train the same
        model on the same data, such as a search candidate whose width the trial's tower does not read."""
        return hashlib.sha1(json.dumps([self.inputs, code_fingerprint(self.tower_kind)]).encode()).hexdigest()


def effective_config(config: JobConfig) -> Dict[str, Any]:
    """The job config as plain data, without its run directory, and with the config of its tower kind only,
    every field that tower does not read at its default (``ranking.towers.effective_tower_config``)."""
    out = to_dict(config)
    del out["run_dir"], out["source"]
    model = out["model"]
    kind = config.model.tower_kind
    tower = effective_tower_config(kind, config.model.tower, config.model.baseline)
    del model["tower"], model["baseline"]
    model["tower" if kind == "pyramid_mixer" else "baseline"] = to_dict(tower)
    return out


TOWERS = "ranking/towers/"


@functools.lru_cache(maxsize=None)
def code_fingerprint(tower_kind: Optional[str] = None) -> str:
    """A hash of the package's Python code (the benchmarks' own, ``jobs/bench/``, aside; comments and
    docstrings aside, ``_code_of``), so that the trial cache never serves a result trained by other code.
    With ``tower_kind``, of ``ranking/towers/`` only the registry (its ``__init__``) and the modules that
    kind's class imports there (``tower_sources``): a change to one tower's code retrains that tower's
    trials, not the others'."""
    towers = None if tower_kind is None else set(tower_sources(tower_kind))
    h = hashlib.sha1()
    for relative, path in _package_sources():
        if towers is None or not relative.startswith(TOWERS) or relative in towers:
            h.update(relative.encode() + _code_of(path))
    return h.hexdigest()[:12]


def _code_of(path: Path) -> bytes:
    """A source's syntax tree without its docstrings: editing a comment or a docstring changes no result,
    so it keeps every cached trial."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


def _package_sources() -> List[Tuple[str, Path]]:
    """Every Python source of the package (``jobs/bench/`` aside) as ``(features/..., path)``, sorted."""
    out = []
    for package in ("features", "embeddings", "ranking", "jobs"):
        root = Path(importlib.import_module(f"pyramid_mixer.{package}").__file__).parent  # type: ignore[arg-type]
        for path in sorted(root.rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if not (package == "jobs" and relative.startswith("bench/")):
                out.append((f"{package}/{relative}", path))
    return out


def tower_sources(tower_kind: str) -> List[str]:
    """The ``ranking/towers/`` sources a tower kind runs: the registry (``__init__.py``) and what it imports
    besides the tower classes' modules (``make_tower``'s helpers), the module of the kind's class, and every
    module of ``ranking/towers/`` those import, directly or through each other, with their packages'
    ``__init__.py`` (whose own imports are not followed: a package's imports are every tower's)."""
    from pyramid_mixer.ranking import towers as registry

    cls = PyramidMixer if tower_kind == "pyramid_mixer" else registry.BASELINES[tower_kind]
    classes = {PyramidMixer.__module__} | {c.__module__ for c in registry.BASELINES.values()}
    root = Path(registry.__file__).parent
    prefix = registry.__name__
    seen = {"__init__.py"}
    todo = [cls.__module__] + [m for m in _tower_imports(root / "__init__.py", prefix) if m not in classes]
    while todo:
        module = todo.pop()
        parts = module[len(prefix) + 1:].split(".") if module != prefix else []
        relative = "/".join(parts)
        if not parts or (root / relative).is_dir():  # a package: its __init__, not followed
            seen.add(f"{relative}/__init__.py" if parts else "__init__.py")
            continue
        if f"{relative}.py" in seen or not (root / f"{relative}.py").is_file():
            continue
        seen.add(f"{relative}.py")
        seen.update("/".join(parts[:d]) + "/__init__.py" for d in range(1, len(parts)))
        todo.extend(_tower_imports(root / f"{relative}.py", prefix))
    return sorted(TOWERS + s for s in seen)


def _tower_imports(path: Path, prefix: str) -> List[str]:
    """The modules under ``prefix`` that the source at ``path`` imports (``from package import module``
    names the module too)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out.extend(n for n in names if n == prefix or n.startswith(prefix + "."))
    return out


def prepare_data(bench: BenchConfig, ds: BenchDataset) -> Tuple[str, ...]:
    """Writes the dataset under ``work_dir/data/<name>`` unless an identical one is there; returns the
    overrides that point a job at it."""
    out = Path(bench.work_dir) / "data" / ds.name
    stamp_path = out / "bench-stamp.json"
    if ds.kind == "planted":
        job = load_config(ds.config, list(ds.overrides) + [f"data.path={out}"])
        stamp = {"kind": ds.kind, "generate": to_dict(job.generate)}
        extra: Tuple[str, ...] = ()
    else:
        job = load_config(ds.config, list(ds.overrides))
        # the code's fingerprint too: a converter that writes other columns converts again
        stamp = {"kind": ds.kind, "source": ds.source, "max_history": job.generate.max_history,
                 "code": code_fingerprint()}
        extra = () if job.data.spec != "default" else (f"data.spec={spec_path(ds.kind)}",)
    if not (stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp):
        _write_dataset(ds, job, out)
        stamp_path.write_text(json.dumps(stamp))
    return (f"data.path={out}",) + extra


def _write_dataset(ds: BenchDataset, job: Any, out: Path) -> None:
    if ds.kind == "planted":
        from pyramid_mixer.jobs.generate import run as generate

        (out / "bench-stamp.json").unlink(missing_ok=True)  # ours; generate replaces only its own files
        s = generate(job)
        log.info("%s: generated %s rows, oracle click AUC %.4f", ds.name, f"{s.rows:,}", s.oracle_click_auc)
        return
    for part in out.glob("part-*.parquet"):  # the benchmark's own earlier conversion (its stamp differs)
        part.unlink()
    s = convert(ds.kind, Path(ds.source) if ds.source else None, out, job.generate.max_history,
                say=lambda line: log.info("%s: %s", ds.name, line))
    log.info("%s: converted %s rows (%d users, %d items)", ds.name, f"{s.rows:,}", s.users, s.items)


def trials_for(bench: BenchConfig, data_overrides: Dict[str, Tuple[str, ...]],
               seeds: Callable[[Tuple[int, ...]], Sequence[int]],
               candidates: Callable[[str, str], Sequence[int]]) -> List[Trial]:
    """The trials for every dataset x variant x candidate that ``candidates`` picks, with the seeds that
    ``seeds`` picks from the dataset's."""
    out = []
    for ds in bench.datasets:
        for v in bench.variants:
            for c in candidates(ds.name, v.name):
                for seed in seeds(bench.seeds_for(ds)):
                    overrides = (ds.overrides + data_overrides[ds.name] + v.overrides + bench.search_for(ds)[c]
                                 + (f"train.seed={seed}", f"train.threads={bench.threads}"))
                    t = Trial(ds.name, v.name, c, seed, ds.config, overrides, "")
                    out.append(dataclasses.replace(t, run_dir=str(Path(bench.work_dir) / "runs" / t.key)))
    return out


def run_trial(trial: Trial) -> Dict[str, Any]:
    """Trains one trial in this process and returns its metrics on the valid and test splits."""
    from pyramid_mixer.jobs.train import train

    config = load_config(trial.config, list(trial.overrides) + [
        f"run_dir={trial.run_dir}", "train.checkpoint=false", "eval.predictions=false",
        "eval.splits=[valid, eval]"])
    threads = torch.get_num_threads()
    quiet = io.StringIO()
    try:
        with contextlib.redirect_stderr(quiet):
            result = train(config)
    except Exception as e:
        raise RuntimeError(f"trial {trial.key} failed: {e}\n{quiet.getvalue()[-2000:]}") from e
    finally:
        torch.set_num_threads(threads)
    splits = {("test" if split == "eval" else split): split_result(report) for split, report in result.reports.items()}
    return {
        "dataset": trial.dataset, "variant": trial.variant, "candidate": trial.candidate, "seed": trial.seed,
        "overrides": list(trial.overrides), "parameters": result.num_parameters,
        "train_seconds": result.seconds, "rows_trained": result.rows_trained, "epochs": result.epochs,
        "splits": splits,
        "selected": result.selection.get("best_at"),
    }


def split_result(report: Any) -> Dict[str, Any]:
    """What a trial keeps of one split's report: per-label AUCs (CTR) or the ranking metrics (next item)."""
    rows = {k: report.rows[k] for k in ("rows_read", "rows_used", "rows_rejected")}
    if isinstance(report, NextItemReport):
        return {"metrics": report.metrics, "users": report.users, "catalogue": report.catalogue, "rows": rows,
                "eval_seconds": report.seconds, "score_seconds": report.score_seconds}
    return {
        "labels": {m.label: {"auc": m.auc, "uauc": m.uauc, "gauc": m.gauc, "oracle_auc": m.oracle_auc,
                             "rows": m.rows, "uauc_users": m.uauc_users} for m in report.labels},
        "popularity_auc": report.popularity_auc,
        "rows": rows,
        "fusion_gate": report.fusion_gate,
    }


def valid_click_auc(result: Dict[str, Any]) -> float:
    """A CTR trial's selection score: the valid AUC of the first label."""
    labels = result["splits"]["valid"]["labels"]
    return float(labels[next(iter(labels))]["auc"])


def valid_score(select: str) -> Callable[[Dict[str, Any]], float]:
    """A CTR trial's selection score: ``select`` (``"click AUC+UAUC"``: the mean) on its valid split."""
    metric = parse_metric(select)

    def score(result: Dict[str, Any]) -> float:
        label = result["splits"]["valid"]["labels"][str(metric.label)]
        return sum(float(label[n]) for n in metric.names) / len(metric.names)

    return score


def trial_line(trial: Trial, res: Dict[str, Any]) -> str:
    """One progress line per finished trial: its valid and test headline metric and its train time."""
    head = f"{trial.dataset:>10} {trial.variant:<24} c{trial.candidate} s{trial.seed}  "
    valid, test = res["splits"]["valid"], res["splits"]["test"]
    if "metrics" in test:
        return head + (f"valid NDCG@10 {valid['metrics']['full']['NDCG@10']:.4f}  "
                       f"test NDCG@10 {test['metrics']['full']['NDCG@10']:.4f}  {res['train_seconds']:.0f}s")
    first = next(iter(test["labels"]))
    return head + (f"valid {first} AUC {valid['labels'][first]['auc']:.4f}  "
                   f"test AUC {test['labels'][first]['auc']:.4f}  {res['train_seconds']:.0f}s")


def _worker_init() -> None:
    logging.basicConfig(level=logging.WARNING)


def run_trials(bench: BenchConfig, trials: List[Trial], desc: str) -> List[Dict[str, Any]]:
    """Runs (or takes from the cache) every trial; ``workers`` processes at a time. Trials that train the
    same model (``Trial.model``) run once; the others take its result under their own names, marked
    ``same_model_as``."""
    cache = bench.trials_dir
    cache.mkdir(parents=True, exist_ok=True)
    done = {t.key: json.loads((cache / f"{t.key}.json").read_text()) for t in trials
            if (cache / f"{t.key}.json").is_file()}
    todo = [t for t in trials if t.key not in done]
    if done:
        log.info("%s: %d of %d trials taken from %s", desc, len(done), len(trials), cache)
    trained: Dict[str, Tuple[Trial, Dict[str, Any]]] = {t.model: (t, done[t.key]) for t in trials if t.key in done}
    runs: Dict[str, Trial] = {}
    for t in todo:
        if t.model not in trained:
            runs.setdefault(t.model, t)
    if len(runs) < len(todo):
        log.info("%s: %d trial(s) train the same model as another and are not run again", desc,
                 len(todo) - len(runs))
    with tqdm(total=len(runs), desc=desc, unit="trial") as bar:
        for trial, res in _run(bench, list(runs.values())):
            (cache / f"{trial.key}.json").write_text(json.dumps(res, indent=1))
            done[trial.key] = res
            trained[trial.model] = (trial, res)
            bar.write(trial_line(trial, res))
            bar.update(1)
    for t in todo:
        if t.key not in done:
            first, res = trained[t.model]
            done[t.key] = dict(res, dataset=t.dataset, variant=t.variant, candidate=t.candidate, seed=t.seed,
                               overrides=list(t.overrides), same_model_as=first.key)
            (cache / f"{t.key}.json").write_text(json.dumps(done[t.key], indent=1))
    return [done[t.key] for t in trials]


def _run(bench: BenchConfig, todo: List[Trial]) -> Iterator[Tuple[Trial, Dict[str, Any]]]:
    if bench.workers == 1 or len(todo) <= 1:
        for t in todo:
            yield t, run_trial(t)
        return
    os.environ["TQDM_DISABLE"] = "1"  # read when tqdm is imported: the workers' bars only, not this one
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(bench.workers, initializer=_worker_init, maxtasksperchild=8) as pool:
        yield from zip(todo, pool.imap(run_trial, todo))


def best_candidates(results: List[Dict[str, Any]], score_of: Callable[[Dict[str, Any]], float] = valid_click_auc
                    ) -> Dict[Tuple[str, str], int]:
    """Per (dataset, variant): the candidate with the best valid score (``score_of``; by default the valid AUC
    of the first label), the first candidate winning ties."""
    best: Dict[Tuple[str, str], Tuple[float, int]] = {}
    for r in results:
        score = score_of(r)
        key = (r["dataset"], r["variant"])
        if key not in best or score > best[key][0] or (score == best[key][0] and r["candidate"] < best[key][1]):
            best[key] = (score, r["candidate"])
    return {k: c for k, (_, c) in best.items()}


def search_and_seeds(bench: BenchConfig, score_of: Callable[[Dict[str, Any]], float] = valid_click_auc
                     ) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]], Dict[Tuple[str, str], int]]:
    """Every search candidate with the first seed, then the best one (``score_of`` on the valid split) with
    the other seeds. Returns (the winners' trials over every seed, every search trial, the winners)."""
    data = {ds.name: prepare_data(bench, ds) for ds in bench.datasets}
    every = {ds.name: range(len(bench.search_for(ds))) for ds in bench.datasets}
    search = run_trials(bench, trials_for(bench, data, lambda s: s[:1], lambda d, v: every[d]), "search")
    chosen = best_candidates(search, score_of)
    rest = run_trials(bench, trials_for(bench, data, lambda s: s[1:], lambda d, v: [chosen[(d, v)]]), "seeds")
    final = [r for r in search if r["candidate"] == chosen[(r["dataset"], r["variant"])]] + rest
    return final, search, chosen


def run_bench(bench: BenchConfig) -> Dict[str, Any]:
    """Runs the whole benchmark and writes ``out_dir/quality.{json,md,png}``; returns the JSON data."""
    start = time.perf_counter()
    final, search, chosen = search_and_seeds(bench, valid_score(bench.select))
    return write_results(bench, final, search, chosen, time.perf_counter() - start)


@job_main
def main(argv: Optional[List[str]] = None) -> None:
    bench_main(argv, "pmx-bench-quality", __doc__, "bench_quality.yaml", "seeds=[0] workers=1",
               "the planted logs it generates, and MovieLens-100k from a dataset's source directory or the "
               "recbole 1.2.1 wheel it fetches from PyPI",
               "out_dir/quality.{json,md,png} (default benchmarks/quality); data, trial runs and the trial cache "
               "under work_dir (default runs/bench-quality)", load_bench_config, run_bench)


if __name__ == "__main__":
    main()
