"""The public-dataset converters against slow references built from small fixtures written here (no network)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pyarrow.parquet as pq
import pytest

from pyramid_mixer.features.datasets import movielens
from pyramid_mixer.features.datasets.histories import HistoryIndex
from pyramid_mixer.features.datasets.kuairand import ACTIVE_DEGREES, KUAIRAND_SCHEMA, convert_kuairand
from pyramid_mixer.features.datasets.movielens import convert_movielens, fetch_recbole_ml100k
from pyramid_mixer.features.reader import ParquetReader, ReadOptions
from pyramid_mixer.features.schema import DataError, expected_columns
from pyramid_mixer.features.spec import FeatureSpec, default_spec, default_spec_path, load_spec
from pyramid_mixer.features.tokens import LevelSpec, PyramidLayout
from pyramid_mixer.jobs import convert as convert_job

LAYOUT = PyramidLayout(levels=(LevelSpec(0, 8, 1), LevelSpec(8, 40, 4)))
MOVIELENS_SPEC = default_spec_path().with_name("movielens.yaml")
GENRES = ["Action", "Adventure", "Children's", "Comedy", "Drama", "Film-Noir", "Horror", "Sci-Fi", "unknown"]


def reference_history(user: Sequence[int], time_: Sequence[int], keep: Sequence[bool], i: int, cap: int) -> List[int]:
    """Rows of user[i]'s kept events strictly before row i in (time, row) order, most recent first."""
    earlier = [j for j in range(len(user)) if user[j] == user[i] and keep[j] and (time_[j], j) < (time_[i], i)]
    return sorted(earlier, key=lambda j: (time_[j], j), reverse=True)[:cap]


def read_rows(files: Sequence[str]) -> List[Dict]:
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    assert [r["request_id"] for r in rows] == list(range(len(rows)))
    return rows


def read_all(paths: Sequence[Path], spec: FeatureSpec) -> Tuple[int, ParquetReader]:
    reader = ParquetReader(list(paths), spec, LAYOUT, ReadOptions(batch_size=16))
    return sum(1 for _ in reader), reader


# ---------------------------------------------------------------------------------------------------------
# MovieLens-100k (RecBole atomic files)
# ---------------------------------------------------------------------------------------------------------


