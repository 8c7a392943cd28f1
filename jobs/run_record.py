"""What a run was trained with, and what a later job may change of it.

``pmx-train`` writes ``run_dir/config.json`` (and the feature spec it read, ``run_dir/spec.json``) once,
and puts both in every checkpoint's manifest (``trained_with``). A rerun in the same ``run_dir`` (a resume)
and ``pmx-eval`` compare their own config and spec with it, key by key (the spec's under ``spec.``): a
difference in how the model is built or trained (its tower, widths, spec, split, learning rates, seed, ...)
would load weights into another model or continue another run, so it is refused with the keys named; a
difference that changes neither (where reports go, threads, how long to train, how bad rows are handled,
what eval scores) is allowed and logged. Scoring other data (``data.*``) with a checkpoint is what
``pmx-eval`` is for, so eval allows it.

Example::

    >>> differences({"model": {"out_dim": 32}, "run_dir": "a"}, {"model": {"out_dim": 64}, "run_dir": "b"})
    [('model.out_dim', 32, 64), ('run_dir', 'a', 'b')]
    >>> refused(differences({"train": {"epochs": 1, "seed": 0}}, {"train": {"epochs": 3, "seed": 1}}), "resume")
    [('train.seed', 0, 1)]
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from pyramid_mixer.features.config_io import ConfigError, to_dict
from pyramid_mixer.features.spec import FeatureSpec
from pyramid_mixer.jobs.config import JobConfig

CONFIG, SPEC = "config.json", "spec.json"
log = logging.getLogger(__name__)

# Keys (or key prefixes) whose change leaves the model and its training as they were.
HARMLESS = ("source", "spec.source", "data.spec", "run_dir", "eval.", "train.threads", "train.pipeline",
            "train.checkpoint", "train.checkpoint_every", "train.epochs", "train.max_steps", "train.select.patience",
            "data.prefetch", "data.on_bad_rows", "data.max_bad_fraction", "data.on_bad_files",
            "model.compile_tower")
# What eval may change besides: the data it scores (the spec's content is compared apart), how the model
# was trained, and how the tower computes (the same weights).
HARMLESS_FOR_EVAL = HARMLESS + ("data.", "train.", "generate.", "model.tower_precision")

Difference = Tuple[str, Any, Any]


def _flat(d: Any, prefix: str = "") -> Dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix[:-1]: d}
    out: Dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}."))
    return out


def differences(recorded: Dict[str, Any], current: Dict[str, Any]) -> List[Difference]:
    """(key, recorded value, current value) for every key whose value differs, sorted by key."""
    a, b = _flat(recorded), _flat(current)
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if _norm(a.get(k)) != _norm(b.get(k))]


def _norm(v: Any) -> Any:
    return [_norm(x) for x in v] if isinstance(v, (list, tuple)) else v


def refused(diffs: List[Difference], job: str) -> List[Difference]:
    """The differences ``job`` (``resume`` or ``eval``) may not make."""
    allowed = HARMLESS_FOR_EVAL if job == "eval" else HARMLESS
    return [d for d in diffs if not any(d[0] == a or (a.endswith(".") and d[0].startswith(a)) for a in allowed)]


def record(config: JobConfig, spec: FeatureSpec) -> Dict[str, Any]:
    """What a run is trained with: the config's keys, and the spec under ``spec``."""
    return dict(to_dict(config), spec=to_dict(spec))


def recorded(run_dir: Path) -> Optional[Dict[str, Any]]:
    """The record of ``run_dir`` (``config.json`` with ``spec.json`` under ``spec``), or None when it has
    no ``config.json``."""
    out: Dict[str, Any] = {}
    for name, key in ((CONFIG, None), (SPEC, "spec")):
        path = Path(run_dir) / name
        if not path.is_file():
            if key is None:
                return None
            continue
        try:
            data = json.loads(path.read_text())
        except ValueError as e:
            raise ConfigError(f"{path}: unreadable ({e}); it records how the run was trained: restore it, or "
                              "train into a new run_dir") from None
        if key is None:
            out.update(data)
        else:
            out[key] = data
    return out


def write(run_dir: Path, config: JobConfig, spec: FeatureSpec) -> None:
    """Writes ``config.json`` and ``spec.json`` into ``run_dir`` unless they are there (a resume keeps the
    first run's)."""
    for name, data in ((CONFIG, to_dict(config)), (SPEC, to_dict(spec))):
        path = Path(run_dir) / name
        if not path.exists():
            tmp = path.with_name(f".{name}.tmp")
            tmp.write_text(json.dumps(data, indent=2))
            tmp.replace(path)


def check(trained_with: Optional[Dict[str, Any]], current: Dict[str, Any], job: str, where: str) -> None:
    """Refuses (``ConfigError``) a ``job`` whose config changes the model or its training against
    ``trained_with`` (None: nothing recorded, nothing to compare); logs the harmless differences."""
    if trained_with is None:
        return
    if "spec" not in trained_with:  # recorded before the spec was: compare the config alone
        current = {k: v for k, v in current.items() if k != "spec"}
    diffs = differences(trained_with, current)
    bad = refused(diffs, job)
    if bad:
        shown = "; ".join(f"{k}: {old!r} -> {new!r}" for k, old, new in bad[:6])
        more = f" (and {len(bad) - 6} more)" if len(bad) > 6 else ""
        todo = ("train into a new run_dir, or put these keys back" if job == "resume"
                else "evaluate with the config it was trained with (its config.json), or these keys put back")
        raise ConfigError(f"{where} was trained with another config: {shown}{more}; {todo}")
    for k, old, new in diffs:
        if k != "source":
            log.info("%s: %s differs from the run's (%r -> %r); it changes neither the model nor its training",
                     where, k, old, new)
