"""Synthetic Douyin-style impression logs with planted, known structure.

``generate(config, out_dir)`` writes ``part-00000.parquet, part-00001.parquet, ...`` in the default
input contract (see ``SCHEMA``): one row is one impression of a candidate video to a user, with the
user's earlier engaged behaviours as five equally long lists (most recent first: item, author, the
item's category as side information, action code, time), three binary labels,
a stay time, and the *true* probabilities that drew the labels (``click_prob``, ``finish_prob``,
``like_prob``), so that a report can print the oracle AUC, the ceiling no model can beat.

Everything is drawn from numpy generators seeded by ``(seed, stream)``; the same config gives
byte-identical table contents. The work is vectorised and streamed: users are processed in chunks of
``users_per_chunk`` (a chunk's behaviour timeline and impressions are built with array operations, the
history lists are gathered with ``searchsorted`` and index arithmetic), and rows leave through a
``ParquetWriter`` in row groups of ``row_group_rows``; memory is bounded by a chunk and a row group
(``row_group_rows`` x mean history length x 32 bytes), never the table.
``max_history`` consumes no randomness: two configs that differ only in the cap write the same rows,
with histories truncated to a different length.

The world (fixed per seed)
--------------------------
* ``categories`` categories with a popularity share ``s_c ~ Dirichlet(2)``. Each author has a *main
  category* (drawn by ``s_c``; the first ``categories`` authors cover every category once). Items get an
  author (Zipf(0.8) over authors; the first ``authors`` items cover every author once) and the author's
  main category with probability ``author_focus``, otherwise a category drawn by ``s_c``.
* Item popularity is Zipf(``item_zipf``) by a random rank within its category; the global exposure
  probability of an item is ``s_c * zipf_share``. ``popularity score`` = that log-probability,
  standardised. Each item has a hidden quality ``q_i ~ N(0, item_quality_std)`` (learnable from the
  item id only) and a duration (log-normal around a per-category median, 3..600 s).
* Tags: 1-4 distinct tags of the category's four tags ``4(c-1)+1 .. 4c``; each is replaced by a random
  tag of ``[1, 4*categories]`` with probability 0.15.
* Each region has a trending category; each device a small click bias ``N(0, 0.15)``.

Users (fixed per seed)
----------------------
* Activity ``r_u ~ LogNormal(log behaviours_per_day, activity_sigma)`` behaviours per day, from a start
  day: ``new_user_share`` of users join in the last ``impression_days + 1`` days (short or empty
  histories), 60 % of the others at day 0, the rest later (but two weeks before the impression window).
* Impressions per user ``~ Multinomial(rows, ∝ sqrt(r_u) * days active in the impression window)``.
* Region (Zipf), device (Zipf), a click bias ``b_u ~ N(0, user_bias_std)``.
* A taste for the long tail ``ν_u ~ N(0, 1)`` (its own stream; off by default, see below): long-tail
  users (``ν_u > 0``) prefer unpopular items, mainstream users popular ones. With ``niche(i)`` = minus the
  item's standardised log popularity, it changes what a user *likes* and *clicks*, never which items the
  user is shown.

The three periods of a user's interest (drawn per user chunk)
------------------------------------------------------------
* **Long term** (stable for the whole span): a taste ``θ_u ~ Dirichlet(0.3)`` over categories; the
  *relative taste* ``L_u(c) = θ_u(c) / max θ_u``; three favourite authors, each from a category drawn by
  ``θ_u``.
* **Middle term**: the span is cut into periods of ``middle_period_days`` (a random phase per user);
  each period has one interest category, and a second one with probability 0.5, both uniform over the
  categories (drift, independent of the long-term taste).
* **Short term**: the span is cut into blocks of ``burst_hours``; a block is a *burst* with probability
  ``burst_prob``, with a burst category (by ``s_c``: trends) and a burst author of that category.

Behaviour timeline (the history)
--------------------------------
Sessions (``Poisson(r_u * active days / session_length)`` of them, uniform in time, ``1 + Poisson(
session_length - 1)`` behaviours 45 s apart on average). Each behaviour's item comes from a source:
inside a burst block, with probability ``behaviour_burst_share``, the burst (its author with
probability 0.35, else an item of its category); otherwise middle term (``behaviour_middle``, 0.30),
long term (``behaviour_long``, 0.40), a favourite author (``behaviour_author``, 0.12) or a popular item
(the rest, 0.18). Category sources take an item by popularity within the category.

Sessions can be topical (``session_focus``, 0 by default; the quality benchmark uses 0.8): a user who
opens a session on a long-term taste, a middle-term interest or a favourite author tends to stay on it,
as people do when they binge a topic or a creator. Each later behaviour of the session, unless it comes
from the burst, repeats the opener's source with probability ``session_focus``: an item of the opener's
category, or of its author. A session opened on a popular or burst item has no topic. The draws come from
their own stream, so the rest of the data does not move. Topical sessions make consecutive behaviours
alike, so the recent history holds few *independent* samples of the user's interests: the ~56 most recent
behaviours are about nine sessions, three or four of them on the long-term taste, while the long-term
taste needs many sessions to show. Reading it takes the older history, where a pooled group of behaviours
spans one or two sessions and so one or two topics: the structure a pyramid of pooled levels is for.

The action code grows with the match of the item to the user's state at that time, with
``m = L_u(c) + [c in middle] + [c == burst category] + [favourite author on its main category]``:
``P(like=3) = 0.04 + 0.06 m + 0.35 [fav on-category] + niche_like_weight * ν_u * niche(i)`` (clipped to
``[0.01, 1]``), ``P(finish=2) = 0.20 + 0.08 m + mood_finish_weight * s * form(i)`` (the session mood
below; at least 0), else click=1.
So a favourite author shows in the history as an author that is often *liked* (an author x action
cross inside one behaviour), while a burst author is recent but mostly clicked; and the long-tail taste
shows only as *which* of the items a user sees get liked: the user's likes lean to unpopular items (or to
popular ones), an item x action cross inside each behaviour, spread over the whole history.

Sessions can have a mood (``mood_finish_weight``, ``mood_taste_weight``; 0 by default): each session is
*lean-back* (``s = +1``) or *browsing* (``s = -1``), with probability 1/2, from its own stream. A
lean-back user sits through long-form videos and swipes past quick clips; a browsing one finishes quick
clips and abandons long-form ones. So the finish probability of a behaviour moves by
``mood_finish_weight * s * form(i)``, with ``form(i) = +1`` when the item's category is long-form (its
median duration is above 20 s) and ``-1`` otherwise; over both moods, the finish share and which items
are seen do not change. In the click (below), lean back the user follows the long-term taste more,
browsing less (at ``mood_taste_weight = 1``, not at all). So the mood of the request's session shows in
the history only as an action x category cross inside each of the session's behaviours (the head of the
history), and it scales another term instead of adding one. DIN's attention unit gives one weight per
behaviour, spent on matching the candidate, and an additive term could share that weight; the mood needs
a second, candidate-free reading of each behaviour's features together. It is a probe for
within-behaviour (cross-feature) mixing that the readout's one weight per behaviour does not cover. Its
draws come from their own stream, so switching it on changes actions and labels only.

Where the periods sit in the history, for the default activity (median 8 behaviours a day): the
burst is the head of the history (the current session, a handful of positions), the current middle
period began 0-14 days ago (up to ~110 positions for the median user, i.e. the short and middle
levels of a pyramid ``[0, 32) / [32, 288) / [288, 2336)``), the long-term taste is spread over all
of it (about a thousand positions for the median user; ~25 % of rows reach a cap of 2336, ~4 % have
fewer than 32 behaviours, mostly new users).

Impressions and labels
----------------------
An impression is a request right after one of the user's behaviours in the impression window
(``request_time = behaviour time + 1 + Exp(20 s)``; probability ``anchor_share``), else at a uniform time
in the window (for users without behaviours there, always). Its history = every behaviour with
``time < request_time``, most recent first, capped at ``max_history``. The request is in the session of
its most recent behaviour when that is under 5 minutes old (``s`` = that session's mood; ``s = 0``
outside a session). The burst is **effective** when the request's block is a burst and the user has
engaged in that block before the request (so it is visible at the head of the history). The candidate
comes from the effective burst (``exposure_short``), the middle term (``exposure_middle``), the long term
(``exposure_long``), a favourite author (``exposure_author``) or global popularity (the rest, and the
burst's share when no burst is effective). With ``c, a, i`` the candidate's category, author and item::

    z_click = click_bias + b_u + e_u + device_bias                             # e_u: enthusiasm (0 by default)
              + long_weight * (1 + mood_taste_weight * s) * L_u(c)            # long term, session mood
              + middle_weight * [c in middle interest at request time]        # middle term
              + short_weight * [burst effective and c == burst category]      # short term
              + short_author_weight * [burst effective and a == burst author]
              + author_weight * [a favourite and c == main(a)]                # author x category cross:
              + off_category_author_weight * [a favourite and c != main(a)]   #   same author, other sign
              + region_weight * [c == region's trending category]
              + popularity_weight * popularity_score(i) + q_i
              + niche_weight * ν_u * niche(i)                                   # long-tail taste
              + noise_std * N(0, 1)                                           # unobservable
    click_prob  = sigmoid(z_click);  click ~ Bernoulli(click_prob)

    z_finish = finish_bias - duration_weight * log(duration / 20 s)
               + 0.5 L_u(c) + 0.5 [middle] + 0.5 [short] + q_i + noise_std * N(0, 1)
    z_like   = like_bias + like_author_weight * [a favourite and c == main(a)]
               + 0.5 L_u(c) + 0.4 [short] + q_i + e_u + noise_std * N(0, 1)
    finish_prob = click_prob * sigmoid(z_finish);  like_prob = click_prob * sigmoid(z_like)

``finish`` and ``like`` happen only after a click (``finish = click * Bernoulli(sigmoid(z_finish))``,
likewise ``like``), so ``finish_prob`` / ``like_prob`` are the unconditional probabilities of their
labels. ``stay_time`` is ``duration * (1 + Exp(0.3))`` after a finish, ``duration * U(0.1, 0.9)`` after
a click without finish, and ``min(duration, U(0.3, 3))`` seconds when scrolled past.

Every term but the noise is recoverable from the inputs: the long term from the category mix of the
whole history, the middle term from the last ~two weeks of it, the short term only from its head,
the favourite-author term only by crossing the candidate's author with its category (the same author
off its main category *lowers* the click), and all of them only by comparing the history with the
*candidate* (target awareness). The long-tail term (``niche_weight``, ``niche_like_weight``; 0 by
default) is the exception: no candidate feature picks out the behaviours that reveal ``ν_u`` (they are
spread over every category and author), so reading it takes crossing each behaviour's item with its
action, within the behaviour, over the whole history: a probe for within-behaviour (cross-feature)
mixing. Its draws come from their own stream, so switching it on changes actions and labels only.
Setting one weight to 0 removes one component, for ablations. The per-impression noise is inside the
oracle probabilities but not in the inputs, so a perfect model scores below the oracle AUC. Ids are
1-based; 0 never occurs.

With the defaults (200,000 rows) the click rate is ~0.31, finish ~0.19, like ~0.09 and the oracle
click AUC ~0.82. Subtracting one planted term from the oracle logit (a rough view of what a model
blind to it loses) gives AUC ~0.76 without the long term, ~0.79 without the middle term, ~0.78
without the short term (burst category and author), ~0.80 without the favourite-author terms and
~0.81 when the off-category sign is ignored (the author x category cross, 2.6 % of rows). With
``niche_weight=0.4, niche_like_weight=0.1`` the oracle is ~0.86, and ~0.79 without the long-tail term.
With ``mood_finish_weight=0.2, mood_taste_weight=1.0`` it is ~0.85, and ~0.79 blind to the session mood.

Rows are grouped by user chunk in the files and sorted by ``request_time`` within a chunk; readers
should shuffle for training. ``request_id`` is the 1-based row number in write order.

Example::

    >>> import tempfile
    >>> cfg = SyntheticConfig(rows=2_000, users=200, items=2_000, authors=300, rows_per_file=1_500)
    >>> with tempfile.TemporaryDirectory() as out:
    ...     summary = generate(cfg, out)
    >>> summary.rows, len(summary.files), summary.oracle_click_auc > 0.7
    (2000, 2, True)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import pyarrow as pa

from pyramid_mixer.features.datasets.histories import gather_ranges, list_column
from pyramid_mixer.features.datasets.parts import PartWriter, check_out_dir

__all__ = [
    "SCHEMA",
    "GenerateSummary",
    "SyntheticConfig",
    "generate",
    "item_catalog",
    "oracle_columns",
]

_DAY = 86_400
_LIST = pa.list_(pa.int64())

SCHEMA = pa.schema(
    [
        ("request_id", pa.int64()),
        ("user_id", pa.int64()),
        ("item_id", pa.int64()),
        ("author_id", pa.int64()),
        ("request_time", pa.int64()),
        ("item_category", pa.int64()),
        ("item_tags", _LIST),
        ("user_region", pa.int64()),
        ("device", pa.int64()),
        ("item_duration", pa.float32()),
        ("user_active_days", pa.float32()),
        ("click", pa.int8()),
        ("finish", pa.int8()),
        ("like", pa.int8()),
        ("stay_time", pa.float32()),
        ("hist_item_id", _LIST),
        ("hist_author_id", _LIST),
        ("hist_item_category", _LIST),
        ("hist_action", _LIST),
        ("hist_time", _LIST),
        ("click_prob", pa.float32()),
        ("finish_prob", pa.float32()),
        ("like_prob", pa.float32()),
    ]
)

# Action codes in hist_action, by strength of engagement.
ACTION_CLICK, ACTION_FINISH, ACTION_LIKE = 1, 2, 3

# Sources an item (history behaviour or candidate) is drawn from.
_POPULAR, _LONG, _MIDDLE, _SHORT_CATEGORY, _SHORT_AUTHOR, _AUTHOR = range(6)
_FAVOURITES = 3  # favourite authors per user
_SESSION_GAP = 300  # seconds: a request less than this after its most recent behaviour is in that session
_HIST_BUDGET = 4_000_000  # history elements gathered per sub-batch (bounds memory with long histories)


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate and how strong each planted effect is (click-logit units unless stated).

    Args:
        seed: seed of every random stream; the same config writes the same table contents.
        rows: impressions to write (exactly this many).
        users / items / authors / categories / regions / devices: id ranges ``[1, n]``; needs
            ``items >= authors >= categories``.
        max_history: cap on a row's history length (most recent behaviours kept).
        days: span of the behaviour timeline in days.
        impression_days: impressions happen in the last ``impression_days`` days.
        start_time: unix seconds of day 0.
        rows_per_file: rows per ``part-NNNNN.parquet`` (the last file may hold fewer).
        row_group_rows: rows per Parquet row group (a file's last group may hold fewer).
        users_per_chunk: users generated together; bounds memory (with ``_HIST_BUDGET``) and fixes the
            random streams, so changing it changes the data.
        behaviours_per_day: median engaged behaviours per user per active day.
        activity_sigma: log-normal spread of user activity.
        new_user_share: share of users who join in the last ``impression_days + 1`` days.
        session_length: mean behaviours per session.
        anchor_share: share of impressions placed right after a behaviour (inside a session).
        author_focus: probability that an item is in its author's main category.
        item_zipf: Zipf exponent of item popularity within a category.
        middle_period_days: length of a middle-term interest period.
        burst_hours: length of a short-term block.
        burst_prob: probability that a block is a burst.
        behaviour_burst_share: share of a burst block's behaviours drawn from the burst.
        behaviour_middle / behaviour_long / behaviour_author: shares of the other behaviours drawn from the
            middle term, the long term and a favourite author (the rest are popular items).
        session_focus: probability that a behaviour repeats its session's topic (see "Behaviour timeline").
        exposure_short / exposure_middle / exposure_long / exposure_author: shares of candidates drawn
            from the effective burst, the middle term, the long term, a favourite author (the rest by
            global popularity).
        click_bias: intercept of the click logit.
        long_weight: weight of the relative long-term taste ``L_u(c)`` in ``[0, 1]``.
        middle_weight: bonus when the candidate's category is a current middle-term interest.
        short_weight: bonus when the candidate's category is the effective burst's category.
        short_author_weight: bonus when the candidate's author is the effective burst's author.
        author_weight: bonus for a favourite author's item in the author's main category.
        off_category_author_weight: term for a favourite author's item outside that category.
        region_weight: bonus when the category is the region's trending one.
        popularity_weight: weight of the standardised log popularity.
        niche_weight: weight of ``ν_u * niche(i)``: a long-tail user's taste for unpopular candidates (and a
            mainstream user's for popular ones); ``niche(i)`` is minus the standardised log popularity.
        niche_like_weight: how much ``ν_u * niche(i)`` raises the like probability of a behaviour; the only
            trace of ``ν_u`` in the history (it does not change which items a user sees).
        mood_finish_weight: how much a session's mood ``s = ±1`` moves the finish probability of a behaviour,
            ``+ mood_finish_weight * s * form(i)`` with ``form(i) = ±1`` for a long-form / short-form category:
            a lean-back session (+1) finishes long-form videos, a browsing one (-1) short ones.
        mood_taste_weight: how much the mood of the request's session scales the long-term term,
            ``long_weight * (1 + mood_taste_weight * s) * L_u(c)``: lean back, the user follows the long-term
            taste; browsing, much less. ``s = 0`` for a request outside a session.
        item_quality_std: std of the hidden per-item quality (also in finish and like).
        user_bias_std: std of the per-user click bias (it never shows in the history).
        enthusiasm_std: std of a per-user enthusiasm ``e_u`` (0: off; its own stream, so switching it on
            moves no other draw). Real users differ in how much they like things, and it shows in their
            history: ``e_u`` is added to the click and like logits of their impressions and
            ``0.1 * e_u`` to the like probability of their behaviours, so a history with many likes tells
            a user who clicks and likes much (a signal that separates users, and ranks no user's items).
        noise_std: std of the per-impression logit noise (in the oracle, not in the inputs).
        finish_bias / duration_weight: finish-given-click intercept and weight of ``-log(duration/20)``.
        like_bias / like_author_weight: like-given-click intercept and favourite-author bonus.
    """

    seed: int = 0
    rows: int = 200_000
    users: int = 5_000
    items: int = 50_000
    authors: int = 5_000
    categories: int = 32
    regions: int = 30
    devices: int = 8
    max_history: int = 256
    days: int = 120
    impression_days: int = 7
    start_time: int = 1_700_000_000
    rows_per_file: int = 100_000
    row_group_rows: int = 20_000
    users_per_chunk: int = 256
    # activity and the world
    behaviours_per_day: float = 8.0
    activity_sigma: float = 1.0
    new_user_share: float = 0.12
    session_length: float = 6.0
    anchor_share: float = 0.9
    author_focus: float = 0.7
    item_zipf: float = 0.9
    # the three periods
    middle_period_days: float = 14.0
    burst_hours: float = 6.0
    burst_prob: float = 0.35
    behaviour_burst_share: float = 0.6
    behaviour_middle: float = 0.30
    behaviour_long: float = 0.40
    behaviour_author: float = 0.12
    session_focus: float = 0.0
    # exposure (candidate) mixture
    exposure_short: float = 0.25
    exposure_middle: float = 0.15
    exposure_long: float = 0.2
    exposure_author: float = 0.12
    # planted click effects
    click_bias: float = -3.0
    long_weight: float = 2.4
    middle_weight: float = 1.4
    short_weight: float = 2.0
    short_author_weight: float = 0.6
    author_weight: float = 1.5
    off_category_author_weight: float = -1.0
    region_weight: float = 0.3
    popularity_weight: float = 0.35
    niche_weight: float = 0.0
    niche_like_weight: float = 0.0
    mood_finish_weight: float = 0.0
    mood_taste_weight: float = 0.0
    item_quality_std: float = 0.3
    user_bias_std: float = 0.4
    enthusiasm_std: float = 0.0
    noise_std: float = 0.5
    # finish and like (given a click)
    finish_bias: float = 0.0
    duration_weight: float = 0.8
    like_bias: float = -1.5
    like_author_weight: float = 1.5

    def __post_init__(self) -> None:
        _check_config(self)