def write_ml100k(d: Path, seed: int = 0) -> Dict[str, list]:
    """6 users, 20 items (item 20 has no genre and an unknown year), 80 ratings with many ties in time."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    item_genres = {i: sorted(rng.choice(GENRES, size=int(rng.integers(1, 4)), replace=False).tolist(),
                             key=GENRES.index) for i in range(1, 20)}
    item_genres[20] = []
    years = {i: ("unknown" if i in (7, 20) else str(1950 + i)) for i in range(1, 21)}
    with open(d / "ml-100k.item", "w") as f:
        f.write("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n")
        for i in range(1, 21):
            f.write(f"{i}\tMovie {i} (\"x\")\t{years[i]}\t{' '.join(item_genres[i])}\n")
    ages = {1: 7, 2: 18, 3: 24, 4: 35, 5: 56, 6: 73}
    genders = {1: "M", 2: "F", 3: "M", 4: "F", 5: "M", 6: "F"}
    occupations = {1: "student", 2: "writer", 3: "student", 4: "none", 5: "artist", 6: "writer"}
    with open(d / "ml-100k.user", "w") as f:
        f.write("user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n")
        for u in range(1, 7):
            f.write(f"{u}\t{ages[u]}\t{genders[u]}\t{occupations[u]}\t0{u}123\n")
    n = 80
    user = rng.integers(1, 7, size=n).tolist()
    item = rng.integers(1, 21, size=n).tolist()
    rating = rng.integers(1, 6, size=n).tolist()
    time_ = (880_000_000 + rng.integers(0, 12, size=n) * 60).tolist()  # 12 distinct minutes: many ties
    with open(d / "ml-100k.inter", "w") as f:
        f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        for row in zip(user, item, rating, time_):
            f.write("{}\t{}\t{}\t{}\n".format(*row))
    return {"user": user, "item": item, "rating": rating, "time": time_, "genres": item_genres, "years": years,
            "ages": ages, "genders": genders, "occupations": occupations}


def test_movielens_rows_labels_and_features(tmp_path: Path) -> None:
    fx = write_ml100k(tmp_path / "src")
    s = convert_movielens(tmp_path / "src", tmp_path / "out", row_group_rows=32)
    rows = read_rows(s.files)
    assert (s.rows, s.users, s.items) == (80, len(set(fx["user"])), len(set(fx["item"])))
    assert pq.ParquetFile(s.files[0]).metadata.num_row_groups == 3
    assert s.click_rate == pytest.approx(np.mean(np.array(fx["rating"]) >= 4))
    genre_id = {g: k + 1 for k, g in enumerate(sorted(GENRES))}
    occupation_id = {o: k + 1 for k, o in enumerate(sorted(set(fx["occupations"].values())))}
    for i, r in enumerate(rows):
        u, it = fx["user"][i], fx["item"][i]
        assert (r["user_id"], r["item_id"], r["request_time"]) == (u, it, fx["time"][i])
        assert r["click"] == int(fx["rating"][i] >= 4)
        tags = [genre_id[g] for g in fx["genres"][it]]
        assert r["item_tags"] == tags and r["item_category"] == (tags[0] if tags else 0)
        assert r["release_year"] == (0 if fx["years"][it] == "unknown" else int(fx["years"][it]))
        assert r["user_gender"] == {"M": 1, "F": 2}[fx["genders"][u]]
        assert r["user_occupation"] == occupation_id[fx["occupations"][u]]
    assert [rows[fx["user"].index(u)]["user_age"] for u in range(1, 7)] == [1, 2, 2, 4, 7, 7]


@pytest.mark.parametrize("cap", [256, 5, 0])
def test_movielens_history_equals_slow_reference(tmp_path: Path, cap: int) -> None:
    fx = write_ml100k(tmp_path / "src", seed=cap)
    s = convert_movielens(tmp_path / "src", tmp_path / "out", max_history=cap)
    rows = read_rows(s.files)
    genre_id = {g: k + 1 for k, g in enumerate(sorted(GENRES))}
    first_genre = {i: (genre_id[g[0]] if g else 0) for i, g in fx["genres"].items()}
    keep = [True] * len(rows)
    lengths = []
    for i, r in enumerate(rows):
        later = sum(1 for j in range(len(rows)) if fx["user"][j] == fx["user"][i]
                    and (fx["time"][j], j) > (fx["time"][i], i))
        assert r["events_after"] == later
        # a user's two held-out rows (the last event and the one before) keep their whole history
        ref = reference_history(fx["user"], fx["time"], keep, i, cap if later >= 2 else len(rows))
        assert r["hist_item_id"] == [fx["item"][j] for j in ref]
        assert r["hist_time"] == [fx["time"][j] for j in ref]
        assert r["hist_action"] == [fx["rating"][j] for j in ref]
        assert r["hist_item_category"] == [first_genre[fx["item"][j]] for j in ref]
        year = {i: (0 if y == "unknown" else int(y)) for i, y in fx["years"].items()}
        assert r["hist_release_year"] == [year[fx["item"][j]] for j in ref]
        assert all(t <= r["request_time"] for t in r["hist_time"])
        lengths.append(len(ref))
    assert s.mean_history == pytest.approx(np.mean(lengths))
    if cap == 256:  # ties in time are common in the fixture, and some history holds a same-second rating
        assert any(r["request_time"] in r["hist_time"] for r in rows)


def test_movielens_output_reads_with_its_spec(tmp_path: Path) -> None:
    write_ml100k(tmp_path / "src")
    s = convert_movielens(tmp_path / "src", tmp_path / "out")
    batches, reader = read_all([tmp_path / "out"], load_spec(MOVIELENS_SPEC))
    assert batches == 5
    assert (reader.stats.rows_read, reader.stats.rows_used, reader.stats.rows_rejected) == (s.rows, 80, 0)


def test_movielens_missing_column_names_file_and_column(tmp_path: Path) -> None:
    write_ml100k(tmp_path)
    text = (tmp_path / "ml-100k.inter").read_text().replace("rating:float", "score:float", 1)
    (tmp_path / "ml-100k.inter").write_text(text)
    with pytest.raises(DataError, match=r"ml-100k\.inter: column 'rating' is missing"):
        convert_movielens(tmp_path, tmp_path / "out")
    (tmp_path / "ml-100k.inter").write_text(text.replace("score:float", "rating:float", 1))
    (tmp_path / "ml-100k.user").unlink()
    with pytest.raises(DataError, match=r"ml-100k\.user: file not found"):
        convert_movielens(tmp_path, tmp_path / "out")


def test_fetch_extracts_the_three_files_from_the_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pip is replaced by a stub that writes a fake wheel: the extraction is tested without the network."""
    calls = []

    def fake_pip(cmd: List[str], **_: object) -> subprocess.CompletedProcess:
        calls.append(cmd)
        wheel_dir = Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(wheel_dir / "recbole-1.2.1-py3-none-any.whl", "w") as z:
            for name in movielens.ML100K_FILES:
                z.writestr(f"recbole/dataset_example/ml-100k/{name}", f"{name} contents\n")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(movielens.subprocess, "run", fake_pip)
    dest = fetch_recbole_ml100k(tmp_path / "raw")
    assert sorted(p.name for p in dest.iterdir()) == sorted(movielens.ML100K_FILES)
    assert (dest / "ml-100k.user").read_text() == "ml-100k.user contents\n"
    assert calls[0][1:5] == ["-m", "pip", "download", "recbole==1.2.1"]
    fetch_recbole_ml100k(tmp_path / "raw")  # already there: no second download
    assert len(calls) == 1

    monkeypatch.setattr(movielens.subprocess, "run",
                        lambda cmd, **_: subprocess.CompletedProcess(cmd, 1, "", "No matching distribution"))
    with pytest.raises(DataError, match="could not download recbole==1.2.1.*No matching distribution"):
        fetch_recbole_ml100k(tmp_path / "other")


