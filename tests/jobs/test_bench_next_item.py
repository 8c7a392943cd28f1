"""bench-nextitem: a one-seed smoke run of the packaged benchmark's every model on tiny RecBole-format data,
the datasets without files skipped, and the report's table, Pop row and findings computed from the trials."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import pytest

from pyramid_mixer.jobs.bench import next_item as bench_next_item
from pyramid_mixer.jobs.bench.next_item_tables import HEADLINE, POP, findings
from tests.jobs.test_next_item_job import write_ratings

TINY = [
    "model.layout.levels=[{start: 0, end: 4, group: 1}, {start: 4, end: 12, group: 4}]",
    "model.tower.out_dim=8",
    "model.baseline.hidden=8",
    "train.batch_size=64",
    "train.epochs=1",
    "eval.batch_size=64",
    "eval.sampled_negatives=10",
]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    tmp = tmp_path_factory.mktemp("bench-next-item")
    write_ratings(tmp / "raw", users=30, items=50, events=450, seed=4)
    packaged = bench_next_item.load_next_item_bench(None)
    published = [{"model": "SASRec (CE loss)", "protocol": "full", "metrics": {"HR@10": 0.1008, "NDCG@10": 0.0611},
                  "source": "a paper's log"}]
    others = [{"name": d.name, "kind": d.kind, "config": d.config, "source": ""}
              for d in packaged.datasets if d.kind != "movielens"]
    datasets = [{"name": "tiny", "kind": "movielens", "config": "next_item", "source": str(tmp / "raw"),
                 "overrides": TINY, "published": published}] + others
    bench = bench_next_item.load_next_item_bench(None, [
        f"out_dir={tmp / 'out'}", f"work_dir={tmp / 'work'}", "seeds=[0]", "workers=1",
        f"datasets={json.dumps(datasets)}", "search=[[train.dense_lr=0.003]]"])
    return {"bench": bench, "data": bench_next_item.run_bench(bench), "packaged": packaged}


def test_every_model_of_the_papers_table_is_reported(smoke: Dict[str, Any]) -> None:
    bench, data = smoke["bench"], smoke["data"]
    models = [v.name for v in smoke["packaged"].variants]
    assert models == ["pyramid_mixer", "mlp_mixer", "mlp4rec", "fmlp_rec", "bert4rec", "sasrec", "gru4rec", "fpmc",
                      "bpr_mf"]
    assert [v.name for v in bench.variants] == models
    saved = json.loads((Path(bench.out_dir) / "nextitem.json").read_text())
    assert saved["datasets"] == ["tiny"]  # ML-1M and Beauty have no files here: skipped
    assert saved["findings"] == data["findings"]
    table = saved["table"]["tiny"]
    assert set(table) == set(models) | {POP}
    for model, t in table.items():
        for protocol in ("full", "sampled_uniform", "sampled_popularity"):
            for metric in HEADLINE:
                assert 0.0 <= t["metrics"][protocol][metric]["mean"] <= 1.0, (model, protocol, metric)
        if model != POP:
            assert t["parameters"] > 0 and t["train_seconds"] > 0 and t["metrics"]["full"]["HR@10"]["n"] == 1
    assert saved["facts"]["tiny"]["users"] == 30 and saved["facts"]["tiny"]["test_rows"] == 30
    assert saved["facts"]["tiny"]["train_rows"] == 450 - 60
    md = (Path(bench.out_dir) / "nextitem.md").read_text()
    assert "Command: `" in md and "| Pop |" in md and "Sampled protocols" in md
    assert "| HR@10 | NDCG@10 | MRR@20 | HR@20 | NDCG@20 | train s |" in md  # eval.ks (10, 20): no HR@1 or HR@5
    assert "Published on exactly this data (not run here" in md
    assert "| SASRec (CE loss) | full | 0.1008 | 0.0611 | a paper's log |" in md
    assert saved["published"]["tiny"][0]["metrics"] == {"HR@10": 0.1008, "NDCG@10": 0.0611}
    assert (Path(bench.out_dir) / "nextitem.png").stat().st_size > 0


def test_findings_place_the_reference_by_its_means() -> None:
    def entry(mean: float, std: float) -> Dict[str, Any]:
        return {"metrics": {"full": {m: {"mean": mean, "std": std} for m in HEADLINE}}}

    table = {"pyramid_mixer": entry(0.05, 0.002), "sasrec": entry(0.06, 0.001), "Pop": entry(0.04, 0.0)}
    got = findings(table, "pyramid_mixer")
    assert [f["place"] for f in got] == [2, 2, 2] and got[0]["best_other"] == "sasrec"
    assert got[0]["margin"] == pytest.approx(-0.01) and got[0]["relative"] == pytest.approx(-1 / 6)
    assert got[0]["spread"] == 0.002
    table["pyramid_mixer"] = entry(0.07, 0.0)
    assert [f["place"] for f in findings(table, "pyramid_mixer")] == [1, 1, 1]


def test_a_config_without_runnable_datasets_says_what_to_give() -> None:
    packaged = bench_next_item.load_next_item_bench(None, [
        'datasets=[{name: ml-1m, kind: movielens-1m, config: next_item, source: ""}]'])
    with pytest.raises(ValueError, match="needs files"):
        bench_next_item.runnable(packaged)