@dataclass(frozen=True)
class GenerateSummary:
    """What ``generate`` wrote.

    Attributes:
        rows: rows written (== ``config.rows``).
        files: paths of the Parquet files, in order.
        users: distinct users with at least one row.
        seconds: wall time of the run.
        mean_history: mean history length per row (after the cap).
        click_rate / finish_rate / like_rate: label means.
        oracle_click_auc: exact AUC of ``click_prob`` against ``click`` (the ceiling of any model).
    """

    rows: int
    files: List[str]
    users: int
    seconds: float
    mean_history: float
    click_rate: float
    finish_rate: float
    like_rate: float
    oracle_click_auc: float


def oracle_columns() -> Dict[str, str]:
    """Returns the label -> true-probability column names written by ``generate``."""
    return {"click": "click_prob", "finish": "finish_prob", "like": "like_prob"}


# --------------------------------------------------------------------------------------------------
# config checks


def _check_config(cfg: SyntheticConfig) -> None:
    """Raises ValueError naming the first invalid field of ``cfg`` and what it must be."""
    positive = ["rows", "users", "items", "authors", "categories", "regions", "devices", "days",
                "impression_days", "rows_per_file", "row_group_rows", "users_per_chunk"]
    for name in positive:
        if getattr(cfg, name) < 1:
            raise ValueError(f"SyntheticConfig.{name} = {getattr(cfg, name)}; it must be >= 1")
    if cfg.max_history < 0:
        raise ValueError(f"SyntheticConfig.max_history = {cfg.max_history}; it must be >= 0")
    if not cfg.items >= cfg.authors >= cfg.categories:
        raise ValueError(
            f"SyntheticConfig needs items >= authors >= categories (every category gets an author and "
            f"every author an item); got items={cfg.items}, authors={cfg.authors}, "
            f"categories={cfg.categories}"
        )
    if cfg.impression_days >= cfg.days:
        raise ValueError(
            f"SyntheticConfig.impression_days = {cfg.impression_days} must be < days = {cfg.days} "
            f"(impressions happen at the end of the behaviour span)"
        )
    shares = ["new_user_share", "anchor_share", "author_focus", "burst_prob", "behaviour_burst_share",
              "behaviour_middle", "behaviour_long", "behaviour_author", "session_focus",
              "exposure_short", "exposure_middle", "exposure_long", "exposure_author"]
    for name in shares:
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise ValueError(f"SyntheticConfig.{name} = {getattr(cfg, name)}; it must be in [0, 1]")
    mixtures = [
        (["exposure_short", "exposure_middle", "exposure_long", "exposure_author"], "is popularity-driven exposure"),
        (["behaviour_middle", "behaviour_long", "behaviour_author"], "of the behaviours are popular items"),
    ]
    for names, rest in mixtures:
        total = sum(getattr(cfg, name) for name in names)
        if total > 1.0:
            raise ValueError(f"SyntheticConfig {' + '.join(names)} = {total:.3f}; it must be <= 1 (the rest {rest})")
    for name in ["behaviours_per_day", "session_length", "middle_period_days", "burst_hours"]:
        if getattr(cfg, name) <= 0:
            raise ValueError(f"SyntheticConfig.{name} = {getattr(cfg, name)}; it must be > 0")
    for name in ["activity_sigma", "item_zipf", "item_quality_std", "user_bias_std", "enthusiasm_std", "noise_std",
                 "mood_finish_weight", "mood_taste_weight"]:
        if getattr(cfg, name) < 0:
            raise ValueError(f"SyntheticConfig.{name} = {getattr(cfg, name)}; it must be >= 0")