# ---------------------------------------------------------------------------------------------------------
# KuaiRand
# ---------------------------------------------------------------------------------------------------------

LOG_HEADER = ("user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,is_hate,"
              "long_view,play_time_ms,duration_ms,profile_stay_time,comment_stay_time,is_profile_enter,is_rand,tab")


def write_kuairand(d: Path, n: int = 70, seed: int = 0) -> Dict[str, list]:
    """Two log files (4 users, 12 videos; video 111 has no features, video 105 no tag), user and video features."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    users = [10, 20, 30, 40]
    videos = list(range(100, 112))
    tags = {v: ",".join(str(t) for t in rng.choice(60, size=int(rng.integers(1, 4)), replace=False)) for v in videos}
    tags[105] = ""
    authors = {v: 500 + v % 4 for v in videos}
    with open(d / "video_features_basic_test.csv", "w") as f:
        f.write("video_id,author_id,video_type,upload_dt,upload_type,visible_status,video_duration,server_width,"
                "server_height,music_id,music_type,tag\n")
        for v in videos[:-1]:
            f.write(f'{v},{authors[v]},NORMAL,2022-01-01,ShortImport,public,{v * 100}.0,720,1280,0,0,"{tags[v]}"\n')
    degree = {10: "full_active", 20: "high_active", 30: "UNKNOWN"}  # user 40 has no features
    with open(d / "user_features_test.csv", "w") as f:
        f.write("user_id,user_active_degree,is_lowactive_period,is_live_streamer,is_video_author,register_days,"
                "onehot_feat0\n")
        for u in degree:
            f.write(f"{u},{degree[u]},0,0,0,{u * 3},1\n")
    cols: Dict[str, list] = {k: [] for k in ("user", "video", "time_ms", "click", "like", "long_view", "duration",
                                             "tab")}
    for _ in range(n):
        cols["user"].append(int(rng.choice(users)))
        cols["video"].append(int(rng.choice(videos)))
        cols["time_ms"].append(1_649_412_000_000 + int(rng.integers(0, 15)) * 1500)  # ties in ms and in seconds
        cols["click"].append(int(rng.random() < 0.6))
        cols["like"].append(int(cols["click"][-1] and rng.random() < 0.3))
        cols["long_view"].append(int(rng.random() < 0.4))
        cols["duration"].append(int(rng.integers(1000, 60000)))
        cols["tab"].append(int(rng.integers(0, 15)))
    for name, lo, hi in (("log_standard_4_08_to_4_21_test.csv", 0, n // 2), ("log_standard_4_22_to_5_08_test.csv",
                                                                              n // 2, n)):
        with open(d / name, "w") as f:
            f.write(LOG_HEADER + "\n")
            for i in range(lo, hi):
                f.write(f"{cols['user'][i]},{cols['video'][i]},20220408,1200,{cols['time_ms'][i]},"
                        f"{cols['click'][i]},{cols['like'][i]},0,0,0,0,{cols['long_view'][i]},1000,"
                        f"{cols['duration'][i]},0,0,0,0,{cols['tab'][i]}\n")
    cols.update(tags=tags, authors=authors, degree=degree)
    return cols


def test_kuairand_matches_the_default_spec_schema(tmp_path: Path) -> None:
    spec_columns = {c for c, _, _, _ in expected_columns(default_spec())}
    assert set(KUAIRAND_SCHEMA.names) == spec_columns


def test_kuairand_rows_history_and_reader(tmp_path: Path) -> None:
    fx = write_kuairand(tmp_path / "src")
    s = convert_kuairand(tmp_path / "src", tmp_path / "out", max_history=6, row_group_rows=25)
    rows = read_rows(s.files)
    assert (s.rows, s.users, s.items) == (70, len(set(fx["user"])), len(set(fx["video"])))
    assert s.click_rate == pytest.approx(np.mean(fx["click"]))

    def tag_list(v: int) -> List[int]:
        return [int(t) for t in fx["tags"].get(v, "").split(",") if t] if v != 111 else []

    def action(j: int) -> int:
        return 3 if fx["like"][j] else 2 if fx["long_view"][j] else 1

    for i, r in enumerate(rows):
        v, u = fx["video"][i], fx["user"][i]
        assert (r["user_id"], r["item_id"], r["request_time"]) == (u, v, fx["time_ms"][i] // 1000)
        assert (r["click"], r["like"], r["finish"]) == (fx["click"][i], fx["like"][i], fx["long_view"][i])
        assert r["item_tags"] == tag_list(v) and r["item_category"] == (tag_list(v) or [0])[0]
        assert r["author_id"] == (fx["authors"][v] if v != 111 else 0)
        assert r["device"] == fx["tab"][i]
        assert r["item_duration"] == pytest.approx(fx["duration"][i] / 1000)
        assert r["user_region"] == ACTIVE_DEGREES.get(fx["degree"].get(u, ""), 0)
        assert r["user_active_days"] == (u * 3 if u != 40 else 0)
        ref = reference_history(fx["user"], fx["time_ms"], [c == 1 for c in fx["click"]], i, 6)
        assert r["hist_item_id"] == [fx["video"][j] for j in ref]
        assert r["hist_author_id"] == [fx["authors"][fx["video"][j]] if fx["video"][j] != 111 else 0 for j in ref]
        assert r["hist_item_category"] == [(tag_list(fx["video"][j]) or [0])[0] for j in ref]
        assert r["hist_action"] == [action(j) for j in ref]
        assert r["hist_time"] == [fx["time_ms"][j] // 1000 for j in ref]
    assert max(len(r["hist_item_id"]) for r in rows) == 6

    batches, reader = read_all([tmp_path / "out"], default_spec())
    assert batches == 5
    assert (reader.stats.rows_read, reader.stats.rows_rejected) == (70, 0)


def test_kuairand_missing_column_names_file_and_column(tmp_path: Path) -> None:
    write_kuairand(tmp_path)
    path = tmp_path / "log_standard_4_22_to_5_08_test.csv"
    path.write_text(path.read_text().replace("is_click", "clicked", 1))
    with pytest.raises(DataError, match=r"log_standard_4_22_to_5_08_test\.csv: column 'is_click' is missing"):
        convert_kuairand(tmp_path, tmp_path / "out")


def test_kuairand_optional_columns_and_files_default(tmp_path: Path) -> None:
    d = tmp_path / "src"
    d.mkdir()
    (d / "log_standard_x.csv").write_text("user_id,video_id,time_ms,is_click\n1,7,1000000,1\n1,8,2000000,0\n")
    s = convert_kuairand(d, tmp_path / "out")
    rows = read_rows(s.files)
    assert [r["hist_item_id"] for r in rows] == [[], [7]]
    assert [r["hist_action"] for r in rows] == [[], [1]]
    assert {(r["like"], r["finish"], r["device"], r["author_id"], r["item_duration"]) for r in rows} == {
        (0, 0, 0, 0, 0.0)}
    with pytest.raises(DataError, match="no log_standard_\\*.csv files"):
        convert_kuairand(tmp_path / "out", tmp_path / "out2")


# ---------------------------------------------------------------------------------------------------------
# Shared pieces and the job
# ---------------------------------------------------------------------------------------------------------


def test_history_index_random_sweep() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(0, 60))
        user, time_ = rng.integers(0, 4, size=n), rng.integers(0, 6, size=n)
        keep, cap = rng.random(n) < 0.5, int(rng.integers(0, 8))
        hist = HistoryIndex.build(user, time_, keep, cap)
        offsets, rows = hist.gather(0, n)
        for i in range(n):
            assert rows[offsets[i]:offsets[i + 1]].tolist() == reference_history(user, time_, keep, i, cap)


def test_convert_help() -> None:
    out = subprocess.run([sys.executable, "-m", "pyramid_mixer.jobs.convert", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "movielens" in out and "kuairand" in out and "--source" in out


def test_convert_job_prints_one_line_summary(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_ml100k(tmp_path / "src")
    convert_job.main(["movielens", "--source", str(tmp_path / "src"), "--out", str(tmp_path / "out"),
                      "--max-history", "4"])
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("wrote 80 rows (6 users") and str(tmp_path / "out") in out[0]
    assert "movielens.yaml" in out[0]
    table = pq.read_table(tmp_path / "out").to_pydict()
    train = [len(h) for h, a in zip(table["hist_item_id"], table["events_after"]) if a >= 2]
    assert max(train) == 4  # the held-out rows (events_after 0, 1) keep their whole history
