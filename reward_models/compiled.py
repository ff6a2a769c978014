"""The compiled scoring path: ``FeatureBuilder.build``'s features, both forests and the reward in one numba pass.

Why: the simulator scores small batches (one pair at the env's terminal step), where the reference pays for dozens
of numpy calls per batch, and large ones (``Simulator.evaluate``), where it gathers (B, K, ...) intermediates. Here
everything that does not depend on the pair is a flat table built once per ``FeatureBuilder`` (so once per
process), and each pair costs only what is truly its own:

- per (day, entity): impressions, CTR and CVR of the ad, its advertiser and each ad key, as rate tables
  (``FeatureBuilder.rate_tables``); the ad's static columns as one float32 row per ad;
- per request, computed once for a run of consecutive rows with the same (user, ts): context, profile, the
  user's counts so far and the history vectors (recent organic items, clicked ads, their means, topic interests);
- per pair: the ad's rows of the tables for the request's day, user x key counts (a binary search each, within
  the user's own impressions), and the cosines between the ad and the request's history vectors (exact, see
  ``reward_models.exact``) with their pools.

The numbers are the reference's bit for bit (``tests/reward_models/test_compiled.py``): the same float32 rate
arithmetic, the same grid vectors, the same summation orders, the same exp and log. The fused ``score`` never
materialises the feature matrix: pairs' rows go BLOCK at a time through both forests
(``reward_models.forest.raw_block``) and the eCPM / final_value arithmetic of ``reward_models.value``.

The tables travel to the kernels as one numba ``StructRef`` (``_Tables``), and the forests and prices as another
(``_Model``): a call costs two arguments to type-check instead of seventy, which matters at batch 1 (the env's
terminal step). Kernels are compiled with ``cache=True`` (once per machine).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from numba import njit, types
from numba.experimental import structref

from adsim.errors import AdSimDataError
from adsim.world.cascade import estimated_ecpm
from adsim.world.config import GOALS
from reward_models.exact import grid
from reward_models.features import REQUEST_COLUMNS, FeatureBuilder, Requests, request_arrays
from reward_models.forest import BLOCK, CompiledForest, probability, raw_block
from reward_models.protocol import FeatureMatrix
from reward_models.value import TARGETS, Scores, ValueConfig

REQUEST_FEATURES = ("hour", "device", "placement", "user_age", "user_gender", "user_region", "user_activity",
                    "user_primary_device", "user_impressions", "user_clicks", "user_ctr", "user_conversions",
                    "user_cvr", "user_organic")
"""Columns of a request, written once per request (``_Tables.col_request`` holds their positions)."""
PAIR_FEATURES = ("position", "ad_age_days", "organic_cos_max", "organic_cos_soft", "organic_cos_mean",
                 "organic_topic_match", "click_cos_max", "click_cos_mean")
"""Columns computed per pair (``_Tables.col_pair``)."""
STATS = ("impressions", "ctr", "cvr")


# ----------------------------------------------------------------------------------------------- tables
@structref.register
class _TablesType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


class _Tables(structref.StructRefProxy):
    """What the kernels read (fields: ``_FIELDS``). Built by ``_pack``; opaque to Python."""


_i64, _f32, _f64 = types.int64, types.float32, types.float64
_FIELDS = (
    # scalars
    ("shift", _i64), ("n_days", _i64), ("n_users", _i64), ("n_ads", _i64), ("n_requests", _i64),
    ("recent_window", _i64), ("long_window", _i64), ("click_window", _i64), ("n_topics", _i64),
    ("temperature", _f64), ("ctr_prior", _f32), ("cvr_prior", _f32), ("strength", _f32),
    # logged requests (6, n) in REQUEST_COLUMNS order, user profiles (n_users, 5)
    ("requests", _i64[:, ::1]), ("user_table", _f32[:, ::1]),
    # timelines (adsim.simulator.history.EventIndex arrays)
    ("outcome_code", _i64[::1]), ("outcome_cum", _f32[:, ::1]), ("outcome_offsets", _i64[::1]),
    ("organic_code", _i64[::1]), ("organic_item", _i64[::1]), ("organic_count", _f32[::1]),
    ("organic_offsets", _i64[::1]), ("click_code", _i64[::1]), ("click_item", _i64[::1]), ("click_offsets", _i64[::1]),
    ("key_code", _i64[:, ::1]), ("key_cum", _f32[:, :, ::1]), ("key_n", _i64[::1]), ("key_kind", _i64[::1]),
    # embeddings (on the grid) and ads
    ("organic_emb", _f32[:, ::1]), ("organic_topic", _i64[::1]), ("ad_emb", _f32[:, ::1]),
    ("ad_static", _f32[:, ::1]), ("created_day", _i64[::1]), ("ad_entity", _i64[:, ::1]),
    # rate tables, flattened: kind j's (n_days + 1, width_j, 3) block starts at rates_offset[j]
    ("rates", _f32[::1]), ("rates_offset", _i64[::1]), ("rates_width", _i64[::1]),
    # output positions of each column group
    ("col_request", _i64[::1]), ("col_pair", _i64[::1]), ("col_static", _i64[::1]), ("col_stats", _i64[:, ::1]),
    ("col_user_keys", _i64[:, ::1]), ("n_features", _i64),
)
_TABLES = _TablesType(list(_FIELDS))
structref.define_boxing(_TablesType, _Tables)


@structref.register
class _ModelType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


class _Model(structref.StructRefProxy):
    """What ``_score`` reads besides the tables: both forests (``CompiledForest.arrays`` and the sigmoid), the
    ads' prices and the value config's terms (fields: ``_MODEL_FIELDS``). Built by ``_pack_model``."""


_i32, _u32 = types.int32, types.uint32
_FOREST_FIELDS = (("roots", _i32[::1]), ("nodes", _i32[:, ::1]), ("threshold", _f64[::1]), ("cat_bits", _u32[::1]),
                  ("leaf_value", _f64[::1]), ("sigmoid", _f64))
_MODEL_FIELDS = (
    *((f"ctr_{name}", typ) for name, typ in _FOREST_FIELDS), *((f"cvr_{name}", typ) for name, typ in _FOREST_FIELDS),
    ("ctcvr", types.boolean), ("goal", _i64[::1]), ("bid", _f64[::1]), ("conversion_value", _f64[::1]),
    ("uses_pcvr", types.boolean[::1]), ("terms", _i64[::1]), ("coef", _f64[::1]),
)
_MODEL = _ModelType(list(_MODEL_FIELDS))
structref.define_boxing(_ModelType, _Model)


@njit(cache=True)
def _pack(shift, n_days, n_users, n_ads, n_requests, recent_window, long_window, click_window, n_topics,
          temperature, ctr_prior, cvr_prior, strength, requests, user_table, outcome_code, outcome_cum,
          outcome_offsets, organic_code, organic_item, organic_count, organic_offsets, click_code, click_item,
          click_offsets, key_code, key_cum, key_n, key_kind,
          organic_emb, organic_topic, ad_emb, ad_static, created_day, ad_entity, rates, rates_offset, rates_width,
          col_request, col_pair, col_static, col_stats, col_user_keys, n_features):
    t = structref.new(_TABLES)
    t.shift, t.n_days, t.n_users, t.n_ads, t.n_requests = shift, n_days, n_users, n_ads, n_requests
    t.recent_window, t.long_window, t.click_window, t.n_topics = recent_window, long_window, click_window, n_topics
    t.temperature, t.ctr_prior, t.cvr_prior, t.strength = temperature, ctr_prior, cvr_prior, strength
    t.requests, t.user_table, t.outcome_code, t.outcome_cum = requests, user_table, outcome_code, outcome_cum
    t.organic_code, t.organic_item, t.organic_count = organic_code, organic_item, organic_count
    t.click_code, t.click_item = click_code, click_item
    t.outcome_offsets, t.organic_offsets, t.click_offsets = outcome_offsets, organic_offsets, click_offsets
    t.key_code, t.key_cum, t.key_n, t.key_kind = key_code, key_cum, key_n, key_kind
    t.organic_emb, t.organic_topic, t.ad_emb = organic_emb, organic_topic, ad_emb
    t.ad_static, t.created_day, t.ad_entity = ad_static, created_day, ad_entity
    t.rates, t.rates_offset, t.rates_width = rates, rates_offset, rates_width
    t.col_request, t.col_pair, t.col_static, t.col_stats = col_request, col_pair, col_static, col_stats
    t.col_user_keys, t.n_features = col_user_keys, n_features
    return t


@njit(cache=True)
def _pack_model(ctr, cvr, ctcvr, goal, bid, conversion_value, uses_pcvr, terms, coef):
    m = structref.new(_MODEL)
    m.ctr_roots, m.ctr_nodes, m.ctr_threshold, m.ctr_cat_bits, m.ctr_leaf_value, m.ctr_sigmoid = ctr
    m.cvr_roots, m.cvr_nodes, m.cvr_threshold, m.cvr_cat_bits, m.cvr_leaf_value, m.cvr_sigmoid = cvr
    m.ctcvr, m.goal, m.bid, m.conversion_value, m.uses_pcvr = ctcvr, goal, bid, conversion_value, uses_pcvr
    m.terms, m.coef = terms, coef
    return m


def feature_tables(builder: FeatureBuilder) -> _Tables:
    """The builder's tables for the kernels, built on first use and kept in ``builder.derived``."""
    tables = builder.derived.get("compiled")
    if tables is None:
        tables = builder.derived["compiled"] = _tables(builder)
    return tables