# --------------------------------------------------------------------------------------------------
# the world: items, authors, categories


@dataclass(frozen=True)
class _World:
    """Item, author and category tables, indexed by id (index 0 unused)."""

    item_category: np.ndarray  # [I+1] int64
    item_author: np.ndarray  # [I+1] int64
    item_duration: np.ndarray  # [I+1] float32 seconds
    item_long_form: np.ndarray  # [I+1] float64, +1 if the item's category is long-form (median > 20 s), else -1
    item_popularity: np.ndarray  # [I+1] float64 global exposure probability
    item_pop_score: np.ndarray  # [I+1] float64 standardised log popularity
    item_quality: np.ndarray  # [I+1] float64
    tag_offsets: np.ndarray  # [I+2] int64, tags of item i are tag_values[off[i]:off[i+1]]
    tag_values: np.ndarray  # int64
    author_main: np.ndarray  # [A+1] int64 main category
    cat_items: np.ndarray  # item ids sorted by (category, popularity rank)
    cat_item_keys: np.ndarray  # (category - 1) + cumulative popularity share within it, per cat_items
    cat_item_start: np.ndarray  # [C+1] first position of a category in cat_items
    cat_item_end: np.ndarray  # [C+1] one past its last position
    global_cdf: np.ndarray  # cumulative global exposure probability along cat_items
    author_items: np.ndarray  # item ids sorted by author
    author_item_start: np.ndarray  # [A+1]
    author_item_count: np.ndarray  # [A+1]
    cat_authors: np.ndarray  # author ids sorted by main category
    cat_author_start: np.ndarray  # [C+1]
    cat_author_count: np.ndarray  # [C+1]
    category_share: np.ndarray  # [C] popularity share of each category (index c-1)
    region_category: np.ndarray  # [R+1] trending category of each region
    device_bias: np.ndarray  # [D+1] click bias of each device


