"""The MovieLens-1M and Amazon converters and k-core filtering, against slow references built from small
fixtures written here in the datasets' exact formats (no network)."""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import pyarrow.parquet as pq
import pytest

from pyramid_mixer.features.datasets.amazon import AMAZON_SCHEMA, convert_amazon
from pyramid_mixer.features.datasets.conversion import k_core_mask
from pyramid_mixer.features.datasets.movielens import MOVIELENS_SCHEMA
from pyramid_mixer.features.datasets.movielens1m import convert_movielens1m
from pyramid_mixer.features.next_item import NextItemInputs
from pyramid_mixer.features.reader import ParquetReader, ReadOptions
from pyramid_mixer.features.schema import DataError, expected_columns
from pyramid_mixer.features.spec import default_spec_path, load_spec
from pyramid_mixer.features.tokens import LevelSpec, PyramidLayout
from pyramid_mixer.jobs import convert as convert_job

LAYOUT = PyramidLayout(levels=(LevelSpec(0, 8, 1), LevelSpec(8, 40, 4)))
SPECS = default_spec_path().parent


def reference_history(user: Sequence, time_: Sequence[int], i: int, cap: int) -> List[int]:
    """Rows of user[i]'s events strictly before row i in (time, row) order, most recent first, at most cap."""
    earlier = [j for j in range(len(user)) if user[j] == user[i] and (time_[j], j) < (time_[i], i)]
    return sorted(earlier, key=lambda j: (time_[j], j), reverse=True)[:cap]


def reference_after(user: Sequence, time_: Sequence[int], i: int) -> int:
    return sum(1 for j in range(len(user)) if user[j] == user[i] and (time_[j], j) > (time_[i], i))


def reference_k_core(user: Sequence, item: Sequence, k: int) -> List[bool]:
    """Drops one user or item with fewer than k kept events at a time until there is none."""
    kept = set(range(len(user)))
    while True:
        users, items = Counter(user[j] for j in kept), Counter(item[j] for j in kept)
        weak_user = next((u for u, c in users.items() if c < k), None)
        weak_item = next((it for it, c in items.items() if c < k), None)
        if weak_user is None and weak_item is None:
            return [j in kept for j in range(len(user))]
        if weak_user is not None:
            kept = {j for j in kept if user[j] != weak_user}
        else:
            kept = {j for j in kept if item[j] != weak_item}


def read_rows(files: Sequence[str]) -> List[Dict]:
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    assert [r["request_id"] for r in rows] == list(range(len(rows)))
    return rows


def check_histories(rows: List[Dict], user: Sequence, time_: Sequence[int], cap: int) -> List[List[int]]:
    """Checks events_after and that training rows (events_after >= 2) are capped and held-out rows are not;
    returns each row's reference history (input rows, most recent first)."""
    refs = []
    for i, r in enumerate(rows):
        after = reference_after(user, time_, i)
        assert r["events_after"] == after
        refs.append(reference_history(user, time_, i, cap if after >= 2 else len(rows)))
        assert r["hist_time"] == [time_[j] for j in refs[-1]]
    return refs


# ---------------------------------------------------------------------------------------------------------
# k-core
# ---------------------------------------------------------------------------------------------------------


def test_k_core_mask_small_case_and_random_sweep() -> None:
    # item 9 has one event: it goes, then user 3 has one event left and goes too
    user, item = np.array([1, 1, 2, 2, 3, 3]), np.array([7, 8, 7, 8, 7, 9])
    assert k_core_mask(user, item, 2).tolist() == [True, True, True, True, False, False]
    assert k_core_mask(user, item, 0).all() and k_core_mask(user, item, 1).all()
    assert not k_core_mask(user, item, 3).any()
    assert k_core_mask(np.zeros(0, np.int64), np.zeros(0, np.int64), 5).shape == (0,)
    rng = np.random.default_rng(11)
    for _ in range(40):
        n = int(rng.integers(0, 80))
        user, item, k = rng.integers(0, 8, n), rng.integers(100, 112, n), int(rng.integers(0, 6))
        keep = k_core_mask(user, item, k)
        assert keep.tolist() == reference_k_core(user.tolist(), item.tolist(), k)
        if keep.any() and k > 0:  # what is kept is a k-core
            assert min(Counter(user[keep]).values()) >= k and min(Counter(item[keep]).values()) >= k
    with pytest.raises(ValueError, match="k must be >= 0"):
        k_core_mask(user, item, -1)