def _tables(builder: FeatureBuilder) -> _Tables:
    cfg, names = builder.config, builder.feature_names
    position = {name: j for j, name in enumerate(names)}

    def columns(cols) -> np.ndarray:
        return np.array([position[c] for c in cols], dtype=np.int64)

    def f32(values) -> np.ndarray:
        # what the reference's assignment into its float32 matrix does to each column
        return np.ascontiguousarray(np.stack([np.asarray(v).astype(np.float32) for v in values], axis=1))

    i64 = np.ascontiguousarray
    static = dict(builder.ad_columns)
    if builder.sid_codes is not None:
        static |= {f"sid{level + 1}_code": builder.sid_codes[:, level] for level in range(builder.sid_codes.shape[1])}
    kinds = ["ad", "advertiser", *(key.name for key in builder.keys)]
    entity = [np.arange(builder.n_ads), builder.advertiser, *(key.of_ad for key in builder.keys)]
    rates = builder.rate_tables()
    sizes = [r.size for r in rates]
    strength = cfg.prior_strength
    return _pack(
        int(builder.organic.shift), int(builder.n_days), int(builder.n_users), int(builder.n_ads),
        int(builder.request_matrix.shape[1]), int(cfg.recent_window), int(cfg.long_window), int(cfg.click_window),
        int(builder.n_topics), float(cfg.softmax_temperature),
        # the reference's _rate on float32 counts: (events + float32(strength * prior)) / (trials + float32(strength))
        np.float32(strength * builder.prior_ctr), np.float32(strength * builder.prior_cvr), np.float32(strength),
        builder.request_matrix, f32(builder.user_columns.values()),
        builder.user_outcomes.code, builder.user_outcomes.cum, builder.user_outcomes.group_offsets,
        builder.organic.code, builder.organic.payload["item"], i64(builder.organic.cum[:, 0]),
        builder.organic.group_offsets, builder.clicks.code, builder.clicks.payload["item"],
        builder.clicks.group_offsets,
        builder.key_code, builder.key_cum, np.array([key.n_keys for key in builder.keys], dtype=np.int64),
        np.arange(2, 2 + len(builder.keys), dtype=np.int64),
        builder.organic_emb, builder.organic_topic, builder.ad_emb,
        f32(static.values()), builder.created_day, i64(np.stack(entity).astype(np.int64)),
        np.concatenate([r.ravel() for r in rates]), np.cumsum([0, *sizes[:-1]]).astype(np.int64),
        np.array([r.shape[1] for r in rates], dtype=np.int64),
        columns(REQUEST_FEATURES), columns(PAIR_FEATURES), columns(static),
        np.stack([columns(f"{kind}_{stat}" for stat in STATS) for kind in kinds]),
        np.stack([columns((f"user_{key.name}_impressions", f"user_{key.name}_clicks")) for key in builder.keys]),
        len(names),
    )