def _zipf_weights(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Returns ``n`` Zipf weights ``1 / rank^exponent`` in a random order, normalised to sum 1."""
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    w = w[rng.permutation(n)]
    return w / w.sum()


def _group_bounds(sorted_groups: np.ndarray, n_groups: int) -> Tuple[np.ndarray, ...]:
    """Returns ``(start, count)`` arrays of length ``n_groups + 1`` for 1-based sorted group ids."""
    count = np.bincount(sorted_groups, minlength=n_groups + 1).astype(np.int64)
    start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
    return start, count


def _build_items(rng: np.random.Generator, cfg: SyntheticConfig,
                 category_share: np.ndarray) -> Tuple[np.ndarray, ...]:
    """Returns ``(author_main [A+1], item_author [I+1], item_category [I+1])``."""
    C, A, I = cfg.categories, cfg.authors, cfg.items
    author_main = np.zeros(A + 1, np.int64)
    author_main[1 : C + 1] = np.arange(1, C + 1)  # every category has an author
    author_main[C + 1 :] = 1 + rng.choice(C, size=A - C, p=category_share)
    item_author = np.zeros(I + 1, np.int64)
    item_author[1 : A + 1] = np.arange(1, A + 1)  # every author has an item
    item_author[A + 1 :] = 1 + rng.choice(A, size=I - A, p=_zipf_weights(rng, A, 0.8))
    off_main = rng.random(I + 1) >= cfg.author_focus
    off_main[: A + 1] = False  # item c of author c (c <= C) keeps category c: no category is empty
    item_category = author_main[item_author]
    item_category[off_main] = 1 + rng.choice(C, size=int(off_main.sum()), p=category_share)
    item_category[0] = 0
    return author_main, item_author, item_category


def _build_tags(rng: np.random.Generator, item_category: np.ndarray,
                categories: int) -> Tuple[np.ndarray, ...]:
    """Returns ``(tag_offsets [I+2], tag_values)``: 1-4 tags per item, mostly of its category."""
    n_items = item_category.shape[0]  # I + 1, item 0 gets tags too (unused)
    n_tags = rng.integers(1, 5, size=n_items)
    first = rng.integers(0, 4, size=n_items)
    offsets = np.concatenate([[0], np.cumsum(n_tags)]).astype(np.int64)
    owner = np.repeat(np.arange(n_items), n_tags)
    j = np.arange(offsets[-1]) - offsets[owner]
    values = 4 * (item_category[owner] - 1) + (first[owner] + j) % 4 + 1
    noisy = rng.random(values.shape[0]) < 0.15
    values[noisy] = rng.integers(1, 4 * categories + 1, size=int(noisy.sum()))
    values[owner == 0] = 1
    return offsets, values.astype(np.int64)


def _build_world(cfg: SyntheticConfig) -> _World:
    """Draws the item / author / category world of ``cfg.seed`` (stream 0)."""
    rng = np.random.default_rng([cfg.seed, 0])
    C, A, I = cfg.categories, cfg.authors, cfg.items
    category_share = rng.dirichlet(np.full(C, 2.0))
    author_main, item_author, item_category = _build_items(rng, cfg, category_share)

    # popularity: Zipf over a random rank within the category
    order = 1 + np.lexsort((rng.random(I), item_category[1:]))  # item ids by (category, rank)
    cat_item_start, cat_count = _group_bounds(item_category[order], C)
    rank = np.arange(I) - cat_item_start[item_category[order]]
    zipf = 1.0 / (rank + 1.0) ** cfg.item_zipf
    cat_total = np.bincount(item_category[order], weights=zipf, minlength=C + 1)
    within = zipf / cat_total[item_category[order]]
    # cumulative share restarting at each category: cumsum minus the cumsum before the category start
    before = np.concatenate([[0.0], np.cumsum(within)])[cat_item_start[1:]]
    cum_within = np.cumsum(within) - np.repeat(before, cat_count[1:])
    popularity = np.zeros(I + 1)
    popularity[order] = category_share[item_category[order] - 1] * within
    log_pop = np.log(popularity[1:])
    pop_score = np.zeros(I + 1)
    pop_score[1:] = (log_pop - log_pop.mean()) / max(log_pop.std(), 1e-9)

    cat_median = np.exp(rng.normal(np.log(20.0), 0.4, size=C + 1))
    duration = cat_median[item_category] * np.exp(rng.normal(0.0, 0.7, size=I + 1))
    quality = rng.normal(0.0, cfg.item_quality_std, size=I + 1)
    tag_offsets, tag_values = _build_tags(rng, item_category, C)

    author_items = 1 + np.argsort(item_author[1:], kind="stable")
    author_item_start, author_item_count = _group_bounds(item_author[author_items], A)
    cat_authors = 1 + np.argsort(author_main[1:], kind="stable")
    cat_author_start, cat_author_count = _group_bounds(author_main[cat_authors], C)
    region_category = np.concatenate([[0], 1 + rng.choice(C, size=cfg.regions, p=category_share)])
    device_bias = np.concatenate([[0.0], rng.normal(0.0, 0.15, size=cfg.devices)])
    return _World(
        item_category=item_category,
        item_author=item_author,
        item_duration=np.clip(duration, 3.0, 600.0).astype(np.float32),
        item_long_form=np.where(cat_median[item_category] > 20.0, 1.0, -1.0),
        item_popularity=popularity,
        item_pop_score=pop_score,
        item_quality=quality,
        tag_offsets=tag_offsets,
        tag_values=tag_values,
        author_main=author_main,
        cat_items=order.astype(np.int64),
        cat_item_keys=(item_category[order] - 1) + cum_within,
        cat_item_start=cat_item_start,
        cat_item_end=cat_item_start + cat_count,
        global_cdf=np.cumsum(popularity[order]),
        author_items=author_items.astype(np.int64),
        author_item_start=author_item_start,
        author_item_count=author_item_count,
        cat_authors=cat_authors.astype(np.int64),
        cat_author_start=cat_author_start,
        cat_author_count=cat_author_count,
        category_share=category_share,
        region_category=region_category.astype(np.int64),
        device_bias=device_bias,
    )


def item_catalog(config: SyntheticConfig) -> pa.Table:
    """Returns the item table of ``config``'s world, e.g. to map history items to their categories.

    Args:
        config: the generator config (only ``seed`` and the world fields matter).

    Returns:
        A table with one row per item id ``1..items``: ``item_id``, ``author_id``, ``item_category``,
        ``item_tags`` (list<int64>), ``item_duration`` (float32), ``popularity`` (global exposure
        probability, float64), ``author_main_category`` and ``long_form`` (bool: the item's category is
        long-form, its median duration above 20 s; see ``mood_finish_weight``).

    Example::

        >>> cat = item_catalog(SyntheticConfig(items=500, authors=50, categories=8))
        >>> cat.num_rows, int(cat.column("item_category").to_numpy().max()) <= 8
        (500, True)
    """
    w = _build_world(config)
    ids = np.arange(1, config.items + 1)
    offsets = (w.tag_offsets[1:] - w.tag_offsets[1]).astype(np.int32)
    tags = pa.ListArray.from_arrays(pa.array(offsets), pa.array(w.tag_values[w.tag_offsets[1] :]))
    return pa.table(
        {
            "item_id": ids,
            "author_id": w.item_author[1:],
            "item_category": w.item_category[1:],
            "item_tags": tags,
            "item_duration": w.item_duration[1:],
            "popularity": w.item_popularity[1:],
            "author_main_category": w.author_main[w.item_author[1:]],
            "long_form": w.item_long_form[1:] > 0,
        }
    )


# --------------------------------------------------------------------------------------------------
# sampling helpers (all vectorised)


def _sample_grouped(keys: np.ndarray, start: np.ndarray, end: np.ndarray, group: np.ndarray,
                    u: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling inside groups laid out as ``keys = group_offset + cumulative share``.

    Args:
        keys: ``N`` non-decreasing keys; group ``g``'s entries span ``[g, g + 1]``.
        start / end: per-group position bounds, indexed by ``group``.
        group: ``M`` group indices, as used in ``keys``' offsets (0-based offset values).
        u: ``M`` uniforms in ``[0, 1)``.

    Returns:
        ``M`` positions into ``keys``, each inside its group's bounds.
    """
    pos = np.searchsorted(keys, group + u, side="right")
    return np.clip(pos, start, end - 1)


def _items_in_category(world: _World, category: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Returns an item of each (1-based) ``category``, drawn by popularity within it."""
    pos = _sample_grouped(world.cat_item_keys, world.cat_item_start[category], world.cat_item_end[category],
                          category - 1, u)
    return world.cat_items[pos]


def _items_of_author(world: _World, author: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Returns a uniformly drawn item of each ``author``."""
    count = world.author_item_count[author]
    return world.author_items[world.author_item_start[author] + np.minimum((u * count).astype(np.int64), count - 1)]


def _authors_in_category(world: _World, category: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Returns a uniformly drawn author whose main category is ``category``."""
    count = world.cat_author_count[category]
    return world.cat_authors[world.cat_author_start[category] + np.minimum((u * count).astype(np.int64), count - 1)]


def _popular_items(world: _World, u: np.ndarray) -> np.ndarray:
    """Returns items drawn by global exposure probability."""
    pos = np.searchsorted(world.global_cdf, u * world.global_cdf[-1], side="right")
    return world.cat_items[np.minimum(pos, world.cat_items.shape[0] - 1)]


def _categorical_rows(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Draws one 1-based category per entry of ``rows`` from the row's distribution ``probs[row]``."""
    n, C = probs.shape
    cum = np.cumsum(probs, axis=1)
    cum /= cum[:, -1:]
    keys = (np.arange(n)[:, None] + cum).ravel()
    pos = np.searchsorted(keys, rows + rng.random(rows.shape[0]), side="right")
    return np.clip(pos - rows * C, 0, C - 1) + 1


# --------------------------------------------------------------------------------------------------
# users


@dataclass(frozen=True)
class _Users:
    """Per-user fixed attributes for all users (index u-1 for user id u)."""

    rate: np.ndarray  # behaviours per day
    start: np.ndarray  # int64 seconds since day 0 of the first possible behaviour
    impressions: np.ndarray  # int64 rows per user, sums to cfg.rows
    region: np.ndarray
    device: np.ndarray
    bias: np.ndarray
    phase: np.ndarray  # seconds, middle-period phase
    niche: np.ndarray  # ν_u ~ N(0, 1), taste for the long tail (own stream: the other draws do not move)
    enthusiasm: np.ndarray  # e_u ~ N(0, enthusiasm_std): likes much or little, in labels and history (own stream)


def _build_users(cfg: SyntheticConfig) -> _Users:
    """Draws every user's activity, start, impression count and side features (stream 1)."""
    rng = np.random.default_rng([cfg.seed, 1])
    U, end, window = cfg.users, cfg.days * _DAY, (cfg.days - cfg.impression_days) * _DAY
    rate = np.exp(rng.normal(np.log(cfg.behaviours_per_day), cfg.activity_sigma, size=U))
    kind = rng.random(U)
    late_span = max(cfg.days - cfg.impression_days - 14, 0) * _DAY
    new_lo = max(window - _DAY, 0)
    start = np.where(kind < 0.6, 0.0, rng.random(U) * late_span)
    is_new = rng.random(U) < cfg.new_user_share
    start = np.where(is_new, new_lo + rng.random(U) * (end - _DAY // 2 - new_lo), start).astype(np.int64)
    active_in_window = (end - np.maximum(start, window)) / _DAY
    weight = np.sqrt(rate) * active_in_window
    impressions = rng.multinomial(cfg.rows, weight / weight.sum()).astype(np.int64)
    region = 1 + rng.choice(cfg.regions, size=U, p=_zipf_weights(rng, cfg.regions, 0.7))
    device = 1 + rng.choice(cfg.devices, size=U, p=_zipf_weights(rng, cfg.devices, 1.0))
    bias = rng.normal(0.0, cfg.user_bias_std, size=U)
    phase = rng.random(U) * cfg.middle_period_days * _DAY
    niche = np.random.default_rng([cfg.seed, 3]).standard_normal(U)
    enthusiasm = np.random.default_rng([cfg.seed, 6]).normal(0.0, cfg.enthusiasm_std, size=U)
    return _Users(rate, start, impressions, region.astype(np.int64), device.astype(np.int64), bias, phase, niche,
                  enthusiasm)


@dataclass(frozen=True)
class _Interests:
    """The three periods of interest of the ``n`` users of one chunk."""

    taste: np.ndarray  # [n, C] relative long-term taste L_u(c) = θ / max θ (column c-1)
    favourites: np.ndarray  # [n, F] favourite author ids
    middle: np.ndarray  # [n, P, 2] middle-term categories per period (0 = none)
    burst_category: np.ndarray  # [n, B] burst category per block (0 = no burst)
    burst_author: np.ndarray  # [n, B] burst author per block (0 = no burst)


def _period_count(cfg: SyntheticConfig) -> Tuple[float, int, int, int]:
    """Returns ``(middle period seconds, periods, burst block seconds, blocks)`` covering the span."""
    period_s = cfg.middle_period_days * _DAY
    block_s = int(round(cfg.burst_hours * 3600)) or 1
    periods = int(np.ceil(cfg.days * _DAY / period_s)) + 2
    blocks = int(np.ceil(cfg.days * _DAY / block_s)) + 1
    return period_s, periods, block_s, blocks


def _draw_interests(rng: np.random.Generator, cfg: SyntheticConfig, world: _World, n: int) -> _Interests:
    """Draws long, middle and short-term interests of ``n`` users."""
    C = cfg.categories
    _, periods, _, blocks = _period_count(cfg)
    theta = rng.gamma(0.3, size=(n, C)) + 1e-12
    theta /= theta.sum(axis=1, keepdims=True)
    fav_cat = _categorical_rows(rng, theta, np.repeat(np.arange(n), _FAVOURITES))
    favourites = _authors_in_category(world, fav_cat, rng.random(fav_cat.shape[0])).reshape(n, _FAVOURITES)
    middle = rng.integers(1, C + 1, size=(n, periods, 2))
    middle[..., 1] *= rng.random((n, periods)) < 0.5
    has_burst = rng.random((n, blocks)) < cfg.burst_prob
    burst_category = 1 + rng.choice(C, size=(n, blocks), p=world.category_share)
    burst_author = _authors_in_category(world, burst_category, rng.random((n, blocks)))
    return _Interests(
        taste=theta / theta.max(axis=1, keepdims=True),
        favourites=favourites,
        middle=middle,
        burst_category=burst_category * has_burst,
        burst_author=burst_author * has_burst,
    )


# --------------------------------------------------------------------------------------------------
# drawing items from sources and scoring matches


def _draw_items(rng: np.random.Generator, world: _World, interests: _Interests, user: np.ndarray,
                period: np.ndarray, block: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Draws one item per event from its source.

    Args:
        user / period / block: ``M`` local user indices, middle periods and burst blocks of the events.
        source: ``M`` source codes (``_POPULAR``, ``_LONG``, ...).

    Returns:
        ``M`` item ids.
    """
    item = np.zeros(source.shape[0], np.int64)
    m = source == _POPULAR
    item[m] = _popular_items(world, rng.random(int(m.sum())))
    m = source == _LONG
    item[m] = _items_in_category(world, _categorical_rows(rng, interests.taste, user[m]), rng.random(int(m.sum())))
    m = np.flatnonzero(source == _MIDDLE)
    pair = interests.middle[user[m], period[m]]  # M' X 2
    second = (pair[:, 1] > 0) & (rng.random(m.shape[0]) < 0.5)
    item[m] = _items_in_category(world, np.where(second, pair[:, 1], pair[:, 0]), rng.random(m.shape[0]))
    m = source == _SHORT_CATEGORY
    item[m] = _items_in_category(world, interests.burst_category[user[m], block[m]], rng.random(int(m.sum())))
    m = source == _SHORT_AUTHOR
    item[m] = _items_of_author(world, interests.burst_author[user[m], block[m]], rng.random(int(m.sum())))
    m = np.flatnonzero(source == _AUTHOR)
    pick = rng.integers(0, _FAVOURITES, size=m.shape[0])
    item[m] = _items_of_author(world, interests.favourites[user[m], pick], rng.random(m.shape[0]))
    return item


@dataclass(frozen=True)
class _Matches:
    """How an item matches its user's state at one time (one entry per event)."""

    long: np.ndarray  # L_u(c) in [0, 1]
    middle: np.ndarray  # bool
    short: np.ndarray  # bool: category == burst category
    short_author: np.ndarray  # bool: author == burst author
    fav_on: np.ndarray  # bool: favourite author, item in its main category
    fav_off: np.ndarray  # bool: favourite author, item elsewhere


def _match(world: _World, interests: _Interests, user: np.ndarray, period: np.ndarray, block: np.ndarray,
           item: np.ndarray, burst_on: np.ndarray) -> _Matches:
    """Scores each event's item against the user's long, middle and (if ``burst_on``) short interest."""
    c, a = world.item_category[item], world.item_author[item]
    pair = interests.middle[user, period]  # M X 2
    fav = (interests.favourites[user] == a[:, None]).any(axis=1)
    on_main = world.author_main[a] == c
    return _Matches(
        long=interests.taste[user, c - 1],
        middle=(pair == c[:, None]).any(axis=1),
        short=burst_on & (interests.burst_category[user, block] == c),
        short_author=burst_on & (interests.burst_author[user, block] == a),
        fav_on=fav & on_main,
        fav_off=fav & ~on_main,
    )


# --------------------------------------------------------------------------------------------------
# behaviour timeline of one chunk


@dataclass(frozen=True)
class _Timeline:
    """Engaged behaviours of a chunk's users, sorted by ``(user, time)``."""

    key: np.ndarray  # int64 (local user << 32) | time
    time: np.ndarray  # int64 seconds since day 0
    item: np.ndarray
    author: np.ndarray
    action: np.ndarray
    mood: np.ndarray  # float64 ±1, the mood of the behaviour's session (0 when the mood is off)


def _session_times(rng: np.random.Generator, cfg: SyntheticConfig, rate: np.ndarray,
                   start: np.ndarray) -> Tuple[np.ndarray, ...]:
    """Returns ``(local user, time, session)`` of every behaviour of ``n`` users, unsorted."""
    end = cfg.days * _DAY
    span = (end - start).astype(np.float64)
    sessions = rng.poisson(rate * span / _DAY / cfg.session_length)
    s_user = np.repeat(np.arange(rate.shape[0]), sessions)
    s_start = start[s_user] + rng.random(s_user.shape[0]) * span[s_user]
    s_len = 1 + rng.poisson(max(cfg.session_length - 1.0, 0.0), size=s_user.shape[0])
    b_session = np.repeat(np.arange(s_user.shape[0]), s_len)
    gaps = rng.exponential(45.0, size=b_session.shape[0])
    cum = np.cumsum(gaps)
    first = np.concatenate([[0], np.cumsum(s_len)[:-1]]).astype(np.int64)
    offset = cum - (cum[first] - gaps[first])[b_session]  # within-session cumulative gaps
    t = np.minimum(s_start[b_session] + offset, end - 1).astype(np.int64)
    return s_user[b_session], t, b_session


def _behaviour_sources(rng: np.random.Generator, cfg: SyntheticConfig, in_burst: np.ndarray) -> np.ndarray:
    """Draws the source of each behaviour (burst inside burst blocks, else the fixed mixture)."""
    n = in_burst.shape[0]
    u = rng.random(n)
    edges = np.cumsum([cfg.behaviour_middle, cfg.behaviour_long, cfg.behaviour_author])
    source = np.select([u < edges[0], u < edges[1], u < edges[2]], [_MIDDLE, _LONG, _AUTHOR], _POPULAR)
    burst = in_burst & (rng.random(n) < cfg.behaviour_burst_share)
    by_author = rng.random(n) < 0.35
    return np.where(burst, np.where(by_author, _SHORT_AUTHOR, _SHORT_CATEGORY), source)


def _actions(rng: np.random.Generator, m: _Matches, niche_lean: np.ndarray, mood_lean: np.ndarray) -> np.ndarray:
    """Action codes: like / finish / click with probabilities growing with the match strength; ``niche_lean``
    (``niche_like_weight * ν_u * niche(i)``) moves the like probability, ``mood_lean``
    (``mood_finish_weight * s * form(i)``) the finish probability."""
    strength = m.long + m.middle + m.short + m.fav_on
    p_like = np.clip(0.04 + 0.06 * strength + 0.35 * m.fav_on + niche_lean, 0.01, 1.0)
    p_finish = np.maximum(0.20 + 0.08 * strength + mood_lean, 0.0)
    u = rng.random(strength.shape[0])
    return np.where(u < p_like, ACTION_LIKE, np.where(u < p_like + p_finish, ACTION_FINISH, ACTION_CLICK))


def _session_topics(rng: np.random.Generator, cfg: SyntheticConfig, world: _World, session: np.ndarray,
                    source: np.ndarray, item: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Makes sessions topical: with probability ``session_focus`` a behaviour repeats its session's topic.

    The topic is the source of the session's first behaviour and its item's category (long or middle term)
    or author (a favourite author); a session that opens on a popular or burst item has none, and burst
    behaviours keep their own source. Returns the new ``(source, item)``.
    """
    n = source.shape[0]
    lead = np.full(int(session.max()) + 1 if n else 0, n, np.int64)
    np.minimum.at(lead, session, np.arange(n))
    lead = lead[session]  # position of each behaviour's session opener
    topic = source[lead]
    focused = (np.isin(topic, (_LONG, _MIDDLE, _AUTHOR)) & np.isin(source, (_POPULAR, _LONG, _MIDDLE, _AUTHOR))
               & (np.arange(n) != lead) & (rng.random(n) < cfg.session_focus))
    u = rng.random(n)
    by_author = focused & (topic == _AUTHOR)
    by_category = focused & ~by_author
    item = item.copy()
    item[by_author] = _items_of_author(world, world.item_author[item[lead[by_author]]], u[by_author])
    item[by_category] = _items_in_category(world, world.item_category[item[lead[by_category]]], u[by_category])
    return np.where(focused, topic, source), item


def _build_timeline(rng: np.random.Generator, cfg: SyntheticConfig, world: _World, interests: _Interests,
                    users: _Users, ids: np.ndarray, topic_rng: np.random.Generator,
                    mood_rng: np.random.Generator) -> _Timeline:
    """Draws the behaviour timeline of the chunk's users ``ids`` (0-based global indices); ``topic_rng`` (its
    own stream) draws the topical sessions when ``session_focus > 0``, ``mood_rng`` (its own stream) the
    sessions' moods when a mood weight is > 0."""
    period_s, _, block_s, _ = _period_count(cfg)
    user, t, session = _session_times(rng, cfg, users.rate[ids], users.start[ids])
    key = (user.astype(np.int64) << 32) | t
    order = np.argsort(key, kind="stable")
    user, t, key, session = user[order], t[order], key[order], session[order]
    period = ((t + users.phase[ids][user]) // period_s).astype(np.int64)
    block = t // block_s
    in_burst = interests.burst_category[user, block] > 0
    source = _behaviour_sources(rng, cfg, in_burst)
    item = _draw_items(rng, world, interests, user, period, block, source)
    if cfg.session_focus > 0:
        source, item = _session_topics(topic_rng, cfg, world, session, source, item)
    matches = _match(world, interests, user, period, block, item, in_burst)
    lean = cfg.niche_like_weight * users.niche[ids][user] * -world.item_pop_score[item]
    lean = lean + 0.1 * users.enthusiasm[ids][user]
    mood = np.zeros(t.shape[0])
    if (cfg.mood_finish_weight > 0 or cfg.mood_taste_weight > 0) and t.shape[0]:
        mood = np.where(mood_rng.random(int(session.max()) + 1) < 0.5, 1.0, -1.0)[session]
    action = _actions(rng, matches, lean, cfg.mood_finish_weight * mood * world.item_long_form[item])
    return _Timeline(key=key, time=t, item=item, author=world.item_author[item], action=action, mood=mood)


# --------------------------------------------------------------------------------------------------
# impressions of one chunk


@dataclass(frozen=True)
class _Impressions:
    """Rows of one chunk (sorted by request time) and where their histories lie in the timeline."""

    columns: Dict[str, np.ndarray]  # scalar columns of SCHEMA, except request_id
    last: np.ndarray  # timeline position of each row's most recent behaviour
    length: np.ndarray  # history length after the cap


def _request_times(rng: np.random.Generator, cfg: SyntheticConfig, tl: _Timeline, start: np.ndarray,
                   row_user: np.ndarray, n: int) -> np.ndarray:
    """Places each row's request right after a behaviour in the window, or uniformly in the window."""
    end, window = cfg.days * _DAY, (cfg.days - cfg.impression_days) * _DAY
    local = np.arange(n, dtype=np.int64) << 32
    lo = np.searchsorted(tl.key, local + window)
    n_window = (np.searchsorted(tl.key, local + (1 << 32)) - lo)[row_user]
    rows = row_user.shape[0]
    anchored = (n_window > 0) & (rng.random(rows) < cfg.anchor_share)
    pick = lo[row_user] + (rng.random(rows) * n_window).astype(np.int64)
    gap = 1 + rng.exponential(20.0, size=rows).astype(np.int64)
    times = tl.time if tl.time.shape[0] else np.zeros(1, np.int64)  # a chunk without behaviours
    t_anchor = times[np.clip(pick, 0, times.shape[0] - 1)]
    lo_t = np.maximum(start[row_user], window)
    t_uniform = lo_t + (rng.random(rows) * (end - lo_t)).astype(np.int64)
    return np.where(anchored, np.minimum(t_anchor + gap, end - 1), t_uniform)


def _candidate_sources(rng: np.random.Generator, cfg: SyntheticConfig, effective: np.ndarray) -> np.ndarray:
    """Draws each candidate's exposure source (the burst's share goes to popularity when none is on)."""
    u = rng.random(effective.shape[0])
    edges = np.cumsum([cfg.exposure_short, cfg.exposure_middle, cfg.exposure_long, cfg.exposure_author])
    by_author = rng.random(effective.shape[0]) < 0.3
    short = np.where(by_author, _SHORT_AUTHOR, _SHORT_CATEGORY)
    short = np.where(effective, short, _POPULAR)
    return np.select([u < edges[0], u < edges[1], u < edges[2], u < edges[3]],
                     [short, _MIDDLE, _LONG, _AUTHOR], _POPULAR)


def _request_mood(tl: _Timeline, t: np.ndarray, last: np.ndarray, n_before: np.ndarray) -> np.ndarray:
    """The mood of each request's session: its most recent behaviour's, if that is under ``_SESSION_GAP``
    seconds old (the request is in that session), else 0."""
    if tl.time.shape[0] == 0:
        return np.zeros(t.shape[0])
    last = np.clip(last, 0, tl.time.shape[0] - 1)
    return np.where((n_before > 0) & (t - tl.time[last] < _SESSION_GAP), tl.mood[last], 0.0)


def _labels(rng: np.random.Generator, cfg: SyntheticConfig, world: _World, m: _Matches, item: np.ndarray,
            bias: np.ndarray, region_match: np.ndarray, niche: np.ndarray, mood: np.ndarray,
            enthusiasm: np.ndarray) -> Dict[str, np.ndarray]:
    """Computes the planted logits, the true probabilities, the labels and the stay time."""
    rows = item.shape[0]
    q = world.item_quality[item]
    long_weight = cfg.long_weight * (1.0 + cfg.mood_taste_weight * mood)
    z_click = (cfg.click_bias + bias + long_weight * m.long + cfg.middle_weight * m.middle
               + cfg.short_weight * m.short + cfg.short_author_weight * m.short_author
               + cfg.author_weight * m.fav_on + cfg.off_category_author_weight * m.fav_off
               + cfg.region_weight * region_match + cfg.popularity_weight * world.item_pop_score[item]
               + cfg.niche_weight * niche * -world.item_pop_score[item]
               + q + enthusiasm + cfg.noise_std * rng.standard_normal(rows))
    duration = world.item_duration[item].astype(np.float64)
    z_finish = (cfg.finish_bias - cfg.duration_weight * np.log(duration / 20.0) + 0.5 * m.long
                + 0.5 * m.middle + 0.5 * m.short + q + cfg.noise_std * rng.standard_normal(rows))
    z_like = (cfg.like_bias + cfg.like_author_weight * m.fav_on + 0.5 * m.long + 0.4 * m.short + q + enthusiasm
              + cfg.noise_std * rng.standard_normal(rows))
    p_click = 1.0 / (1.0 + np.exp(-z_click))
    p_finish_given = 1.0 / (1.0 + np.exp(-z_finish))
    p_like_given = 1.0 / (1.0 + np.exp(-z_like))
    click = rng.random(rows) < p_click
    finish = click & (rng.random(rows) < p_finish_given)
    like = click & (rng.random(rows) < p_like_given)
    watched = duration * np.where(finish, 1.0 + rng.exponential(0.3, rows), rng.uniform(0.1, 0.9, rows))
    stay = np.where(click, watched, np.minimum(duration, rng.uniform(0.3, 3.0, rows)))
    return {
        "click": click.astype(np.int8),
        "finish": finish.astype(np.int8),
        "like": like.astype(np.int8),
        "stay_time": stay.astype(np.float32),
        "click_prob": p_click.astype(np.float32),
        "finish_prob": (p_click * p_finish_given).astype(np.float32),
        "like_prob": (p_click * p_like_given).astype(np.float32),
    }


def _build_impressions(rng: np.random.Generator, cfg: SyntheticConfig, world: _World, interests: _Interests,
                       users: _Users, ids: np.ndarray, tl: _Timeline) -> _Impressions:
    """Draws the chunk's impressions: request times, candidates, labels and history positions."""
    period_s, _, block_s, _ = _period_count(cfg)
    n = ids.shape[0]
    row_user = np.repeat(np.arange(n), users.impressions[ids])
    t = _request_times(rng, cfg, tl, users.start[ids], row_user, n)
    local = row_user.astype(np.int64) << 32
    first = np.searchsorted(tl.key, local)
    n_before = np.searchsorted(tl.key, local + t) - first
    block = t // block_s
    in_block = n_before - (np.searchsorted(tl.key, local + block * block_s) - first)
    effective = (interests.burst_category[row_user, block] > 0) & (in_block > 0)
    period = ((t + users.phase[ids][row_user]) // period_s).astype(np.int64)

    source = _candidate_sources(rng, cfg, effective)
    item = _draw_items(rng, world, interests, row_user, period, block, source)
    matches = _match(world, interests, row_user, period, block, item, effective)
    g = ids[row_user]  # 0-based global user index
    category = world.item_category[item]
    region_match = world.region_category[users.region[g]] == category
    last = first + n_before - 1  # the row's most recent behaviour (none when n_before == 0)
    labels = _labels(rng, cfg, world, matches, item, users.bias[g] + world.device_bias[users.device[g]],
                     region_match, users.niche[g], _request_mood(tl, t, last, n_before), users.enthusiasm[g])
    columns = {
        "user_id": g + 1,
        "item_id": item,
        "author_id": world.item_author[item],
        "request_time": cfg.start_time + t,
        "item_category": category,
        "user_region": users.region[g],
        "device": users.device[g],
        "item_duration": world.item_duration[item],
        "user_active_days": ((t - users.start[g]) / _DAY).astype(np.float32),
        **labels,
    }
    order = np.lexsort((row_user, t))
    return _Impressions(
        columns={k: v[order] for k, v in columns.items()},
        last=last[order],
        length=np.minimum(n_before, cfg.max_history)[order],
    )


# --------------------------------------------------------------------------------------------------
# arrow tables


def _rows_table(cfg: SyntheticConfig, world: _World, tl: _Timeline, imp: _Impressions, lo: int, hi: int,
                first_id: int) -> pa.Table:
    """Builds the ``SCHEMA`` table of rows ``[lo, hi)`` of a chunk; request ids start at ``first_id``."""
    cols = {k: v[lo:hi] for k, v in imp.columns.items()}
    cols["request_id"] = np.arange(first_id, first_id + hi - lo, dtype=np.int64)
    item = cols["item_id"]
    tag_start = world.tag_offsets[item]
    tag_off, tag_pos = gather_ranges(tag_start, world.tag_offsets[item + 1] - tag_start, 1)
    cols["item_tags"] = list_column(tag_off, world.tag_values[tag_pos])
    hist_off, pos = gather_ranges(imp.last[lo:hi], imp.length[lo:hi], -1)
    cols["hist_item_id"] = list_column(hist_off, tl.item[pos])
    cols["hist_author_id"] = list_column(hist_off, tl.author[pos])
    cols["hist_item_category"] = list_column(hist_off, world.item_category[tl.item[pos]])
    cols["hist_action"] = list_column(hist_off, tl.action[pos])
    cols["hist_time"] = list_column(hist_off, cfg.start_time + tl.time[pos])
    arrays = [_as_arrow(cols[field.name], field.type) for field in SCHEMA]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _as_arrow(column: Union[np.ndarray, pa.Array], type_: pa.DataType) -> pa.Array:
    """Returns ``column`` as an arrow array of ``type_`` (list columns are built already)."""
    return column if isinstance(column, pa.Array) else pa.array(column, type_)


def _sub_batches(length: np.ndarray, budget: int) -> List[Tuple[int, int]]:
    """Splits rows into consecutive ``(lo, hi)`` ranges holding at most ~``budget`` history elements."""
    cum = np.cumsum(length)
    bounds, lo = [], 0
    while lo < length.shape[0]:
        base = cum[lo - 1] if lo else 0
        hi = max(int(np.searchsorted(cum, base + budget, side="right")), lo + 1)
        bounds.append((lo, hi))
        lo = hi
    return bounds


# --------------------------------------------------------------------------------------------------
# the entry point


def _exact_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Exact ROC AUC (Mann-Whitney U with average ranks for ties); nan with a single class."""
    y = labels.astype(bool)
    n_pos = int(y.sum())
    n_neg = y.shape[0] - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    avg_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based average rank of each distinct score
    rank_sum = avg_rank[inverse][y].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def generate(config: SyntheticConfig, out_dir: Union[str, Path],
             progress: Optional[Callable[[int], None]] = None) -> GenerateSummary:
    """Writes ``config.rows`` synthetic impressions to ``out_dir/part-NNNNN.parquet`` (``SCHEMA``).

    Args:
        config: what to generate (see ``SyntheticConfig`` and the module docstring).
        out_dir: directory to write to; created if missing, must not hold ``part-*.parquet`` files.
        progress: called with the number of rows generated so far after each user chunk.

    Returns:
        A ``GenerateSummary`` (rows, files, label rates, oracle click AUC, ...).

    Example::

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as out:
        ...     s = generate(SyntheticConfig(rows=1_000, users=100, items=1_000, authors=100), out)
        >>> s.rows, 0.0 < s.click_rate < 1.0
        (1000, True)
    """
    began = time.perf_counter()
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    world = _build_world(config)
    users = _build_users(config)
    writer = PartWriter(out_dir, SCHEMA, config.rows_per_file, config.row_group_rows)
    clicks, click_probs = [], []
    written = hist_total = finishes = likes = 0
    try:
        for chunk, lo in enumerate(range(0, config.users, config.users_per_chunk)):
            ids = np.arange(lo, min(lo + config.users_per_chunk, config.users))
            if users.impressions[ids].sum() == 0:
                continue
            rng = np.random.default_rng([config.seed, 2, chunk])
            interests = _draw_interests(rng, config, world, ids.shape[0])
            topic_rng = np.random.default_rng([config.seed, 4, chunk])
            mood_rng = np.random.default_rng([config.seed, 5, chunk])
            tl = _build_timeline(rng, config, world, interests, users, ids, topic_rng, mood_rng)
            imp = _build_impressions(rng, config, world, interests, users, ids, tl)
            for a, b in _sub_batches(imp.length, _HIST_BUDGET):
                writer.write(_rows_table(config, world, tl, imp, a, b, written + a + 1))
            written += imp.length.shape[0]
            hist_total += int(imp.length.sum())
            clicks.append(imp.columns["click"])
            click_probs.append(imp.columns["click_prob"])
            finishes += int(imp.columns["finish"].sum())
            likes += int(imp.columns["like"].sum())
            if progress is not None:
                progress(written)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    click = np.concatenate(clicks)
    return GenerateSummary(
        rows=written,
        files=writer.files,
        users=int((users.impressions > 0).sum()),
        seconds=time.perf_counter() - began,
        mean_history=hist_total / written,
        click_rate=float(click.mean()),
        finish_rate=finishes / written,
        like_rate=likes / written,
        oracle_click_auc=_exact_auc(click, np.concatenate(click_probs)),
    )
