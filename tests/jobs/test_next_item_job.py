"""Next-item mode end to end: RecBole-format ratings -> converter -> pmx-train (leave-one-out, full softmax)
-> report; pmx-eval of the checkpoint gives the same metrics; every row read is accounted for; a model learns
a planted next-item rule that popularity cannot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pyramid_mixer.features.config_io import ConfigError
from pyramid_mixer.features.datasets.movielens import convert_movielens
from pyramid_mixer.jobs import eval as eval_job
from pyramid_mixer.jobs.config import load_config
from pyramid_mixer.jobs.train import summary, train

TINY = [
    "data.spec=movielens",
    "data.split=leave_one_out",
    "model.task=next_item",
    "model.layout.levels=[{start: 0, end: 4, group: 1}, {start: 4, end: 12, group: 4}]",
    "model.tower.out_dim=16",
    "train.batch_size=32",
    "train.shuffle_rows=256",
    "train.threads=1",
    "train.dense_lr=0.01",
    "eval.batch_size=16",
    "eval.sampled_negatives=10",
    "eval.splits=[valid, eval]",
]


def write_ratings(d: Path, users: int, items: int, events: int, seed: int = 0, walk: bool = False) -> None:
    """RecBole atomic ml-100k files. ``walk``: each user rates items ``s, s+1, s+2, ...`` (mod ``items``) in
    time order from a random start ``s`` (the next item is always the last one plus one); else random items."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    (d / "ml-100k.item").write_text("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n" +
                                    "".join(f"{i}\tMovie {i}\t{1950 + i % 50}\tDrama{' Comedy' * (i % 2)}\n"
                                            for i in range(1, items + 1)))
    (d / "ml-100k.user").write_text("user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n" +
                                    "".join(f"{u}\t{20 + u % 40}\t{'MF'[u % 2]}\tx{u % 5}\t0\n"
                                            for u in range(1, users + 1)))
    per_user = np.full(users, events // users)
    lines = []
    for u in range(1, users + 1):
        start = int(rng.integers(0, items))
        for k in range(per_user[u - 1]):
            item = (start + k) % items + 1 if walk else int(rng.integers(1, items + 1))
            lines.append(f"{u}\t{item}\t{int(rng.integers(1, 6))}\t{880_000_000 + 3600 * k + u}\n")
    order = rng.permutation(len(lines))  # the input file is not in time order
    (d / "ml-100k.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n" +
                                     "".join(lines[i] for i in order))


@pytest.fixture(scope="module")
def walk_run(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("next-item")
    write_ratings(root / "raw", users=40, items=60, events=800, walk=True)
    convert_movielens(root / "raw", root / "data", row_group_rows=200)
    config = load_config(None, TINY + [f"data.path={root / 'data'}", f"run_dir={root / 'run'}", "train.epochs=6"])
    return root, config, train(config)


def test_training_learns_a_next_item_rule_popularity_cannot(walk_run) -> None:  # type: ignore[no-untyped-def]
    _, _, result = walk_run
    full = result.reports["eval"].metrics["full"]
    pop = result.reports["eval"].metrics["pop_full"]
    assert full["HR@10"] >= 0.8 and pop["HR@10"] <= 0.5, (full, pop)
    assert result.reports["eval"].users == 40 and result.reports["valid"].users == 40
    for m in result.reports["eval"].metrics.values():
        assert all(0.0 <= v <= 1.0 for v in m.values()) and m["NDCG@10"] <= m["HR@10"] and m["MRR@10"] <= m["NDCG@10"]


def test_every_row_is_accounted_for_and_the_summary_says_so(walk_run) -> None:  # type: ignore[no-untyped-def]
    root, _, result = walk_run
    # 800 events: 40 users' last two are held out, the other 720 train, every epoch
    assert [r["rows_used"] for r in result.read] == [720] * 6 and all(r["rows_rejected"] == 0 for r in result.read)
    text = summary(result)
    assert "full: HR@10" in text and "sampled_popularity" in text and "40 users, 60 items" in text
    report = json.loads((root / "run" / "eval.json").read_text())
    assert report["metrics"]["full"]["HR@10"] == result.reports["eval"].metrics["full"]["HR@10"]
    assert (root / "run" / "eval.md").read_text().startswith("# Next-item eval split: 40 users, 60 items")


def test_pmx_eval_of_the_checkpoint_gives_the_same_metrics(walk_run, capsys) -> None:  # type: ignore[no-untyped-def]
    root, _, result = walk_run
    eval_job.main(["--set", *TINY, f"data.path={root / 'data'}", f"run_dir={root / 'run'}"])
    out = capsys.readouterr().out
    full = result.reports["eval"].metrics["full"]
    assert f"HR@10 {full['HR@10']:.4f}" in out and f"NDCG@20 {full['NDCG@20']:.4f}" in out


def test_leave_one_out_needs_the_events_after_column(tmp_path: Path) -> None:
    config = load_config(None, ["data.split=leave_one_out", "model.task=next_item", f"data.path={tmp_path}"])
    with pytest.raises(ConfigError, match="events_after"):
        train(config)
    with pytest.raises(ConfigError, match="candidate-free"):
        load_config(None, ["model.task=next_item", "model.tower_kind=din"])


def test_pop_ranks_unseen_items_by_training_count(walk_run) -> None:  # type: ignore[no-untyped-def]
    root, _, result = walk_run
    import pyarrow.dataset as ds

    from pyramid_mixer.ranking.next_item.metrics import topk_metrics

    rows = ds.dataset(root / "data").to_table().to_pylist()
    counts: dict = {}
    for r in rows:
        if r["events_after"] >= 2:
            counts[r["item_id"]] = counts.get(r["item_id"], 0) + 1
    catalogue = sorted({r["item_id"] for r in rows})
    ranks = []
    for r in sorted((r for r in rows if r["events_after"] == 0), key=lambda r: r["request_id"]):
        seen = set(r["hist_item_id"]) - {r["item_id"]}
        mine = counts.get(r["item_id"], 0)
        ranks.append(1 + sum(1 for i in catalogue if i != r["item_id"] and i not in seen and counts.get(i, 0) >= mine))
    assert result.reports["eval"].metrics["pop_full"] == pytest.approx(topk_metrics(np.array(ranks), (10, 20)))


def test_item_features_train_through_the_sharded_pipeline_and_eval_reads_them_too(walk_run, tmp_path: Path,
                                                                                   capsys) -> None:  # type: ignore[no-untyped-def]
    root, _, _ = walk_run
    sets = TINY + [f"data.path={root / 'data'}", f"run_dir={tmp_path / 'run'}", "model.next_item.item_features=true",
                   "model.next_item.loss=sampled_softmax", "model.next_item.negatives=8", "train.epochs=2"]
    result = train(load_config(None, sets))
    assert [r["rows_used"] for r in result.read] == [720] * 2
    full = result.reports["eval"].metrics["full"]
    eval_job.main(["--set", *sets])
    assert f"HR@10 {full['HR@10']:.4f}" in capsys.readouterr().out  # pmx-eval builds the same item vectors
    without = sets[:-4] + ["model.next_item.loss=sampled_softmax", "model.next_item.negatives=8",
                           f"run_dir={tmp_path / 'ids-only'}", "train.epochs=2"]
    assert train(load_config(None, without)).final_loss != result.final_loss  # the switch changes the computation
