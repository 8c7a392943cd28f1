"""Tests of the synthetic Douyin-style log generator: schema, determinism, invariants, planted signal."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from pyramid_mixer.features.datasets import synthetic
from pyramid_mixer.features.datasets.synthetic import (
    SCHEMA,
    GenerateSummary,
    SyntheticConfig,
    generate,
    item_catalog,
    oracle_columns,
)

LIST = pa.list_(pa.int64())
EXPECTED_SCHEMA = [
    ("request_id", pa.int64()),
    ("user_id", pa.int64()),
    ("item_id", pa.int64()),
    ("author_id", pa.int64()),
    ("request_time", pa.int64()),
    ("item_category", pa.int64()),
    ("item_tags", LIST),
    ("user_region", pa.int64()),
    ("device", pa.int64()),
    ("item_duration", pa.float32()),
    ("user_active_days", pa.float32()),
    ("click", pa.int8()),
    ("finish", pa.int8()),
    ("like", pa.int8()),
    ("stay_time", pa.float32()),
    ("hist_item_id", LIST),
    ("hist_author_id", LIST),
    ("hist_item_category", LIST),
    ("hist_action", LIST),
    ("hist_time", LIST),
    ("click_prob", pa.float32()),
    ("finish_prob", pa.float32()),
    ("like_prob", pa.float32()),
]
HIST = ["hist_item_id", "hist_author_id", "hist_item_category", "hist_action", "hist_time"]

SMALL = SyntheticConfig(
    rows=3_000, users=300, items=3_000, authors=300, categories=16, regions=5, devices=3,
    max_history=64, days=60, impression_days=5, rows_per_file=1_000, row_group_rows=300, users_per_chunk=64,
)
SIGNAL = SyntheticConfig(rows=20_000, users=1_000, items=5_000, authors=800)


def _write(cfg: SyntheticConfig, out: Path) -> Tuple[GenerateSummary, pa.Table]:
    summary = generate(cfg, out)
    return summary, pa.concat_tables([pq.read_table(f) for f in summary.files])


def _offsets(table: pa.Table, column: str) -> Tuple[np.ndarray, np.ndarray]:
    """Returns ``(offsets int64 [R+1], flat values)`` of a list column."""
    arr = table.column(column).combine_chunks()
    offsets = arr.offsets.to_numpy().astype(np.int64)
    return offsets - offsets[0], arr.flatten().to_numpy()


def _head_counts(offsets: np.ndarray, values: np.ndarray, k: int, n_values: int) -> np.ndarray:
    """Counts of each value among the first ``k`` list entries of every row: ``R X n_values``."""
    length = np.diff(offsets)
    kept = np.minimum(length, k)
    kept_off = np.concatenate([[0], np.cumsum(kept)])
    row = np.repeat(np.arange(length.shape[0]), kept)
    pos = offsets[row] + np.arange(kept_off[-1]) - kept_off[row]
    counts = np.bincount(row * n_values + values[pos], minlength=length.shape[0] * n_values)
    return counts.reshape(length.shape[0], n_values)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Tuple[GenerateSummary, pa.Table]:
    return _write(SMALL, tmp_path_factory.mktemp("small"))


@pytest.fixture(scope="module")
def signal(tmp_path_factory) -> Tuple[GenerateSummary, pa.Table]:
    return _write(SIGNAL, tmp_path_factory.mktemp("signal"))


def test_schema_is_the_input_contract(small) -> None:
    summary, _ = small
    assert [(f.name, f.type) for f in SCHEMA] == EXPECTED_SCHEMA
    for path in summary.files:
        schema = pq.read_schema(path)
        assert [(f.name, f.type) for f in schema] == EXPECTED_SCHEMA
        assert schema.field("hist_item_id").type.value_type == pa.int64()


def test_oracle_columns() -> None:
    assert oracle_columns() == {"click": "click_prob", "finish": "finish_prob", "like": "like_prob"}
    assert set(oracle_columns().values()) <= set(SCHEMA.names)


def test_same_seed_same_bytes_other_seed_other_rows(tmp_path, small) -> None:
    summary, table = small
    again, table_again = _write(SMALL, tmp_path / "again")
    assert table_again.equals(table)
    assert [Path(f).read_bytes() for f in again.files] == [Path(f).read_bytes() for f in summary.files]
    _, other = _write(dataclasses.replace(SMALL, seed=1), tmp_path / "other")
    assert not other.equals(table)
    assert not np.array_equal(other.column("item_id").to_numpy(), table.column("item_id").to_numpy())


def test_files_row_groups_and_row_count(small) -> None:
    summary, table = small
    assert summary.rows == table.num_rows == SMALL.rows
    assert [Path(f).name for f in summary.files] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    for path in summary.files:
        meta = pq.ParquetFile(path).metadata
        groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        assert groups == [300, 300, 300, 100]
    ids = table.column("request_id").to_numpy()
    assert np.array_equal(ids, np.arange(1, SMALL.rows + 1))


def test_history_invariants(small) -> None:
    _, table = small
    offsets, times = _offsets(table, "hist_time")
    for name in HIST[:-1]:
        other_offsets, _ = _offsets(table, name)
        assert np.array_equal(other_offsets, offsets), name
    length = np.diff(offsets)
    assert length.max() <= SMALL.max_history
    row = np.repeat(np.arange(length.shape[0]), length)
    request = table.column("request_time").to_numpy()
    assert (times < request[row]).all()
    same_row = row[1:] == row[:-1]
    assert (times[1:][same_row] <= times[:-1][same_row]).all()  # non-increasing: most recent first
    assert times.min() >= SMALL.start_time
    _, actions = _offsets(table, "hist_action")
    assert set(np.unique(actions)) <= {1, 2, 3}


def test_ids_ranges_and_catalog_consistency(small) -> None:
    _, table = small
    col = lambda name: table.column(name).to_numpy()  # noqa: E731
    for name, hi in [("user_id", SMALL.users), ("item_id", SMALL.items), ("author_id", SMALL.authors),
                     ("item_category", SMALL.categories), ("user_region", SMALL.regions), ("device", SMALL.devices)]:
        assert col(name).min() >= 1 and col(name).max() <= hi, name
    catalog = item_catalog(SMALL)
    item_author = catalog.column("author_id").to_numpy()
    item_category = catalog.column("item_category").to_numpy()
    assert np.array_equal(col("author_id"), item_author[col("item_id") - 1])
    assert np.array_equal(col("item_category"), item_category[col("item_id") - 1])
    _, hist_items = _offsets(table, "hist_item_id")
    _, hist_authors = _offsets(table, "hist_author_id")
    assert hist_items.min() >= 1 and hist_items.max() <= SMALL.items
    assert np.array_equal(hist_authors, item_author[hist_items - 1])
    _, hist_categories = _offsets(table, "hist_item_category")
    assert np.array_equal(hist_categories, item_category[hist_items - 1])
    tag_offsets, tags = _offsets(table, "item_tags")
    assert set(np.unique(np.diff(tag_offsets))) <= {1, 2, 3, 4}
    assert tags.min() >= 1 and tags.max() <= 4 * SMALL.categories
    window = SMALL.start_time + (SMALL.days - SMALL.impression_days) * 86_400
    assert col("request_time").min() >= window  # impressions happen in the last impression_days
    assert col("request_time").max() < SMALL.start_time + SMALL.days * 86_400
    assert (col("user_active_days") >= 0).all() and (col("item_duration") > 0).all()


def test_labels_and_probabilities(small) -> None:
    summary, table = small
    col = lambda name: table.column(name).to_numpy()  # noqa: E731
    click, finish, like = col("click"), col("finish"), col("like")
    assert set(np.unique(click)) == {0, 1}
    assert (finish <= click).all() and (like <= click).all()  # finish and like follow a click
    for prob in ["click_prob", "finish_prob", "like_prob"]:
        assert ((col(prob) > 0) & (col(prob) < 1)).all()
    assert (col("finish_prob") <= col("click_prob")).all() and (col("like_prob") <= col("click_prob")).all()
    assert (col("stay_time") > 0).all()
    assert summary.click_rate == pytest.approx(click.mean())
    assert summary.finish_rate == pytest.approx(finish.mean())
    assert summary.like_rate == pytest.approx(like.mean())
    assert summary.mean_history == pytest.approx(np.diff(_offsets(table, "hist_item_id")[0]).mean())
    assert summary.users == len(np.unique(col("user_id")))
    assert summary.oracle_click_auc == pytest.approx(roc_auc_score(click, col("click_prob")), abs=1e-12)


def test_history_lengths_are_varied(signal) -> None:
    _, table = signal
    length = np.diff(_offsets(table, "hist_item_id")[0])
    assert 0.01 < (length < 32).mean() < 0.2  # new and quiet users
    assert 0.3 < (length == SIGNAL.max_history).mean() < 0.95  # a share hits the cap
    assert np.median(length) >= 100  # most rows have long histories


def test_planted_signal_oracle_and_rates(signal) -> None:
    summary, table = signal
    assert summary.oracle_click_auc > 0.75
    assert 0.15 < summary.click_rate < 0.4
    assert 0.05 < summary.finish_rate < summary.click_rate
    assert 0.02 < summary.like_rate < summary.click_rate
    for label, prob in oracle_columns().items():
        assert roc_auc_score(table.column(label).to_numpy(), table.column(prob).to_numpy()) > 0.7, label


def _period_gaps(cfg: SyntheticConfig, table: pa.Table) -> Tuple[float, float]:
    """Returns ``(click-rate gap when the candidate's category leads the last 8 behaviours, AUC of the
    candidate category's share in the whole history)``."""
    item_category = item_catalog(cfg).column("item_category").to_numpy()
    offsets, items = _offsets(table, "hist_item_id")
    categories = item_category[items - 1]
    candidate = table.column("item_category").to_numpy()
    click = table.column("click").to_numpy()
    rows = np.arange(candidate.shape[0])
    head = _head_counts(offsets, categories, 8, cfg.categories + 1)
    leads = (head.argmax(axis=1) == candidate) & (head.sum(axis=1) > 0)
    gap = click[leads].mean() - click[~leads].mean()
    full = _head_counts(offsets, categories, cfg.max_history, cfg.categories + 1)
    share = full[rows, candidate] / np.maximum(full.sum(axis=1), 1)
    return gap, roc_auc_score(click, share)


def test_short_and_long_period_effects_are_real(signal, tmp_path) -> None:
    _, table = signal
    gap, long_auc = _period_gaps(SIGNAL, table)
    assert gap > 0.12  # recent behaviours (the burst) predict the click
    assert long_auc > 0.6  # the category's share in the whole history predicts the click
    no_short = dataclasses.replace(SIGNAL, short_weight=0.0, short_author_weight=0.0)
    ablated_gap, _ = _period_gaps(no_short, _write(no_short, tmp_path)[1])
    assert gap - ablated_gap > 0.05  # the short-term switch removes most of the recent-behaviour effect


def test_favourite_author_crossed_with_category(signal) -> None:
    """A liked author in the history raises the click on its main category, not elsewhere."""
    _, table = signal
    catalog = item_catalog(SIGNAL)
    main = catalog.column("author_main_category").to_numpy()
    offsets, authors = _offsets(table, "hist_author_id")
    _, actions = _offsets(table, "hist_action")
    length = np.diff(offsets)
    row = np.repeat(np.arange(length.shape[0]), length)
    liked = actions == 3
    candidate_author = table.column("author_id").to_numpy()
    pairs = np.unique(row[liked] * (SIGNAL.authors + 1) + authors[liked])
    keys = np.arange(length.shape[0]) * (SIGNAL.authors + 1) + candidate_author
    known = np.isin(keys, pairs)  # the candidate's author was liked before
    on_main = main[table.column("item_id").to_numpy() - 1] == table.column("item_category").to_numpy()
    click = table.column("click").to_numpy()
    assert click[known & on_main].mean() > click[known & ~on_main].mean() + 0.1


def _long_tail_auc(cfg: SyntheticConfig, table: pa.Table) -> float:
    """Click AUC of ``lean * niche(candidate)``, with ``lean`` how much more unpopular the history's liked items
    are than all its items (rows with 3+ likes): the long-tail taste read as an item x action cross."""
    niche = -np.log(item_catalog(cfg).column("popularity").to_numpy())
    offsets, items = _offsets(table, "hist_item_id")
    _, actions = _offsets(table, "hist_action")
    length = np.diff(offsets)
    row = np.repeat(np.arange(length.shape[0]), length)
    n, liked = niche[items - 1], (actions == 3).astype(np.float64)
    likes = np.bincount(row, liked, minlength=length.shape[0])
    lean = (np.bincount(row, n * liked, minlength=length.shape[0]) / np.maximum(likes, 1)
            - np.bincount(row, n, minlength=length.shape[0]) / np.maximum(length, 1))
    candidate = niche[table.column("item_id").to_numpy() - 1]
    ok = likes >= 3
    return roc_auc_score(table.column("click").to_numpy()[ok], (lean * (candidate - candidate.mean()))[ok])


def test_long_tail_taste_shows_only_in_what_is_liked(signal, tmp_path) -> None:
    """The long-tail taste (off by default) leaves the items a user sees unchanged; switched on, it shows in
    which of them get liked, and that item x action cross predicts the click on unpopular candidates."""
    _, table = signal
    on = dataclasses.replace(SIGNAL, niche_weight=0.4, niche_like_weight=0.1)
    _, planted = _write(on, tmp_path)
    assert table.column("hist_item_id").equals(planted.column("hist_item_id"))
    assert not table.column("hist_action").equals(planted.column("hist_action"))
    # without the term the same statistic is not neutral (likes lean to the user's tastes, and popularity
    # raises clicks), so the planted cross is what it adds: 0.59 against 0.45 when written
    assert _long_tail_auc(on, planted) > _long_tail_auc(SIGNAL, table) + 0.08


def _lean_back_evidence(cfg: SyntheticConfig, table: pa.Table) -> Tuple[np.ndarray, np.ndarray]:
    """Per row, over the behaviours of the 5 minutes before the request (the request's session): the mean of
    ``[finished] * form(item)``, form +1 for a long-form category and -1 for a short-form one; and their count."""
    form = np.where(item_catalog(cfg).column("long_form").to_numpy(), 1.0, -1.0)
    offsets, items = _offsets(table, "hist_item_id")
    _, actions = _offsets(table, "hist_action")
    _, times = _offsets(table, "hist_time")
    rows = offsets.shape[0] - 1
    row = np.repeat(np.arange(rows), np.diff(offsets))
    recent = (times >= table.column("request_time").to_numpy()[row] - 300).astype(np.float64)
    evidence = np.bincount(row, recent * (actions == 2) * form[items - 1], minlength=rows)
    count = np.bincount(row, recent, minlength=rows)
    return evidence / np.maximum(count, 1), count


def _click_logit(table: pa.Table) -> np.ndarray:
    p = table.column("click_prob").to_numpy().astype(np.float64)
    return np.log(p / (1 - p))


def test_session_mood_shows_only_as_finish_x_form_and_scales_the_taste(signal, tmp_path) -> None:
    """The session mood (off by default) leaves the items a user sees and the finish share unchanged; switched
    on, lean-back sessions finish long-form videos and browsing ones short ones, and the mood of the request's
    session scales the long-term taste's weight. That cross is its only trace in the history."""
    _, table = signal
    on = dataclasses.replace(SIGNAL, mood_finish_weight=0.2, mood_taste_weight=1.0)
    _, planted = _write(on, tmp_path / "on")
    _, traceless = _write(dataclasses.replace(on, mood_finish_weight=0.0), tmp_path / "traceless")
    for mooded in (planted, traceless):
        assert mooded.column("hist_item_id").equals(table.column("hist_item_id"))
        assert mooded.column("hist_time").equals(table.column("hist_time"))
        assert mooded.column("item_id").equals(table.column("item_id"))
    assert not planted.column("hist_action").equals(table.column("hist_action"))
    assert traceless.column("hist_action").equals(table.column("hist_action"))
    finish_share = [float((_offsets(t, "hist_action")[1] == 2).mean()) for t in (table, planted)]
    assert abs(finish_share[0] - finish_share[1]) < 0.01  # 0.268 against 0.266 when written
    # the click logit moves by long_weight * mood_taste_weight * s * L_u(c): up in lean-back sessions (s = +1)
    shift = _click_logit(planted) - _click_logit(table)
    assert np.allclose(shift, _click_logit(traceless) - _click_logit(table), atol=1e-4)  # same moods
    lean_back, moved = shift > 1e-3, np.abs(shift) > 1e-3
    assert 0.3 < lean_back[moved].mean() < 0.7
    evidence, count = _lean_back_evidence(on, planted)
    seen = moved & (count >= 2)
    assert roc_auc_score(lean_back[seen], evidence[seen]) > 0.7  # 0.84 when written (14,375 rows)
    evidence, _ = _lean_back_evidence(on, traceless)
    assert abs(roc_auc_score(lean_back[seen], evidence[seen]) - 0.5) < 0.05  # 0.498 when written


def _adjacent_same_category(table: pa.Table) -> float:
    """Share of consecutive history entries (within a row) that have the same category."""
    offsets, values = _offsets(table, "hist_item_category")
    same = values[1:] == values[:-1]
    inside = np.ones(values.shape[0] - 1, bool)
    inside[offsets[1:-1] - 1] = False  # a pair across two rows
    return float(same[inside].mean())


def test_topical_sessions_make_neighbours_alike_and_move_nothing_else(tmp_path, small) -> None:
    """``session_focus`` repeats a session's topic inside the history; the impressions, the labels and which
    behaviours exist (their times) stay those of the same seed without it, and 0 is the old data."""
    _, table = small
    _, topical = _write(dataclasses.replace(SMALL, session_focus=0.8), tmp_path)
    scalar = [n for n in SCHEMA.names if n not in HIST]
    assert topical.select(scalar).equals(table.select(scalar))
    assert topical.column("hist_time").equals(table.column("hist_time"))
    assert not topical.column("hist_item_id").equals(table.column("hist_item_id"))
    # neighbours share a category far more often (0.47 against 0.23 when written)
    assert _adjacent_same_category(topical) > _adjacent_same_category(table) + 0.1


def _distinct_head_categories(table: pa.Table) -> float:
    """Mean number of distinct categories among a row's 32 most recent behaviours (rows with 32 or more)."""
    offsets, values = _offsets(table, "hist_item_category")
    counts = _head_counts(offsets, values, 32, int(values.max()) + 1)
    full = np.diff(offsets) >= 32
    return float((counts[full] > 0).sum(1).mean())


def test_behaviour_shares_move_the_history_sources(tmp_path, small) -> None:
    """With no long-term share, a user's history spreads over more categories (the taste is concentrated)."""
    _, table = small
    _, spread = _write(dataclasses.replace(SMALL, behaviour_long=0.0), tmp_path)
    assert _distinct_head_categories(spread) > _distinct_head_categories(table) + 0.4  # 10.5 against 9.7


def test_cap_changes_only_history_length(tmp_path, small) -> None:
    _, table = small
    capped = dataclasses.replace(SMALL, max_history=8)
    _, short = _write(capped, tmp_path)
    scalar = [n for n in SCHEMA.names if n not in HIST]
    assert short.select(scalar).equals(table.select(scalar))
    long_rows = table.column("hist_item_id").to_pylist()
    short_rows = short.column("hist_item_id").to_pylist()
    assert all(s == l[:8] for s, l in zip(short_rows, long_rows))


def test_sub_batches_do_not_change_the_table(tmp_path, small, monkeypatch) -> None:
    _, table = small
    monkeypatch.setattr(synthetic, "_HIST_BUDGET", 500)
    _, again = _write(SMALL, tmp_path)
    assert again.equals(table)


def test_histories_up_to_2336(tmp_path) -> None:
    cfg = SyntheticConfig(rows=300, users=40, items=3_000, authors=300, max_history=2336, behaviours_per_day=25.0)
    summary, table = _write(cfg, tmp_path)
    offsets, times = _offsets(table, "hist_time")
    length = np.diff(offsets)
    assert summary.rows == 300 and length.max() == 2336 and summary.mean_history > 500
    row = np.repeat(np.arange(length.shape[0]), length)
    assert (times < table.column("request_time").to_numpy()[row]).all()
    same_row = row[1:] == row[:-1]
    assert (times[1:][same_row] <= times[:-1][same_row]).all()


def test_progress_reports_rows_so_far(tmp_path) -> None:
    seen: List[int] = []
    generate(dataclasses.replace(SMALL, rows=500), tmp_path, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 500 and len(seen) > 1


def test_refuses_a_directory_with_part_files(tmp_path) -> None:
    (tmp_path / "part-00000.parquet").write_bytes(b"")
    with pytest.raises(FileExistsError, match="already holds 1 part file"):
        generate(dataclasses.replace(SMALL, rows=10), tmp_path)


def test_exact_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(2_000) < 0.3
    scores = np.round(rng.random(2_000) + labels * 0.3, 1)  # many ties
    assert synthetic._exact_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert np.isnan(synthetic._exact_auc(np.zeros(5), np.arange(5.0)))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"rows": 0}, "rows = 0; it must be >= 1"),
        ({"users_per_chunk": 0}, "users_per_chunk = 0; it must be >= 1"),
        ({"max_history": -1}, "max_history = -1; it must be >= 0"),
        ({"items": 10, "authors": 20}, "needs items >= authors >= categories"),
        ({"authors": 10, "categories": 20}, "needs items >= authors >= categories"),
        ({"days": 7, "impression_days": 7}, "impression_days = 7 must be < days = 7"),
        ({"burst_prob": 1.5}, r"burst_prob = 1.5; it must be in \[0, 1\]"),
        ({"exposure_short": 0.5, "exposure_long": 0.6}, "it must be <= 1"),
        ({"session_focus": 1.2}, r"session_focus = 1.2; it must be in \[0, 1\]"),
        ({"behaviour_middle": 0.5, "behaviour_long": 0.6}, "behaviour_author = 1.220; it must be <= 1"),
        ({"session_length": 0.0}, "session_length = 0.0; it must be > 0"),
        ({"noise_std": -1.0}, "noise_std = -1.0; it must be >= 0"),
    ],
)
def test_config_errors_name_the_field(changes, message) -> None:
    with pytest.raises(ValueError, match=message):
        SyntheticConfig(**changes)