# ---------------------------------------------------------------------------------------------- kernels
@njit(cache=True)
def _last_before(code, shift, group, ts):
    """``EventIndex.last_before`` for one query: the group's last event strictly before ts, 0 when none."""
    t = min(max(ts, 0), (1 << shift) - 1)
    i = np.searchsorted(code, (group << shift) | t) - 1
    return i if (code[i] >> shift) == group else 0


@njit(cache=True)
def _last_in(code, lo, hi, shift, group, ts):
    """``_last_before`` searching only code[lo:hi], a range known to hold all of the group's events."""
    value = (group << shift) | min(max(ts, 0), (1 << shift) - 1)
    while lo < hi:
        mid = (lo + hi) >> 1
        if code[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    i = lo - 1
    return i if (code[i] >> shift) == group else 0


@njit(cache=True)
def _last_of(code, offsets, shift, group, ts):
    """``_last_before`` within the group's own events where ``offsets`` (``EventIndex.group_offsets``) covers the
    group: the same index, found in a few cache lines instead of a binary search over every user's events."""
    if 0 <= group < offsets.shape[0] - 1:
        return _last_in(code, offsets[group], offsets[group + 1], shift, group, ts)
    return _last_before(code, shift, group, ts)


@njit(cache=True)
def _run(code, shift, group, last, size):
    """How many of the ``size`` events up to ``last`` (newest first) belong to ``group`` (``EventIndex.window``)."""
    n = 0
    while n < size and last - n > 0 and (code[last - n] >> shift) == group:
        n += 1
    return n


@njit(cache=True)
def _request(t, user, ts, hour, device, placement, template, hist, weight, topic_sum, topic_count):
    """One request: its columns into ``template`` (F,), its history vectors into the rows of ``hist`` (M, D).

    Rows of ``hist``: recent organic items [0, nr), clicked ads [nr, nr + nc), the long-term mean, the clicked
    mean, then the topics present in the long window (their weights in ``weight``); ``topic_count`` must come in
    zeroed and is left so. Returns (nr, nc, nl, nt, lo, hi): recent items, clicked ads, items in the long window,
    topics present, and the index range of the user's impressions. Sums of grid vectors are exact, so
    they are taken in whatever order suits the loops (see ``reward_models.exact``).
    """
    # struct fields once into locals: every access of a field inside a loop would cost a reference count
    shift, col, organic_emb, ad_emb = t.shift, t.col_request, t.organic_emb, t.ad_emb
    organic_code, organic_item, organic_topic = t.organic_code, t.organic_item, t.organic_topic
    click_code, click_item, user_table, outcome_cum = t.click_code, t.click_item, t.user_table, t.outcome_cum
    recent_window, long_window, dim = t.recent_window, t.long_window, ad_emb.shape[1]

    template[col[0]], template[col[1]], template[col[2]] = hour, device, placement
    for j in range(user_table.shape[1]):
        template[col[3 + j]] = user_table[user, j]
    i = _last_of(t.outcome_code, t.outcome_offsets, shift, user, ts)
    imp, clk, conv = outcome_cum[i, 0], outcome_cum[i, 1], outcome_cum[i, 2]
    template[col[8]], template[col[9]], template[col[11]] = imp, clk, conv
    template[col[10]] = (clk + t.ctr_prior) / (imp + t.strength)
    template[col[12]] = (conv + t.cvr_prior) / (clk + t.strength)
    last = _last_of(organic_code, t.organic_offsets, shift, user, ts)
    template[col[13]] = t.organic_count[last]

    n = _run(organic_code, shift, user, last, max(long_window, recent_window))
    nr, nl = min(n, recent_window), min(n, long_window)
    last_click = _last_of(click_code, t.click_offsets, shift, user, ts)
    nc = _run(click_code, shift, user, last_click, t.click_window)
    c_long = nr + nc
    long_sum, click_sum = hist[c_long], hist[c_long + 1]
    long_sum[:] = 0.0
    click_sum[:] = 0.0
    for m in range(max(nr, nl)):
        item = organic_item[last - m]
        if m < nr:
            for d in range(dim):
                hist[m, d] = organic_emb[item, d]
        if m < nl:
            topic = organic_topic[item]
            if topic_count[topic] == 0:
                topic_sum[topic, :] = 0.0
            topic_count[topic] += 1
            for d in range(dim):
                e = np.float64(organic_emb[item, d])
                long_sum[d] += e
                topic_sum[topic, d] += e
    for c in range(nc):
        item = click_item[last_click - c]
        for d in range(dim):
            e = np.float64(ad_emb[item, d])
            hist[nr + c, d] = e
            click_sum[d] += e
    # means on the grid (features._mean_on_grid): one rounding of the exact sum
    for d in range(dim):
        long_sum[d] = grid(long_sum[d] / max(nl, 1))
        click_sum[d] = grid(click_sum[d] / max(nc, 1))

    # topic interests: unit mean of each topic's items in the long window, on the grid (features._topic_interests)
    nt = 0
    for topic in range(t.n_topics):
        count = topic_count[topic]
        if count == 0:
            continue
        topic_count[topic] = 0  # left zeroed for the next request
        norm2 = 0.0
        mean = topic_sum[topic]
        for d in range(dim):
            mean[d] = grid(mean[d] / count)
            norm2 += mean[d] * mean[d]  # exact: squares of grid values of size <= 1
        norm = max(math.sqrt(norm2), 1e-12)
        unit = hist[c_long + 2 + nt]
        for d in range(dim):
            unit[d] = grid(mean[d] / norm)
        weight[nt] = count / max(nl, 1)
        nt += 1
    # the user's impressions: the same index range in every user x key index (each sorts by user first) as here
    offsets = t.outcome_offsets
    if user < offsets.shape[0] - 1:
        return nr, nc, nl, nt, offsets[user], offsets[user + 1]
    first = np.searchsorted(t.outcome_code, user << shift)
    return nr, nc, nl, nt, first, np.searchsorted(t.outcome_code, (user + 1) << shift)


@njit(cache=True)
def _next_request(t, req, b, sizes, template, hist, weight, topic_sum, topic_count):
    """Row ``b``'s request summary: rebuilt when its (user, ts) differs from row ``b - 1``'s, else only the
    context columns change (rows of one request come in runs)."""
    user, ts = req[0, b], req[1, b]
    if b == 0 or user != req[0, b - 1] or ts != req[1, b - 1]:
        return _request(t, user, ts, req[3, b], req[4, b], req[5, b], template, hist, weight, topic_sum,
                        topic_count)
    col = t.col_request
    template[col[0]], template[col[1]], template[col[2]] = req[3, b], req[4, b], req[5, b]
    return sizes


@njit(cache=True)
def _pool(cos, weight, lo, n, uniform, temperature):
    """``features._pool`` over cos[lo:lo + n] (weights 1 when ``uniform``, else weight[0:n]): (max, soft-max)."""
    if n == 0:
        return np.nan, np.nan
    top = -np.inf
    for j in range(n):
        top = max(top, cos[lo + j])
    num = 0.0
    den = 0.0
    for j in range(n):
        w = 1.0 if uniform else weight[j]
        num += w * math.exp(temperature * (cos[lo + j] - top))
        den += w
    return top, top + math.log(max(num / max(den, 1e-12), 1e-30)) / temperature


@njit(cache=True, fastmath={"reassoc"})
def _dots(a, hist, m, acc):
    """acc[j] = a . hist[j] for j < m. Exact in float64 (grid values, see ``reward_models.exact``), so the order of
    the sum is free: ``reassoc`` lets it run in SIMD lanes without changing a bit."""
    for j in range(m):
        total = 0.0
        for d in range(a.shape[0]):
            total += np.float64(a[d]) * hist[j, d]
        acc[j] = total


@njit(cache=True)
def _pair(t, template, hist, weight, sizes, acc, ad, user, ts, day, position, row):
    """The features of (request, ad) into ``row`` (F,): the request's ``template`` plus the pair's own columns."""
    nr, nc, nl, nt, lo, hi = sizes
    ad_emb, col_static, ad_static, ad_entity = t.ad_emb, t.col_static, t.ad_static, t.ad_entity
    rates, rates_offset, rates_width, col_stats = t.rates, t.rates_offset, t.rates_width, t.col_stats
    key_code, key_cum, key_n, key_kind, col_user_keys = t.key_code, t.key_cum, t.key_n, t.key_kind, t.col_user_keys
    row[:] = template
    for j in range(col_static.shape[0]):
        row[col_static[j]] = ad_static[ad, j]
    d = min(max(day, 0), t.n_days)
    for kind in range(ad_entity.shape[0]):
        at = rates_offset[kind] + (d * rates_width[kind] + ad_entity[kind, ad]) * 3
        for s in range(3):
            row[col_stats[kind, s]] = rates[at + s]
    for key in range(key_n.shape[0]):
        group = user * key_n[key] + ad_entity[key_kind[key], ad]
        i = _last_in(key_code[key], lo, hi, t.shift, group, ts)
        row[col_user_keys[key, 0]] = key_cum[key, i, 0]
        row[col_user_keys[key, 1]] = key_cum[key, i, 1]

    # cosines with every history vector
    c_long = nr + nc
    _dots(ad_emb[ad], hist, c_long + 2 + nt, acc)
    col, temperature = t.col_pair, t.temperature
    row[col[0]] = position
    row[col[1]] = day - t.created_day[ad]
    row[col[2]], row[col[3]] = _pool(acc, weight, 0, nr, True, temperature)
    row[col[4]] = acc[c_long] if nl > 0 else np.nan
    row[col[5]] = _pool(acc, weight, c_long + 2, nt, False, temperature)[1]
    row[col[6]] = _pool(acc, weight, nr, nc, True, temperature)[0]
    row[col[7]] = acc[c_long + 1] if nc > 0 else np.nan


@njit(cache=True)
def _scratch(t):
    dim = t.ad_emb.shape[1]
    width = t.recent_window + t.click_window + 2 + t.n_topics
    return (np.empty(t.n_features, np.float32), np.empty((width, dim)), np.empty(t.n_topics), np.empty(width),
            np.empty((t.n_topics, dim)), np.zeros(t.n_topics, np.int64))


@njit(cache=True)
def _ads_valid(t, ad):
    for a in ad.ravel():
        if a < 0 or a >= t.n_ads:
            return False
    return True


@njit(cache=True)
def _requests_by_id(t, ids, ad):
    """The logged requests ``ids`` as (6, B) rows, and whether every id (and ad id) is in range."""
    out = np.empty((6, ids.shape[0]), np.int64)
    for b in range(ids.shape[0]):
        if ids[b] < 0 or ids[b] >= t.n_requests:
            return out, False
        for c in range(6):
            out[c, b] = t.requests[c, ids[b]]
    return out, _ads_valid(t, ad)


@njit(cache=True)
def _requests_by_row(t, user, ts, day, hour, device, placement, ad):
    """B request rows (REQUEST_COLUMNS order) as (6, B) int64, and whether every user (and ad) id is in range."""
    out = np.empty((6, user.shape[0]), np.int64)
    ok = ts.shape == user.shape and day.shape == user.shape and hour.shape == user.shape and (
        device.shape == user.shape and placement.shape == user.shape)
    if not ok:
        return out, False
    for b in range(user.shape[0]):
        out[0, b], out[1, b], out[2, b] = user[b], ts[b], day[b]
        out[3, b], out[4, b], out[5, b] = hour[b], device[b], placement[b]
        ok &= 0 <= user[b] < t.n_users
    return out, ok and _ads_valid(t, ad)


@njit(cache=True)
def _build(t, req, ad, position):
    """(B * K, F) float32 features of B requests (6, B) x (B, K) ads at positions (broadcast (1|B, 1|K))."""
    b_n, k_n = ad.shape
    out = np.empty((b_n * k_n, t.n_features), np.float32)
    template, hist, weight, acc, topic_sum, topic_count = _scratch(t)
    sizes = (0, 0, 0, 0, 0, 0)
    for b in range(b_n):
        user, ts = req[0, b], req[1, b]
        sizes = _next_request(t, req, b, sizes, template, hist, weight, topic_sum, topic_count)
        for k in range(k_n):
            _pair(t, template, hist, weight, sizes, acc, ad[b, k], user, ts, req[2, b],
                  position[b % position.shape[0], k % position.shape[1]], out[b * k_n + k])
    return out


@njit(cache=True)
def _reward(p, q, a, ctcvr, goal, bid, conversion_value, uses_pcvr, terms, coef):
    """(pCTR, pCVR, eCPM, final_value) of ad ``a`` from the two models' probabilities.

    Repeats ``AdPrices.scores`` (``estimated_ecpm``, ``AdPrices.targets``, ``ValueConfig.final_value``) operation
    for operation; ``tests/reward_models/test_compiled.py`` pins the two equal, so a change there fails loudly
    until it is made here too.
    """
    if ctcvr:
        q = min(q / max(p, 1e-12), 1.0)
    g = goal[a]
    rate = 1e-3 if g == 0 else p * (q if uses_pcvr[g] else 1.0)
    e = bid[a] * rate * 1000.0
    if terms.shape[0] == 0:
        return p, q, e, e
    bonus = 0.0
    for j in range(terms.shape[0]):
        target = p if terms[j] == 0 else (p * q if terms[j] == 1 else p * q * conversion_value[a])
        bonus += coef[j] * target
    return p, q, e, e + bonus / terms.shape[0]


@njit(cache=True)
def _score(t, m, req, ad, position):
    """Fused: the pairs' features, BLOCK rows at a time through both forests, then eCPM and final_value."""
    ctr_roots, ctr_nodes, ctr_threshold, ctr_cat_bits = m.ctr_roots, m.ctr_nodes, m.ctr_threshold, m.ctr_cat_bits
    cvr_roots, cvr_nodes, cvr_threshold, cvr_cat_bits = m.cvr_roots, m.cvr_nodes, m.cvr_threshold, m.cvr_cat_bits
    ctr_leaf, cvr_leaf, ctr_sigmoid, cvr_sigmoid = m.ctr_leaf_value, m.cvr_leaf_value, m.ctr_sigmoid, m.cvr_sigmoid
    ctcvr, goal, bid, conversion_value, uses_pcvr = m.ctcvr, m.goal, m.bid, m.conversion_value, m.uses_pcvr
    terms, coef = m.terms, m.coef
    b_n, k_n = ad.shape
    out = np.empty((4, b_n, k_n))
    template, hist, weight, acc, topic_sum, topic_count = _scratch(t)
    rows = np.empty((min(BLOCK, b_n * k_n), t.n_features), np.float32)
    pair = np.empty(rows.shape[0], np.int64)
    raw_ctr, raw_cvr = np.empty(rows.shape[0]), np.empty(rows.shape[0])
    sizes = (0, 0, 0, 0, 0, 0)
    n = 0
    for b in range(b_n):
        user, ts = req[0, b], req[1, b]
        sizes = _next_request(t, req, b, sizes, template, hist, weight, topic_sum, topic_count)
        for k in range(k_n):
            _pair(t, template, hist, weight, sizes, acc, ad[b, k], user, ts, req[2, b],
                  position[b % position.shape[0], k % position.shape[1]], rows[n])
            pair[n] = b * k_n + k
            n += 1
            if n == rows.shape[0] or (b == b_n - 1 and k == k_n - 1):
                raw_block(rows, n, ctr_roots, ctr_nodes, ctr_threshold, ctr_cat_bits, ctr_leaf, raw_ctr)
                raw_block(rows, n, cvr_roots, cvr_nodes, cvr_threshold, cvr_cat_bits, cvr_leaf, raw_cvr)
                for i in range(n):
                    pb, pk = pair[i] // k_n, pair[i] % k_n
                    p, q, e, v = _reward(probability(raw_ctr[i], ctr_sigmoid), probability(raw_cvr[i], cvr_sigmoid),
                                         ad[pb, pk], ctcvr, goal, bid, conversion_value, uses_pcvr, terms, coef)
                    out[0, pb, pk], out[1, pb, pk], out[2, pb, pk], out[3, pb, pk] = p, q, e, v
                n = 0
    return out[0], out[1], out[2], out[3]


# --------------------------------------------------------------------------------------------- wrappers
_INT64 = np.dtype(np.int64)
_TOP = np.zeros((1, 1), np.float32)
"""Position 0 for every pair (the default), without building an array per call."""


class CompiledFeatures:
    """``FeatureBuilder.build`` through the kernels: the same (B * K, F) FeatureMatrix, bit for bit."""

    def __init__(self, builder: FeatureBuilder):
        self.builder = builder
        self.tables = feature_tables(builder)

    def inputs(self, requests: Requests, ad_ids: np.ndarray, position: int | np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(6, B) int64 request rows, (B, K) int64 ads and (1 | B, 1 | K) float32 positions; bad input raises the
        reference's errors. Kept to a handful of calls: at batch 1 this is most of the cost."""
        ad = np.asarray(ad_ids, dtype=np.int64)
        if isinstance(requests, dict | pd.DataFrame | Mapping):
            columns = [requests.get(c) for c in REQUEST_COLUMNS]
            if not all(type(c) is np.ndarray and c.dtype == _INT64 and c.ndim == 1 for c in columns):
                columns = list(request_arrays(requests).values())  # converts, or raises the reference's error
            req, ok = _requests_by_row(self.tables, *columns, ad) if ad.ndim == 2 else (None, False)
        else:
            ids = np.asarray(requests, dtype=np.int64)
            req, ok = _requests_by_id(self.tables, ids, ad) if ids.ndim == 1 and ad.ndim == 2 else (None, False)
        if ok and ad.shape[0] != req.shape[1]:
            raise AdSimDataError(f"ad_ids must be (n_requests={req.shape[1]}, K), got shape {ad.shape}",
                                 column="ad_id")
        if not ok:
            self.builder.build(requests, ad, position)  # raises the reference's error
            raise AssertionError("the compiled path rejected input that the reference accepts")
        if isinstance(position, int) and position == 0:
            return req, ad, _TOP
        pos = np.asarray(position)
        b, k = ad.shape
        if pos.ndim != 2 or pos.shape[0] not in (1, b) or pos.shape[1] not in (1, k):
            pos = np.broadcast_to(pos, ad.shape)
        return req, ad, np.ascontiguousarray(pos, dtype=np.float32)

    def build(self, requests: Requests, ad_ids: np.ndarray, position: int | np.ndarray = 0) -> FeatureMatrix:
        return FeatureMatrix(_build(self.tables, *self.inputs(requests, ad_ids, position)), self.builder.specs)


class CompiledScorer:
    """``RewardScorer.score``'s numbers for the compiled backend: features, both forests and the reward fused."""

    def __init__(self, features: FeatureBuilder, pctr: CompiledForest, pcvr: CompiledForest, value: ValueConfig,
                 ctcvr: bool):
        self.features = CompiledFeatures(features)
        forests = [(*forest.arrays(), float(forest.sigmoid)) for forest in (pctr, pcvr)]
        prices, goals = features.prices, np.arange(len(GOALS))
        # the goals whose eCPM depends on pCVR (estimated_ecpm's rule, which the kernel's arithmetic repeats)
        uses_pcvr = estimated_ecpm(goals, np.ones(len(goals)), np.ones(len(goals)), np.zeros(len(goals))) == 0
        if value.alphas and set(value.alphas) - set(value.scales):
            value.final_value(np.zeros(1), {})  # raises ValueConfig's own error
        terms = np.array([TARGETS.index(name) for name in value.alphas], dtype=np.int64)
        coef = np.array([value.alphas[name] * value.scales[name] for name in value.alphas], dtype=np.float64)
        c = np.ascontiguousarray
        self.model = _pack_model(*forests, bool(ctcvr), c(prices.goal, dtype=np.int64),
                                 c(prices.bid, dtype=np.float64), c(prices.conversion_value, dtype=np.float64),
                                 c(uses_pcvr, dtype=np.bool_), terms, coef)

    def score(self, requests: Requests, ad_ids: np.ndarray, position: int | np.ndarray = 0) -> Scores:
        req, ad, pos = self.features.inputs(requests, ad_ids, position)
        return Scores(*_score(self.features.tables, self.model, req, ad, pos))
