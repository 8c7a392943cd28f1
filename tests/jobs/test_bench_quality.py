"""bench-quality: a smoke run of the packaged benchmark (every variant, tiny data, one seed), the search's
choice on the valid split, the cache, and the report's arithmetic."""

from __future__ import annotations

import dataclasses
import json
import shutil
import statistics
from pathlib import Path
from typing import Any, Dict, List

import pytest

from pyramid_mixer.features.config_io import ConfigError
from pyramid_mixer.features.spec import default_spec_path
from pyramid_mixer.jobs.bench import quality as bench_quality
from pyramid_mixer.jobs.bench.config import load_bench_config
from pyramid_mixer.jobs.bench.quality_tables import aggregate, findings
from tests.features.test_convert import write_ml100k

TINY_MODEL = [
    "model.tower.out_dim=8",
    "model.over_arch.hidden=[8]",
    "train.batch_size=64",
    "eval.batch_size=256",
]


def tiny_bench(tmp_path: Path, seeds: str = "[0]", workers: int = 2) -> List[str]:
    planted = TINY_MODEL + [
        "generate.rows=1200", "generate.users=120", "generate.items=300", "generate.authors=60",
        "generate.max_history=24", "data.eval_days=1", "data.valid_days=1",
        "model.layout.levels=[{start: 0, end: 4, group: 1}, {start: 4, end: 24, group: 5}]",
    ]
    movielens = TINY_MODEL + [  # the fixture's 80 ratings span 12 minutes
        "generate.max_history=16", "data.eval_days=0.0015", "data.valid_days=0.0015",
        "model.layout.levels=[{start: 0, end: 4, group: 1}, {start: 4, end: 16, group: 4}]",
    ]
    write_ml100k(tmp_path / "ml", seed=3)
    datasets = [
        {"name": "planted", "kind": "planted", "overrides": planted},
        {"name": "movielens", "kind": "movielens", "source": str(tmp_path / "ml"), "overrides": movielens},
    ]
    return [f"out_dir={tmp_path / 'out'}", f"work_dir={tmp_path / 'work'}", f"seeds={seeds}",
            f"workers={workers}", f"datasets={json.dumps(datasets)}", "search=[[train.dense_lr=0.003]]"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    tmp = tmp_path_factory.mktemp("bench")
    bench = load_bench_config(None, tiny_bench(tmp))
    return {"bench": bench, "data": bench_quality.run_bench(bench), "tmp": tmp}


def test_smoke_reports_every_variant_on_every_dataset(smoke: Dict[str, Any]) -> None:
    bench, data = smoke["bench"], smoke["data"]
    out = Path(bench.out_dir)
    names = [v.name for v in bench.variants]
    assert {"pyramid_mixer", "mean", "din", "sasrec", "gru", "mixer", "mlp4rec", "none"} <= set(names)
    assert len([v for v in bench.variants if v.role == "ablation"]) == 5
    saved = json.loads((out / "quality.json").read_text())
    assert list(saved["tables"]) == ["planted", "movielens"]
    text = (out / "quality.md").read_text()
    for ds, table in saved["tables"].items():
        assert list(table) == names
        assert len(saved["findings"][ds]) == len(names) - 1
        for row in table.values():
            assert 0.0 < row["labels"]["click"]["auc"]["mean"] < 1.0 and row["parameters"] > 0
    for name in names:
        assert f"| {name} |" in text
    for table in saved["tables"].values():  # the reference's learned fusion, per layer and token feature
        gate = table["pyramid_mixer"]["fusion_gate"]
        assert list(gate) == ["level0.layer0", "level1.layer0"]
        assert all(0.0 < a < 1.0 for shares in gate.values() for a in shares.values())
        assert table["din"]["fusion_gate"] == table["-fusion gate (sum)"]["fusion_gate"] == {}
    assert text.count("adaptive fusion learned") == 2
    assert saved["datasets"]["planted"]["oracle_auc"]["click"] > 0.5  # planted data knows its ceiling
    assert saved["datasets"]["movielens"]["oracle_auc"] == {}
    assert (out / "quality.png").stat().st_size > 10_000
    assert data["markdown_summary"].startswith("# Ranking quality")


def test_smoke_trials_read_every_row_and_differ_by_variant(smoke: Dict[str, Any]) -> None:
    cache = Path(smoke["bench"].work_dir) / "trials"
    trials = [json.loads(p.read_text()) for p in cache.glob("*.json")]
    assert len(trials) == 2 * len(smoke["bench"].variants)
    for t in trials:
        for split in ("valid", "test"):
            rows = t["splits"][split]["rows"]
            assert rows["rows_read"] == rows["rows_used"] + rows["rows_rejected"] > 0
    planted = {t["variant"]: t["splits"]["test"]["labels"]["click"]["auc"] for t in trials
               if t["dataset"] == "planted"}
    assert len(set(planted.values())) > len(planted) // 2  # the variants compute different things


def test_rerun_takes_finished_trials_from_the_cache(smoke: Dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_run(trial: Any) -> Dict[str, Any]:
        raise AssertionError(f"{trial.key} ran again")

    monkeypatch.setattr(bench_quality, "run_trial", must_not_run)
    again = bench_quality.run_bench(smoke["bench"])
    assert again["tables"] == smoke["data"]["tables"]


def test_a_trial_cache_moved_elsewhere_still_serves_the_finished_trials(
        smoke: Dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_run(trial: Any) -> Dict[str, Any]:
        raise AssertionError(f"{trial.key} ran again")

    monkeypatch.setattr(bench_quality, "run_trial", must_not_run)
    own = smoke["bench"].trials_dir
    carried = tmp_path / "carried"
    shutil.move(str(own), str(carried))  # as if committed and checked out on another machine
    try:
        again = bench_quality.run_bench(dataclasses.replace(smoke["bench"], trial_cache=str(carried)))
        assert again["tables"] == smoke["data"]["tables"]
        assert not own.exists()
    finally:
        shutil.move(str(carried), str(own))


def test_a_trial_hashes_the_code_of_its_own_tower_kind_only() -> None:
    pm, mixer, none = (set(bench_quality.tower_sources(k)) for k in ("pyramid_mixer", "mixer", "none"))
    assert {"ranking/towers/pyramid_mixer.py", "ranking/towers/cross_period.py", "ranking/towers/readouts.py",
            "ranking/towers/mixer_layer.py", "ranking/towers/__init__.py"} <= pm
    assert not any(p.startswith("ranking/towers/baselines/") and not p.endswith(("__init__.py", "config.py"))
                   for p in pm)
    assert {"ranking/towers/baselines/mixers.py", "ranking/towers/mixer_layer.py",
            "ranking/towers/init_streams.py"} <= mixer  # a shared layer counts for both; make_tower's streams for all
    assert "ranking/towers/pyramid_mixer.py" not in mixer | none and "ranking/towers/init_streams.py" in none
    assert "ranking/towers/baselines/mixers.py" not in none
    prints = {k: bench_quality.code_fingerprint(k) for k in ("pyramid_mixer", "mixer", "none")}
    assert len(set(prints.values()) | {bench_quality.code_fingerprint()}) == 4
    trial = bench_quality.Trial("d", "v", 0, 0, None, ("model.tower_kind=none",), "")
    assert trial.tower_kind == "none"


def test_the_code_hash_reads_code_not_comments_or_docstrings(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "c.py"
    a.write_text('"""Module."""\nx = 1  # one\n\n\ndef f():\n    """Doc."""\n    return x\n')
    b.write_text('"""Other words."""\n# a new comment\nx = 1\n\n\ndef f():\n    """Other doc."""\n    return x\n')
    c.write_text('"""Module."""\nx = 2  # one\n\n\ndef f():\n    """Doc."""\n    return x\n')
    assert bench_quality._code_of(a) == bench_quality._code_of(b) != bench_quality._code_of(c)


def test_trial_keys_change_with_the_code_and_the_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    trial = bench_quality.Trial("planted", "-fusion gate (sum)", 0, 1, None, ("train.epochs=1",), "")
    key = trial.key
    assert key.startswith("planted--fusion_gate_sum-c0-s1-") and " " not in key
    assert bench_quality.Trial("planted", "-fusion gate (sum)", 0, 1, None, ("train.epochs=2",), "").key != key
    monkeypatch.setattr(bench_quality, "code_fingerprint", lambda kind=None: "other code")
    assert trial.key != key


def test_trial_keys_change_with_the_spec_and_config_files_they_read(tmp_path: Path) -> None:
    spec, config = tmp_path / "spec.yaml", tmp_path / "job.yaml"
    spec.write_text(default_spec_path().with_name("movielens.yaml").read_text())
    config.write_text(f"data: {{spec: {spec}}}\ntrain: {{epochs: 1}}\n")

    def key() -> str:  # a new Trial each time: nothing cached between the edits
        return bench_quality.Trial("d", "v", 0, 0, str(config), ("train.seed=0",), "").key

    first = key()
    assert key() == first
    spec.write_text(spec.read_text().replace("dim: 16", "dim: 8"))
    assert key() != first
    second = key()
    config.write_text(config.read_text().replace("epochs: 1", "epochs: 2"))
    assert key() not in (first, second)


def fake(variant: str, candidate: int, seed: int, valid: float, test: float) -> Dict[str, Any]:
    label = {"auc": test, "uauc": test - 0.01, "gauc": test - 0.02, "oracle_auc": None, "rows": 10,
             "uauc_users": 3}
    return {"dataset": "d", "variant": variant, "candidate": candidate, "seed": seed, "overrides": [],
            "parameters": 7, "train_seconds": 1.0, "rows_trained": 5,
            "splits": {"valid": {"labels": {"click": dict(label, auc=valid)}},
                       "test": {"labels": {"click": label}}}}


def test_search_chooses_on_the_valid_split_never_the_test_split() -> None:
    results = [fake("a", 0, 0, valid=0.70, test=0.90), fake("a", 1, 0, valid=0.72, test=0.60),
               fake("b", 0, 0, valid=0.65, test=0.65), fake("b", 1, 0, valid=0.65, test=0.99)]
    assert bench_quality.best_candidates(results) == {("d", "a"): 1, ("d", "b"): 0}  # a tie keeps the first


def test_report_means_stds_and_deltas() -> None:
    final = [fake("ref", 0, s, 0.7, t) for s, t in enumerate([0.70, 0.72, 0.74])]
    final += [fake("abl", 1, s, 0.7, t) for s, t in enumerate([0.69, 0.70, 0.71])]
    table = aggregate(final)["d"]
    auc = table["ref"]["labels"]["click"]["auc"]
    assert auc["mean"] == pytest.approx(0.72) and auc["std"] == pytest.approx(statistics.stdev([0.70, 0.72, 0.74]))
    (f,) = findings(table, {"ref": "tower", "abl": "ablation"}, "ref")
    assert f["variant"] == "abl" and f["auc_delta"] == pytest.approx(-0.02)
    assert f["auc_spread"] == pytest.approx(0.02)
    # paired by seed: deltas -0.01, -0.02, -0.03; the reference wins on all three
    assert f["seeds"] == 3 and f["auc_reference_wins"] == 3
    assert f["auc_paired_std"] == pytest.approx(statistics.stdev([-0.01, -0.02, -0.03]))
    flipped = [fake("abl", 1, s, 0.7, t) for s, t in enumerate([0.71, 0.70, 0.69])]
    (g,) = findings(aggregate(final[:3] + flipped)["d"], {"ref": "tower", "abl": "ablation"}, "ref")
    assert g["auc_delta"] == pytest.approx(-0.02) and g["auc_reference_wins"] == 2  # +0.01, -0.02, -0.05
    assert g["auc_paired_std"] == pytest.approx(statistics.stdev([0.01, -0.02, -0.05]))
    other_seeds = [fake("abl", 1, s, 0.7, 0.7) for s in (5, 6, 7)]
    (h,) = findings(aggregate(final[:3] + other_seeds)["d"], {"ref": "tower", "abl": "ablation"}, "ref")
    assert h["seeds"] == 0 and "auc_reference_wins" not in h  # nothing to pair


def test_config_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="reference='tower_x' is not a variant"):
        load_bench_config(None, ["reference=tower_x"])
    with pytest.raises(ConfigError, match="kind='csv'"):
        load_bench_config(None, ['datasets=[{name: x, kind: csv}]'])
    with pytest.raises(ConfigError, match="unknown key"):
        load_bench_config(None, ["seedz=[1]"])
    with pytest.raises(ConfigError, match=r"datasets\[x\].seeds=\[1, 1\]: seeds must be distinct"):
        load_bench_config(None, ["datasets=[{name: x, kind: planted, seeds: [1, 1]}]"])
    with pytest.raises(ConfigError, match=r"^seeds=\[0, 0\]: seeds must be distinct"):
        load_bench_config(None, ["seeds=[0, 0]"])


def test_a_seeds_override_sets_every_datasets_seeds() -> None:
    """``--set seeds=[0]`` means one seed everywhere, also on a dataset whose entry in the file names its own
    (the packaged planted entry runs 5)."""
    packaged = load_bench_config(None)
    assert max(len(packaged.seeds_for(d)) for d in packaged.datasets) == 5
    bench = load_bench_config(None, ["seeds=[7]"])
    assert [bench.seeds_for(d) for d in bench.datasets] == [(7,)] * len(packaged.datasets)


def test_a_dataset_may_search_its_own_candidates() -> None:
    bench = load_bench_config(None, ["search=[[train.dense_lr=0.001]]", "datasets=[{name: a, kind: planted}, "
                                     "{name: b, kind: movielens, search: [[train.dense_lr=0.002], "
                                     "[train.dense_lr=0.002, model.baseline.hidden=8]]}]"])
    a, b = bench.datasets
    assert len(bench.search_for(a)) == 1 and len(bench.search_for(b)) == 2
    trials = bench_quality.trials_for(bench, {"a": (), "b": ()}, lambda s: s[:1],
                                      lambda d, v: range(len(bench.search_for(bench.datasets[d == "b"]))))
    assert {t.candidate for t in trials if t.dataset == "a"} == {0}
    assert all("train.dense_lr=0.001" in t.overrides for t in trials if t.dataset == "a")
    wide = [t for t in trials if t.dataset == "b" and t.candidate == 1]
    assert len(wide) == len(bench.variants) and all("model.baseline.hidden=8" in t.overrides for t in wide)


def test_a_dataset_may_run_more_seeds_than_the_others() -> None:
    bench = load_bench_config(None, ["seeds=[0, 1]", "datasets=[{name: a, kind: planted, seeds: [0, 1, 2, 3]}, "
                                     "{name: b, kind: movielens}]"])
    data = {"a": (), "b": ()}
    search = bench_quality.trials_for(bench, data, lambda s: s[:1], lambda d, v: [0, 1])
    assert {(t.dataset, t.seed, t.candidate) for t in search} == {(d, 0, c) for d in "ab" for c in (0, 1)}
    rest = bench_quality.trials_for(bench, data, lambda s: s[1:], lambda d, v: [1])
    seeds = {d: sorted({t.seed for t in rest if t.dataset == d}) for d in "ab"}
    assert seeds == {"a": [1, 2, 3], "b": [1]}
    assert len(rest) == (3 + 1) * len(bench.variants) and all(f"train.seed={t.seed}" in t.overrides for t in rest)


def test_a_candidate_that_changes_nothing_for_a_tower_runs_once(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``model.baseline.hidden`` widens DIN, but neither mlp4rec (no hidden MLP) nor the Pyramid Mixer (not
    a baseline) reads it: their second candidate is their first, trained once and reported under both."""
    ran: List[Any] = []

    def counting(trial: Any) -> Dict[str, Any]:
        ran.append(trial)
        return dict(fake(trial.variant, trial.candidate, trial.seed, 0.6 + 0.01 * len(ran), 0.7), dataset="a")

    monkeypatch.setattr(bench_quality, "run_trial", counting)
    bench = load_bench_config(None, [
        f"work_dir={tmp_path}", "workers=1", "datasets=[{name: a, kind: planted}]",
        "search=[[train.dense_lr=0.001], [train.dense_lr=0.001, model.baseline.hidden=128]]",
        "variants=[{name: pm}, {name: m4, overrides: [model.tower_kind=mlp4rec]}, "
        "{name: din, overrides: [model.tower_kind=din]}]", "reference=pm"])
    trials = bench_quality.trials_for(bench, {"a": ()}, lambda s: s[:1], lambda d, v: [0, 1])
    results = bench_quality.run_trials(bench, trials, "search")
    assert sorted((t.variant, t.candidate) for t in ran) == [("din", 0), ("din", 1), ("m4", 0), ("pm", 0)]
    by = {(r["variant"], r["candidate"]): r for r in results}
    assert len(by) == 6
    for v in ("pm", "m4"):
        twin = by[(v, 1)]
        assert twin["same_model_as"] == next(t.key for t in trials if (t.variant, t.candidate) == (v, 0))
        assert twin["splits"] == by[(v, 0)]["splits"] and "model.baseline.hidden=128" in twin["overrides"]
    assert "same_model_as" not in by[("din", 1)]
    assert bench_quality.best_candidates(results)[("a", "m4")] == 0  # a tie keeps the first candidate
    monkeypatch.setattr(bench_quality, "run_trial", lambda t: pytest.fail(f"{t.key} ran again"))
    assert bench_quality.run_trials(bench, trials, "search") == results  # all six from the cache


def test_the_search_chooses_on_the_configured_valid_metric() -> None:
    def trial(candidate: int, auc: float, uauc: float) -> Dict[str, Any]:
        return {"dataset": "d", "variant": "v", "candidate": candidate,
                "splits": {"valid": {"labels": {"click": {"auc": auc, "uauc": uauc}}}}}

    results = [trial(0, 0.80, 0.60), trial(1, 0.78, 0.66)]
    assert bench_quality.best_candidates(results, bench_quality.valid_score("click AUC")) == {("d", "v"): 0}
    assert bench_quality.best_candidates(results, bench_quality.valid_score("click AUC+UAUC")) == {("d", "v"): 1}
    with pytest.raises(ConfigError, match="chooses on a CTR metric"):
        load_bench_config(None, ["select=NDCG@10"])