def test_enthusiastic_users_like_more_and_it_shows_in_their_history(tmp_path: Path) -> None:
    base = dict(rows=6000, users=300, items=800, authors=100, max_history=64)
    plain = generate(SyntheticConfig(**base), tmp_path / "plain")
    keen = generate(SyntheticConfig(**base, enthusiasm_std=1.0), tmp_path / "keen")
    off = pq.read_table(tmp_path / "plain").to_pydict()
    on = pq.read_table(tmp_path / "keen").to_pydict()
    assert on["item_id"] == off["item_id"] and on["hist_item_id"] == off["hist_item_id"]  # only labels, actions move
    assert plain.rows == keen.rows

    def per_user(t):  # type: ignore[no-untyped-def]
        users = sorted(set(t["user_id"]))
        like_share = {u: [] for u in users}
        click = {u: [] for u in users}
        for u, acts, c in zip(t["user_id"], t["hist_action"], t["click"]):
            like_share[u] += [a == 3 for a in acts]
            click[u].append(c)
        keep = [u for u in users if len(like_share[u]) >= 50 and len(click[u]) >= 10]
        return np.array([np.mean(like_share[u]) for u in keep]), np.array([np.mean(click[u]) for u in keep])

    shares_on, clicks_on = per_user(on)
    shares_off, clicks_off = per_user(off)
    # with enthusiasm, a user's share of likes in the history predicts the user's click rate
    assert np.corrcoef(shares_on, clicks_on)[0, 1] > np.corrcoef(shares_off, clicks_off)[0, 1] + 0.2