# ---------------------------------------------------------------------------------------------------------
# MovieLens-1M (GroupLens .dat files)
# ---------------------------------------------------------------------------------------------------------

ML1M_MOVIES = {  # raw MovieID -> (title, genres)
    1: ("Toy Story (1995)", "Animation|Children's|Comedy"),
    3: ("Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)", "Comedy|Romance"),
    7: ('"Great Performances" Cats (1998)', "Musical"),
    12: ("Untitled Film", "Drama|Thriller"),  # no year
    40: ("Crónica de una muerte (1919)", "Drama"),
    100: ("Zoë: Ångström & Æther (1987) ", "Sci-Fi|Action"),  # trailing space
    3952: ("Contender, The (2000)", "Drama|Thriller"),
}
ML1M_USERS = {  # UserID -> (gender, age code, occupation code)
    1: ("F", 1, 10), 2: ("M", 56, 16), 3: ("M", 25, 4), 5: ("F", 45, 12), 8: ("M", 18, 0), 9: ("F", 50, 4),
}
AGE_BUCKET = {1: 1, 18: 2, 25: 3, 35: 4, 45: 5, 50: 6, 56: 7}


def write_ml1m(d: Path, seed: int = 0, n: int = 90) -> Dict[str, list]:
    """6 users, 7 movies and movie 55, rated but not in movies.dat; ratings with many ties in time."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "movies.dat", "w", encoding="latin-1", newline="") as f:
        for m, (title, genres) in ML1M_MOVIES.items():
            f.write(f"{m}::{title}::{genres}\n")
    with open(d / "users.dat", "w", encoding="latin-1", newline="") as f:
        for u, (g, age, occ) in ML1M_USERS.items():
            f.write(f"{u}::{g}::{age}::{occ}::0{u}123\n")
    movies = list(ML1M_MOVIES) + [55]
    user = [int(x) for x in rng.choice(list(ML1M_USERS), n)]
    item = [int(x) for x in rng.choice(movies, n)]
    rating = [int(x) for x in rng.integers(1, 6, n)]
    time_ = [978_300_000 + int(x) * 7 for x in rng.integers(0, 14, n)]  # 14 distinct seconds: many ties
    with open(d / "ratings.dat", "w", encoding="latin-1", newline="") as f:
        for row in zip(user, item, rating, time_):
            f.write("{}::{}::{}::{}\n".format(*row))
    return {"user": user, "item": item, "rating": rating, "time": time_}


def ml1m_expected(fx: Dict[str, list]) -> Dict[str, Dict]:
    """The dense ids and features the converter should give, by the rules of the module docstring."""
    item_ids = {m: k + 1 for k, m in enumerate(sorted(set(ML1M_MOVIES) | set(fx["item"])))}
    user_ids = {u: k + 1 for k, u in enumerate(sorted(set(ML1M_USERS) | set(fx["user"])))}
    genre_names = sorted({g for _, gs in ML1M_MOVIES.values() for g in gs.split("|")})
    genre = {g: k + 1 for k, g in enumerate(genre_names)}
    tags = {m: [genre[g] for g in ML1M_MOVIES[m][1].split("|")] if m in ML1M_MOVIES else [] for m in item_ids}
    years = {1: 1995, 3: 2001, 7: 1998, 12: 0, 40: 1919, 100: 1987, 3952: 2000, 55: 0}
    occupations = {o: k + 1 for k, o in enumerate(sorted({occ for _, _, occ in ML1M_USERS.values()}))}
    return {"item": item_ids, "user": user_ids, "tags": tags, "years": years, "occupation": occupations}


@pytest.mark.parametrize("cap", [256, 3])
def test_movielens1m_rows_equal_slow_reference(tmp_path: Path, cap: int) -> None:
    fx = write_ml1m(tmp_path / "src", seed=cap)
    s = convert_movielens1m(tmp_path / "src", tmp_path / "out", max_history=cap, row_group_rows=40)
    assert pq.read_schema(s.files[0]).remove_metadata() == MOVIELENS_SCHEMA
    rows = read_rows(s.files)
    ex = ml1m_expected(fx)
    assert (s.rows, s.users, s.items) == (90, len(set(fx["user"])), len(set(fx["item"])))
    assert s.click_rate == pytest.approx(np.mean(np.array(fx["rating"]) >= 4))
    assert ex["item"][3952] == 8 and ex["user"][9] == 6  # dense ids in numeric order of the raw ids
    refs = check_histories(rows, fx["user"], fx["time"], cap)
    for i, r in enumerate(rows):
        u, m = fx["user"][i], fx["item"][i]
        gender, age, occupation = ML1M_USERS[u]
        assert (r["user_id"], r["item_id"], r["request_time"]) == (ex["user"][u], ex["item"][m], fx["time"][i])
        assert (r["rating"], r["click"]) == (fx["rating"][i], int(fx["rating"][i] >= 4))
        assert r["item_tags"] == ex["tags"][m] and r["item_category"] == (ex["tags"][m] or [0])[0]
        assert r["release_year"] == ex["years"][m]
        assert r["user_age"] == AGE_BUCKET[age] and r["user_gender"] == {"M": 1, "F": 2}[gender]
        assert r["user_occupation"] == ex["occupation"][occupation]
        assert r["hist_item_id"] == [ex["item"][fx["item"][j]] for j in refs[i]]
        assert r["hist_item_category"] == [(ex["tags"][fx["item"][j]] or [0])[0] for j in refs[i]]
        assert r["hist_release_year"] == [ex["years"][fx["item"][j]] for j in refs[i]]
        assert r["hist_action"] == [fx["rating"][j] for j in refs[i]]
    lengths = [len(h) for h in refs]
    assert s.mean_history == pytest.approx(np.mean(lengths))
    train = [len(r["hist_item_id"]) for r in rows if r["events_after"] >= 2]
    held_out = [len(r["hist_item_id"]) for r in rows if r["events_after"] <= 1]
    assert max(train) <= cap and (cap == 256 or (max(train) == cap and max(held_out) > cap))
    assert any(r["request_time"] in r["hist_time"] for r in rows)  # same-second ratings are in histories


def test_movielens1m_k_core_keeps_the_reference_core_and_ids(tmp_path: Path) -> None:
    fx = write_ml1m(tmp_path / "src", seed=5, n=70)
    ex = ml1m_expected(fx)
    keep = reference_k_core(fx["user"], fx["item"], 7)
    assert 0 < sum(keep) < 70  # the fixture has something to drop and something to keep
    s = convert_movielens1m(tmp_path / "src", tmp_path / "out", k_core=7)
    rows = read_rows(s.files)
    kept = [i for i in range(70) if keep[i]]
    assert [(r["user_id"], r["item_id"], r["request_time"]) for r in rows] == [
        (ex["user"][fx["user"][i]], ex["item"][fx["item"][i]], fx["time"][i]) for i in kept]
    sub = {k: [fx[k][i] for i in kept] for k in ("user", "item", "time")}
    refs = check_histories(rows, sub["user"], sub["time"], 256)
    assert [r["hist_item_id"] for r in rows] == [[ex["item"][sub["item"][j]] for j in h] for h in refs]


def test_movielens1m_output_reads_with_its_spec(tmp_path: Path) -> None:
    write_ml1m(tmp_path / "src")
    s = convert_movielens1m(tmp_path / "src", tmp_path / "out")
    spec = load_spec(SPECS / "movielens1m.yaml")
    assert {c for c, _, _, _ in expected_columns(spec)} <= set(MOVIELENS_SCHEMA.names)
    ml100k = load_spec(SPECS / "movielens_next_item.yaml")  # the same features as ml-100k's next-item spec
    assert ml100k.sparse == spec.sparse and ml100k.sequence == spec.sequence and ml100k.target == spec.target
    assert [f.name for f in spec.sequence.fields] == ["hist_item", "hist_category", "hist_year", "hist_action"]
    assert spec.table("t_item").num_embeddings > 3952 and spec.table("t_user").num_embeddings > 6040
    reader = ParquetReader([tmp_path / "out"], spec, LAYOUT, ReadOptions(batch_size=16))
    assert sum(1 for _ in reader) == 6
    assert (reader.stats.rows_read, reader.stats.rows_used, reader.stats.rows_rejected) == (s.rows, 90, 0)


def test_movielens1m_bad_input_names_the_file(tmp_path: Path) -> None:
    write_ml1m(tmp_path)
    ratings = (tmp_path / "ratings.dat").read_text(encoding="latin-1")
    (tmp_path / "ratings.dat").write_text(ratings + "3::7::4\n", encoding="latin-1")  # a field short
    with pytest.raises(DataError, match=r"ratings\.dat: not a MovieLens-1M file.*Expected 4 columns, got 3"):
        convert_movielens1m(tmp_path, tmp_path / "out")
    (tmp_path / "ratings.dat").write_text(ratings + "3::7::four::978300000\n", encoding="latin-1")
    with pytest.raises(DataError, match=r"ratings\.dat: column 'rating' must hold numbers"):
        convert_movielens1m(tmp_path, tmp_path / "out")
    (tmp_path / "ratings.dat").write_text(ratings, encoding="latin-1")
    (tmp_path / "users.dat").unlink()
    with pytest.raises(DataError, match=r"users\.dat: file not found; download https://files\.grouplens\.org/"
                                        r"datasets/movielens/ml-1m\.zip"):
        convert_movielens1m(tmp_path, tmp_path / "out")


# ---------------------------------------------------------------------------------------------------------
# Amazon Beauty (2014 reviews JSON lines, metadata as Python dict literals)
# ---------------------------------------------------------------------------------------------------------

BEAUTY_META = {  # asin -> metadata record; absent: no metadata
    "B00A": {"price": 12.99, "brand": "Burt's Bees", "categories": [["Beauty", "Skin Care", "Face", "Creams"],
                                                                     ["Beauty", "Bath"]]},
    "B00B": {"brand": "Olay", "categories": [["Beauty", "Skin Care", "Face", "Creams"]]},  # no price
    "B00C": {"price": 0.5, "categories": [["Beauty", "Fragrance"]], "title": "Eau de \u00e9t\u00e9"},  # no brand
    "B00D": {"price": 310.0, "brand": "Olay", "categories": [["Beauty"]]},
    "B00E": {"price": 4.0, "brand": " Zoë ", "categories": []},  # no category
    "7806397051": {"price": 1.0, "brand": "Adams", "categories": [["Beauty", "Makeup", "Eyes"]]},
    # "B00F" is reviewed but has no metadata
}
REVIEWERS = ["A2ZZ", "A1BB", "A1CC", "AX9", "A1AA"]


def write_beauty(d: Path, seed: int = 0, n: int = 80, gz: bool = False) -> Dict[str, list]:
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    asins = list(BEAUTY_META) + ["B00F"]
    user = [str(x) for x in rng.choice(REVIEWERS, n)]
    item = [str(x) for x in rng.choice(asins, n)]
    rating = [float(x) for x in rng.integers(1, 6, n)]
    time_ = [1_360_000_000 - 1_360_000_000 % 86400 + 86400 * int(x) for x in rng.integers(0, 10, n)]  # days
    lines = []
    for i in range(n):
        review = {"reviewerID": user[i], "asin": item[i], "helpful": [int(x) for x in rng.integers(0, 3, 2)],
                  "reviewText": 'Nice "cream", caf\u00e9\nline', "overall": rating[i], "summary": "ok",
                  "unixReviewTime": time_[i], "reviewTime": "02 4, 2013"}
        if i % 3:
            review["reviewerName"] = "Jo O'Neil"
        lines.append(json.dumps(review) + "\n")
    meta = [repr({"asin": "B99Z", "brand": "AAA first", "price": 3.0, "categories": [["Beauty", "Aaa"]]}) + "\n"]
    for a, record in BEAUTY_META.items():
        record = {"asin": a, "related": {"also_bought": ["B00B", "B00C"]}, "salesRank": {"Beauty": 7}, **record}
        if a == "B00D":  # one strict JSON line: json.loads reads it (true is not a Python literal)
            meta.append(json.dumps(dict(record, imUrl=True)) + "\n")
        else:
            meta.append(repr(record) + "\n")
    meta.append(repr({"asin": "B00A", "brand": "Second record", "price": 99.0}) + "\n")  # the first one wins
    meta.append("{'asin': 'B98Y', 'title': this line is not parsed: its item has no reviews}\n")
    opener = gzip.open if gz else open
    suffix = ".gz" if gz else ""
    with opener(d / f"reviews_Beauty_5.json{suffix}", "wt", encoding="utf-8") as f:
        f.writelines(lines)
    with opener(d / f"meta_Beauty.json{suffix}", "wt", encoding="utf-8") as f:
        f.writelines(meta)
    return {"user": user, "item": item, "rating": rating, "time": time_}


def beauty_expected(fx: Dict[str, list]) -> Dict[str, Dict]:
    reviewed = sorted(set(fx["item"]))
    meta = {a: BEAUTY_META.get(a, {}) for a in reviewed}
    brands = sorted({m["brand"].strip() for m in meta.values() if m.get("brand")})
    leaves = sorted({m["categories"][0][-1] for m in meta.values() if m.get("categories")})

    def bucket(m: Dict) -> int:
        return min(63, 1 + math.floor(2 * math.log2(1 + m["price"]))) if "price" in m else 0

    return {
        "user": {u: k + 1 for k, u in enumerate(sorted(set(fx["user"])))},
        "item": {a: k + 1 for k, a in enumerate(reviewed)},
        "brand": {a: brands.index(m["brand"].strip()) + 1 if m.get("brand") else 0 for a, m in meta.items()},
        "category": {a: leaves.index(m["categories"][0][-1]) + 1 if m.get("categories") else 0
                     for a, m in meta.items()},
        "price": {a: bucket(m) for a, m in meta.items()},
    }


@pytest.mark.parametrize("cap", [256, 2])
def test_beauty_rows_equal_slow_reference(tmp_path: Path, cap: int) -> None:
    fx = write_beauty(tmp_path / "src", seed=cap)
    s = convert_amazon(tmp_path / "src", tmp_path / "out", max_history=cap, row_group_rows=30)
    assert pq.read_schema(s.files[0]).remove_metadata() == AMAZON_SCHEMA
    rows = read_rows(s.files)
    ex = beauty_expected(fx)
    assert set(fx["item"]) == set(BEAUTY_META) | {"B00F"}  # every kind of item occurs
    assert (s.rows, s.users, s.items) == (80, len(set(fx["user"])), 7)
    assert s.click_rate == pytest.approx(np.mean(np.array(fx["rating"]) >= 4))
    # the features of the fixture's odd items
    assert (ex["brand"]["B00C"], ex["price"]["B00B"], ex["category"]["B00E"]) == (0, 0, 0)
    assert (ex["brand"]["B00F"], ex["price"]["B00F"], ex["category"]["B00F"]) == (0, 0, 0)
    # brands: Adams, Burt's Bees, Olay, Zoë (not the unreviewed item's "AAA first"); categories: Beauty, Creams...
    assert ex["brand"]["B00A"] == 2 and ex["category"]["B00A"] == ex["category"]["B00B"] == 2
    assert ex["item"]["7806397051"] == 1 and ex["price"]["B00D"] == 17
    refs = check_histories(rows, fx["user"], fx["time"], cap)
    for i, r in enumerate(rows):
        a = fx["item"][i]
        assert (r["user_id"], r["item_id"], r["request_time"]) == (ex["user"][fx["user"][i]], ex["item"][a],
                                                                   fx["time"][i])
        assert (r["rating"], r["click"]) == (fx["rating"][i], int(fx["rating"][i] >= 4))
        assert (r["item_category"], r["item_brand"], r["item_price_bucket"]) == (
            ex["category"][a], ex["brand"][a], ex["price"][a])
        hist = [fx["item"][j] for j in refs[i]]
        assert r["hist_item_id"] == [ex["item"][h] for h in hist]
        assert r["hist_item_category"] == [ex["category"][h] for h in hist]
        assert r["hist_item_brand"] == [ex["brand"][h] for h in hist]
        assert r["hist_item_price_bucket"] == [ex["price"][h] for h in hist]
        assert r["hist_action"] == [int(fx["rating"][j]) for j in refs[i]]
    assert s.mean_history == pytest.approx(np.mean([len(h) for h in refs]))
    if cap == 2:
        assert max(len(r["hist_item_id"]) for r in rows if r["events_after"] >= 2) == 2
        assert max(len(r["hist_item_id"]) for r in rows if r["events_after"] <= 1) > 2


def test_beauty_gzipped_files_and_k_core(tmp_path: Path) -> None:
    fx = write_beauty(tmp_path / "plain", seed=4)
    write_beauty(tmp_path / "gz", seed=4, gz=True)
    plain = convert_amazon(tmp_path / "plain", tmp_path / "out-plain")
    packed = convert_amazon(tmp_path / "gz", tmp_path / "out-gz")
    assert pq.read_table(plain.files[0]).equals(pq.read_table(packed.files[0]))
    keep = reference_k_core(fx["user"], fx["item"], 10)
    assert 0 < sum(keep) < 80
    s = convert_amazon(tmp_path / "gz", tmp_path / "out-core", k_core=10)
    rows = read_rows(s.files)
    sub = {k: [fx[k][i] for i in range(80) if keep[i]] for k in ("user", "item", "time")}
    ex = beauty_expected(sub)  # ids dense over what is kept
    assert [(r["user_id"], r["item_id"], r["item_brand"]) for r in rows] == [
        (ex["user"][u], ex["item"][a], ex["brand"][a]) for u, a in zip(sub["user"], sub["item"])]
    refs = check_histories(rows, sub["user"], sub["time"], 256)
    assert [r["hist_item_id"] for r in rows] == [[ex["item"][sub["item"][j]] for j in h] for h in refs]


def test_beauty_output_reads_with_its_spec(tmp_path: Path) -> None:
    write_beauty(tmp_path / "src")
    s = convert_amazon(tmp_path / "src", tmp_path / "out")
    spec = load_spec(SPECS / "beauty.yaml")
    assert {c for c, _, _, _ in expected_columns(spec)} == set(AMAZON_SCHEMA.names) - {"rating", "events_after"}
    assert [f.column for f in spec.sequence.fields][:4] == ["hist_item_id", "hist_item_category",
                                                            "hist_item_brand", "hist_item_price_bucket"]
    assert spec.target == ("item", "category", "brand", "price") and spec.events_after == "events_after"
    reader = ParquetReader([tmp_path / "out"], spec, LAYOUT, ReadOptions(batch_size=16))
    assert sum(1 for _ in reader) == 5
    assert (reader.stats.rows_read, reader.stats.rows_used, reader.stats.rows_rejected) == (s.rows, 80, 0)
    catalogue = np.unique(pq.read_table(tmp_path / "out").column("item_id").to_numpy())
    options = ReadOptions(batch_size=16, next_item=NextItemInputs(catalogue, seen=True))
    reader = ParquetReader([tmp_path / "out"], spec, LAYOUT, options)
    assert sum(1 for _ in reader) == 5 and reader.stats.rows_rejected == 0


def test_beauty_bad_input_names_the_file(tmp_path: Path) -> None:
    write_beauty(tmp_path)
    reviews = tmp_path / "reviews_Beauty_5.json"
    text = reviews.read_text()
    reviews.write_text(text + '{"reviewerID": "A1", "asin": "B00A", "overall": 5.0, "unixReviewTime": \n')
    with pytest.raises(DataError, match=r"reviews_Beauty_5\.json: not JSON lines of reviews"):
        convert_amazon(tmp_path, tmp_path / "out")
    reviews.write_text(text + '{"reviewerID": "A1", "asin": "B00A", "overall": 5.0}\n')
    with pytest.raises(DataError, match=r"reviews_Beauty_5\.json: 1 reviews have no 'unixReviewTime'"):
        convert_amazon(tmp_path, tmp_path / "out")
    reviews.write_text(text)
    meta = tmp_path / "meta_Beauty.json"
    meta.write_text(meta.read_text() + "{'asin': 'B00F', 'price': 3.0,\n")  # a reviewed item's line, cut short
    with pytest.raises(DataError, match=r"meta_Beauty\.json: line 10 is neither a Python dict literal nor JSON"):
        convert_amazon(tmp_path, tmp_path / "out")
    meta.unlink()
    with pytest.raises(DataError, match=r"meta_Beauty\.json: file not found \(nor meta_Beauty\.json\.gz\); "
                                        r"download meta_Beauty\.json\.gz from https://jmcauley\.ucsd\.edu/"):
        convert_amazon(tmp_path, tmp_path / "out")


# ---------------------------------------------------------------------------------------------------------
# The job and the docstrings
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset, spec", [("movielens-1m", "movielens1m.yaml"), ("beauty", "beauty.yaml")])
def test_convert_job_prints_one_line_summary(tmp_path: Path, capsys: pytest.CaptureFixture, dataset: str,
                                             spec: str) -> None:
    (write_ml1m if dataset == "movielens-1m" else write_beauty)(tmp_path / "src")
    convert_job.main([dataset, "--source", str(tmp_path / "src"), "--out", str(tmp_path / "out"),
                      "--max-history", "3", "--k-core", "2"])
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("wrote ") and str(tmp_path / "out") in out[0]
    assert out[0].endswith(f"spec: {SPECS / spec}")
    assert Path(out[0].rsplit("spec: ", 1)[1]).is_file()


def test_convert_job_missing_source_file_is_one_clear_line(tmp_path: Path) -> None:
    for dataset, name in (("movielens-1m", "ratings.dat"), ("beauty", "reviews_Beauty_5.json")):
        proc = subprocess.run([sys.executable, "-m", "pyramid_mixer.jobs.convert", dataset, "--source",
                               str(tmp_path), "--out", str(tmp_path / "out")], capture_output=True, text=True)
        assert proc.returncode != 0 and proc.stderr.startswith(f"error: {tmp_path / name}: file not found")
        assert "Traceback" not in proc.stderr
    help_text = subprocess.run([sys.executable, "-m", "pyramid_mixer.jobs.convert", "--help"],
                               capture_output=True, text=True, check=True).stdout
    assert "movielens-1m" in help_text and "beauty" in help_text and "--k-core" in help_text


def test_convert_job_refuses_an_out_dir_with_part_files_and_deletes_nothing(tmp_path: Path) -> None:
    write_ml1m(tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    theirs = out / "part-00000.parquet"
    theirs.write_bytes(b"a user's own file")
    proc = subprocess.run([sys.executable, "-m", "pyramid_mixer.jobs.convert", "movielens-1m", "--source",
                           str(tmp_path / "src"), "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (f"error: {out} already holds 1 part file(s) (part-00000.parquet, ...); write to an "
                                   f"empty directory, or remove them first (rm {out}/part-*.parquet) if they are "
                                   "yours to lose")
    assert theirs.read_bytes() == b"a user's own file" and sorted(p.name for p in out.iterdir()) == [theirs.name]


def test_every_registered_dataset_is_a_subcommand_with_its_spec() -> None:
    from pyramid_mixer.features.datasets.registry import DATASETS, spec_path

    sub = next(a for a in convert_job.parser()._actions if a.dest == "dataset")
    assert list(sub.choices) == list(DATASETS)
    for name, dataset in DATASETS.items():
        assert spec_path(name).is_file()
        takes = {o for a in sub.choices[name]._actions for o in a.option_strings}
        assert ("--k-core" in takes) == dataset.k_core and {"--source", "--out", "--max-history"} <= takes
