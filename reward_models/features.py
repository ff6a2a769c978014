"""Features of (request, candidate ad) pairs: one vectorised function over timelines indexed once from the logs.

The simulator calls ``FeatureBuilder.build`` for every batch of candidates, so nothing here loops over rows in
Python. The logs are indexed once into

- per-user ``EventIndex``es (``adsim.simulator.history``: organic views, ad impressions, clicks; user x ad-key
  counts), where one binary search answers "what did this user do strictly before time t", and
- per-entity ``DayTable``s (ads, advertisers, key levels), where one gather answers "what happened to this ad on
  the days before day d".

Leakage: every history feature of a request at time t counts only events strictly before t (timelines) or before
t's day (day tables), so a training row never sees its own label, and the same code serves training,
evaluation and simulation (a request after the logs sees the whole log).

Batch invariance: a pair's features never depend on the other pairs of its batch. Embeddings and history vectors
live on an exact grid, so every cosine is exact in float64 whatever the matmul's blocking; the few sums that cannot
be exact run in a fixed order (``reward_models.exact``). ``reward_models.compiled`` computes the same numbers bit
for bit in numba kernels; this module is the plain reference.

Ad keys: the ad's industry and, when semantic IDs are given, each SID prefix (level 1 = first code, level 2 =
first two codes, ...). Per key: the key's global CTR/CVR so far, and how often this user saw and clicked ads of
that key so far. They let a never-shown ad borrow the history of its neighbours.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from adsim.data import Scenario
from adsim.errors import AdSimDataError
from adsim.simulator.history import EventIndex
from reward_models import exact, shared_arrays
from reward_models.exact import on_grid
from reward_models.protocol import FeatureMatrix, FeatureSpec
from reward_models.value import AdPrices

REQUEST_COLUMNS = ("user_id", "ts", "day", "hour", "device", "placement")
"""What a request must carry to be scored (a logged request row, or a synthetic one)."""
NULLABLE = ("organic_cos_max", "organic_cos_soft", "organic_cos_mean", "organic_topic_match", "click_cos_max",
            "click_cos_mean")
"""Interest-match features: NaN while the user has no organic views (clicks) before the request."""


@dataclass(frozen=True)
class FeatureConfig:
    """Windows and smoothing of the history features."""

    recent_window: int = 16
    """Latest organic items compared one by one with the ad (max and soft-max cosine): current interests."""
    long_window: int = 64
    """Organic items averaged into the user's longer-term interest vector."""
    click_window: int = 16
    """Latest clicked ads compared with the candidate."""
    softmax_temperature: float = 6.0
    prior_strength: float = 20.0
    """Pseudo-observations that shrink a CTR (CVR) towards the train split's global rate."""


# ------------------------------------------------------------------------------------------------ indexes
@dataclass(frozen=True)
class DayTable:
    """Totals per entity over the days before each day: ``table[d, e]`` sums entity e's events of days < d."""

    table: np.ndarray  # (n_days + 1, n_entities, C) float32

    @classmethod
    def build(cls, entity: np.ndarray, day: np.ndarray, counts: np.ndarray, n_entities: int, n_days: int) -> DayTable:
        flat = (np.asarray(day, dtype=np.int64) + 1) * n_entities + entity
        size = (n_days + 1) * n_entities
        per_day = np.stack([np.bincount(flat, weights=c, minlength=size) for c in counts.T], axis=-1)
        return cls(np.cumsum(per_day.reshape(n_days + 1, n_entities, -1), axis=0).astype(np.float32))

    def before(self, entity: np.ndarray, day: np.ndarray) -> np.ndarray:
        return self.table[np.minimum(np.maximum(day, 0), len(self.table) - 1), entity]


@dataclass(frozen=True)
class AdKey:
    """A grouping of ads (industry, a SID prefix) whose history a candidate inherits."""

    name: str
    of_ad: np.ndarray  # (n_ads,) dense key id per ad
    stats: DayTable  # impressions, clicks, conversions per key
    user_stats: EventIndex  # impressions, clicks per (user, key), group = user * n_keys + key
    n_keys: int


def sid_prefixes(codes: np.ndarray) -> np.ndarray:
    """(n_ads, L) dense id of each ad's SID prefix of length 1..L (prefixes, not codes: level 2 depends on 1)."""
    out = np.empty(codes.shape, dtype=np.int64)
    for level in range(codes.shape[1]):
        out[:, level] = np.unique(codes[:, : level + 1], axis=0, return_inverse=True)[1].ravel()
    return out


def _check_ids(values: np.ndarray, n: int, column: str) -> None:
    bad = (values < 0) | (values >= n)
    if bad.any():
        raise AdSimDataError(f"ids outside 0..{n - 1}", column=column, rows=np.flatnonzero(bad.ravel()))


Requests = np.ndarray | Mapping[str, np.ndarray] | pd.DataFrame
"""Logged request ids (B,), or B request rows with REQUEST_COLUMNS (e.g. synthetic ARR requests)."""


def request_arrays(requests: Mapping[str, np.ndarray] | pd.DataFrame) -> dict[str, np.ndarray]:
    """The REQUEST_COLUMNS of a batch of request rows as int64 arrays."""
    missing = [c for c in REQUEST_COLUMNS if c not in requests]
    if missing:
        raise AdSimDataError(f"request rows lack column(s) {missing}", column=missing[0])
    return {c: np.asarray(requests[c]).astype(np.int64, copy=False) for c in REQUEST_COLUMNS}


def resolve_requests(requests: Requests, logged: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Request rows of ``requests``: given as rows, or as ids into the ``logged`` request arrays."""
    if isinstance(requests, Mapping | pd.DataFrame):
        return request_arrays(requests)
    ids = np.asarray(requests, dtype=np.int64)
    _check_ids(ids, len(logged["user_id"]), "request_id")
    return {c: v[ids] for c, v in logged.items()}


def _rate(events: np.ndarray, trials: np.ndarray, prior: float, strength: float) -> np.ndarray:
    return (events + strength * prior) / (trials + strength)


# ---------------------------------------------------------------------------------------------- builder
class FeatureBuilder:
    """Indexes a scenario's logs once; ``build`` then turns (request, candidate ad) pairs into model features.

    Args:
        scenario: the bundle whose tables feed every history feature.
        sid_codes: optional (n_ads, L) semantic IDs; each level becomes a categorical feature and an ad key.
        config: windows and smoothing.
    """

    def __init__(self, scenario: Scenario, sid_codes: np.ndarray | None = None, config: FeatureConfig | None = None):
        self.config = config or FeatureConfig()
        users, ads = scenario.table("users"), scenario.table("ads")
        requests, impressions = scenario.table("requests"), scenario.table("impressions")
        organic = scenario.table("organic_events")
        for name, table, key in (("users", users, "user_id"), ("ads", ads, "ad_id"),
                                 ("requests", requests, "request_id")):
            if not np.array_equal(table[key].to_numpy(), np.arange(len(table))):
                raise AdSimDataError("ids must be dense 0..n-1 in row order", file=name, column=key)
        self.n_users, self.n_ads = len(users), len(ads)
        self.request_matrix = np.stack(list(request_arrays(requests).values()))  # (6, n) in REQUEST_COLUMNS order
        self.requests = dict(zip(REQUEST_COLUMNS, self.request_matrix, strict=True))
        split = requests["split"].astype(str).to_numpy()
        self.n_days = int(self.requests["day"].max()) + 1 if len(requests) else 1
        last_ts = max(self.requests["ts"].max(initial=0), organic["ts"].to_numpy().max(initial=0))
        shift = int(last_ts + 2).bit_length()  # time bits of a timeline code; later queries clip to "after all"

        # ---- static profiles
        self.user_columns = {
            "user_age": users["age_bucket"].to_numpy(),
            "user_gender": users["gender"].to_numpy(),
            "user_region": users["region"].to_numpy(),
            "user_activity": users["activity_group"].to_numpy(),
            "user_primary_device": users["primary_device"].to_numpy(),
        }
        self.prices = AdPrices.from_table(ads)
        self.created_day = ads["created_day"].to_numpy().astype(np.int64)
        self.ad_columns = {
            "ad_industry": ads["industry"].to_numpy(),
            "ad_industry_l1": ads["industry_l1"].to_numpy(),
            "ad_goal": self.prices.goal,
            "ad_roi_target": ads["roi_target"].to_numpy(),
            "ad_bid": self.prices.bid,
        }
        # unit vectors on the exact grid (reward_models.exact): every cosine below is exact in float64
        self.ad_emb = _unit_on_grid(scenario.ad_embeddings)
        organic_emb = _unit_on_grid(scenario.organic_embeddings)

        # ---- logged impressions, placed in time
        req = impressions["request_id"].to_numpy()
        imp_ad = impressions["ad_id"].to_numpy().astype(np.int64)
        imp_user, imp_ts, imp_day = (self.requests[c][req] for c in ("user_id", "ts", "day"))
        click = impressions["click"].to_numpy()
        conversion = impressions["conversion"].to_numpy()
        outcome = np.stack([np.ones(len(req)), click, conversion], axis=1)  # impressions, clicks, conversions
        train = split[req] == "train"
        self.prior_ctr = float(click[train].mean()) if train.any() else float(click.mean())
        self.prior_cvr = float(conversion[train].sum() / max(click[train].sum(), 1))

        self.user_outcomes = EventIndex(imp_user, imp_ts, counts=outcome, shift=shift)
        self.clicks = EventIndex(imp_user[click], imp_ts[click], {"item": imp_ad[click]}, shift=shift)
        self.organic = EventIndex(organic["user_id"].to_numpy(), organic["ts"].to_numpy(),
                                  {"item": organic["item_id"].to_numpy().astype(np.int64)}, shift=shift)
        self.organic_emb = organic_emb
        self.organic_topic = scenario.table("organic_items")["topic"].to_numpy().astype(np.int64)
        if not len(self.organic_topic):  # logs without organic views: one placeholder item no window ever shows,
            self.organic_emb = np.zeros((1, self.ad_emb.shape[1]), dtype=self.ad_emb.dtype)  # so the interest
            self.organic_topic = np.zeros(1, dtype=np.int64)  # features stay NaN (empty history), as NULLABLE says
        self.n_topics = int(self.organic_topic.max()) + 1
        self.ad_stats = DayTable.build(imp_ad, imp_day, outcome, self.n_ads, self.n_days)
        self.advertiser = ads["advertiser_id"].to_numpy().astype(np.int64)
        self.advertiser_stats = DayTable.build(self.advertiser[imp_ad], imp_day, outcome,
                                               int(self.advertiser.max()) + 1, self.n_days)

        # ---- ad keys: industry, then every SID prefix
        keys = {"industry": ads["industry"].to_numpy().astype(np.int64)}
        self.sid_codes = None
        if sid_codes is not None:
            codes = np.asarray(sid_codes)
            if codes.ndim != 2 or len(codes) != self.n_ads or not np.issubdtype(codes.dtype, np.integer):
                raise AdSimDataError(f"sid_codes must be an integer (n_ads={self.n_ads}, L) array, got "
                                     f"{codes.dtype} {codes.shape}")
            if (codes < 0).any():
                raise AdSimDataError("negative SID codes", column="sid_codes", rows=np.flatnonzero((codes < 0).any(1)))
            self.sid_codes = codes.astype(np.int64)
            for level, prefix in enumerate(sid_prefixes(self.sid_codes).T, start=1):
                keys[f"sid{level}"] = prefix
        self.keys = []
        for name, of_ad in keys.items():
            n_keys = int(of_ad.max()) + 1
            self.keys.append(AdKey(
                name=name,
                of_ad=of_ad,
                stats=DayTable.build(of_ad[imp_ad], imp_day, outcome, n_keys, self.n_days),
                user_stats=EventIndex(imp_user * n_keys + of_ad[imp_ad], imp_ts, counts=outcome[:, :2], shift=shift),
                n_keys=n_keys,
            ))
        # the keys' user indexes as one (n_keys, n + 1) block (the compiled path reads it); each index keeps views
        self.key_code = np.stack([key.user_stats.code for key in self.keys])
        self.key_cum = np.stack([key.user_stats.cum for key in self.keys])
        for j, key in enumerate(self.keys):
            key.user_stats.code, key.user_stats.cum = self.key_code[j], self.key_cum[j]
        self.specs = self._specs()
        self.derived: dict[str, object] = {}
        """Tables other modules derive from this builder once (``reward_models.compiled``), kept with it."""
        self._share(scenario)

    def _share(self, scenario: Scenario) -> None:
        """The large indexes as memory maps shared with every other process on this bundle
        (``reward_models.shared_arrays``; the values are unchanged), when the scenario is a bundle with checksums."""
        files = (getattr(scenario, "manifest", None) or {}).get("files")
        if not files:
            return
        indexes = {"outcomes": self.user_outcomes, "clicks": self.clicks, "organic": self.organic,
                   **{f"key{j}": key.user_stats for j, key in enumerate(self.keys)}}
        arrays = {"requests": self.request_matrix, "key_code": self.key_code, "key_cum": self.key_cum}
        for name, index in indexes.items():
            arrays |= {f"{name}_ts": index.ts, **{f"{name}_{k}": v for k, v in index.payload.items()}}
            if not name.startswith("key"):
                arrays |= {f"{name}_code": index.code, f"{name}_cum": index.cum}
        key = shared_arrays.cache_key(
            {"files": {k: v for k, v in files.items() if k.startswith(("tables/", "arrays/"))},
             "config": dataclasses.asdict(self.config)},
            {"sid_codes": self.sid_codes if self.sid_codes is not None else np.zeros(0, np.int64)})
        shared = shared_arrays.share(arrays, key)
        self.request_matrix = shared["requests"]
        self.requests = dict(zip(REQUEST_COLUMNS, self.request_matrix, strict=True))
        self.key_code, self.key_cum = shared["key_code"], shared["key_cum"]
        for name, index in indexes.items():
            index.ts = shared[f"{name}_ts"]
            index.payload = {k: shared[f"{name}_{k}"] for k in index.payload}
            if not name.startswith("key"):
                index.code, index.cum = shared[f"{name}_code"], shared[f"{name}_cum"]
        for j, key in enumerate(self.keys):
            key.user_stats.code, key.user_stats.cum = self.key_code[j], self.key_cum[j]

    # ------------------------------------------------------------------------------------------- specs
    def _specs(self) -> tuple[FeatureSpec, ...]:
        sid = [] if self.sid_codes is None else [f"sid{level}_code" for level in range(1, self.sid_codes.shape[1] + 1)]
        names = [
            "hour", "device", "placement", "position",
            *self.user_columns,
            "user_impressions", "user_clicks", "user_ctr", "user_conversions", "user_cvr", "user_organic",
            *self.ad_columns, "ad_age_days",
            "ad_impressions", "ad_ctr", "ad_cvr", "advertiser_impressions", "advertiser_ctr", "advertiser_cvr",
            *sid,
            *(f"{prefix}{key.name}_{stat}" for key in self.keys for prefix, stat in (
                ("", "impressions"), ("", "ctr"), ("", "cvr"), ("user_", "impressions"), ("user_", "clicks"))),
            *NULLABLE,
        ]
        categorical = {"device", "placement", "user_age", "user_gender", "user_region", "user_primary_device",
                       "ad_industry", "ad_industry_l1", "ad_goal", *sid}
        return tuple(FeatureSpec(n, categorical=n in categorical, nullable=n in NULLABLE) for n in names)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.specs)

    # ------------------------------------------------------------------------------------------- build
    def build(self, requests: Requests, ad_ids: np.ndarray, position: int | np.ndarray = 0) -> FeatureMatrix:
        """Features of B requests x K candidate ads, rows in (request, candidate) order.

        Args:
            requests: B logged request ids, or B request rows (REQUEST_COLUMNS as arrays, or a DataFrame).
            ad_ids: (B, K) candidate ads per request.
            position: slot the ads would take (0 is the top); broadcasts against ``ad_ids``.

        Returns:
            A (B * K, F) FeatureMatrix.
        """
        req = resolve_requests(requests, self.requests)
        ad = np.asarray(ad_ids, dtype=np.int64)
        b = len(req["user_id"])
        if ad.ndim != 2 or ad.shape[0] != b:
            raise AdSimDataError(f"ad_ids must be (n_requests={b}, K), got shape {ad.shape}", column="ad_id")
        _check_ids(ad, self.n_ads, "ad_id")
        _check_ids(req["user_id"], self.n_users, "user_id")
        cfg, k = self.config, ad.shape[1]
        user, ts, day = req["user_id"], req["ts"], req["day"]
        prior = cfg.prior_strength
        col: dict[str, np.ndarray] = {}  # name -> (B, 1) per request or (B, K) per pair

        # ---- context and user profile
        for c in ("hour", "device", "placement"):
            col[c] = req[c][:, None]
        col["position"] = np.broadcast_to(np.asarray(position), ad.shape)
        for name, values in self.user_columns.items():
            col[name] = values[user][:, None]

        # ---- user history, computed once per distinct (user, time)
        history, inverse = self._user_history(user, ts)
        outcomes = history["outcomes"][inverse]  # (B, 3)
        col["user_impressions"], col["user_clicks"], col["user_conversions"] = (outcomes[:, i:i + 1] for i in range(3))
        col["user_ctr"] = _rate(outcomes[:, 1:2], outcomes[:, 0:1], self.prior_ctr, prior)
        col["user_cvr"] = _rate(outcomes[:, 2:3], outcomes[:, 1:2], self.prior_cvr, prior)
        col["user_organic"] = history["organic"][inverse][:, None]

        # ---- ad profile and history before the request's day
        for name, values in self.ad_columns.items():
            col[name] = values[ad]
        col["ad_age_days"] = day[:, None] - self.created_day[ad]
        d = day[:, None]
        self._entity_stats(col, "ad", self.ad_stats.before(ad, d))
        self._entity_stats(col, "advertiser", self.advertiser_stats.before(self.advertiser[ad], d))
        if self.sid_codes is not None:
            for level in range(self.sid_codes.shape[1]):
                col[f"sid{level + 1}_code"] = self.sid_codes[ad, level]
        for key in self.keys:
            kid = key.of_ad[ad]
            self._entity_stats(col, key.name, key.stats.before(kid, d))
            seen = key.user_stats.counts_before(user[:, None] * key.n_keys + kid, ts[:, None])
            col[f"user_{key.name}_impressions"], col[f"user_{key.name}_clicks"] = seen[..., 0], seen[..., 1]

        # ---- interest match: the ad against recent organic items, the long-term mean and clicked ads
        # (float64 on the grid: exact whatever the matmul's blocking, so no other pair of the batch can change it)
        ad_emb = self.ad_emb[ad].astype(np.float64)  # (B, K, D)
        recent = np.matmul(ad_emb, history["recent"][inverse].transpose(0, 2, 1))  # (B, K, R)
        col["organic_cos_max"], col["organic_cos_soft"] = _pool(recent, history["recent_valid"][inverse],
                                                                cfg.softmax_temperature)
        col["organic_cos_mean"] = _cosine(ad_emb, history["long_mean"][inverse])
        clicked = np.matmul(ad_emb, history["clicked"][inverse].transpose(0, 2, 1))  # (B, K, C)
        col["click_cos_max"], _ = _pool(clicked, history["clicked_valid"][inverse], cfg.softmax_temperature)
        topics = np.matmul(ad_emb, history["topic_mean"][inverse].transpose(0, 2, 1))  # (B, K, T)
        _, col["organic_topic_match"] = _pool(topics, history["topic_weight"][inverse], cfg.softmax_temperature)
        col["click_cos_mean"] = _cosine(ad_emb, history["clicked_mean"][inverse])

        out = np.empty((b, k, len(self.specs)), dtype=np.float32)
        for j, spec in enumerate(self.specs):
            out[:, :, j] = col[spec.name]
        return FeatureMatrix(out.reshape(b * k, -1), self.specs)

    def _entity_stats(self, col: dict[str, np.ndarray], name: str, counts: np.ndarray) -> None:
        """Impressions and smoothed CTR/CVR columns from (..., 3) impression, click, conversion counts."""
        strength = self.config.prior_strength
        col[f"{name}_impressions"] = counts[..., 0]
        col[f"{name}_ctr"] = _rate(counts[..., 1], counts[..., 0], self.prior_ctr, strength)
        col[f"{name}_cvr"] = _rate(counts[..., 2], counts[..., 1], self.prior_cvr, strength)

    def rate_tables(self) -> list[np.ndarray]:
        """Per entity kind (ad, advertiser, each key): (n_days + 1, n_entities, 3) float32 impressions, CTR and CVR
        before each day, i.e. ``_entity_stats`` of every (day, entity) at once, with the same float32 arithmetic."""
        out = []
        for stats in (self.ad_stats, self.advertiser_stats, *(key.stats for key in self.keys)):
            col: dict[str, np.ndarray] = {}
            self._entity_stats(col, "e", stats.table)
            out.append(np.stack([col["e_impressions"], col["e_ctr"], col["e_cvr"]], axis=-1).astype(np.float32))
        return out

    def _user_history(self, user: np.ndarray, ts: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Per distinct (user, ts): counts so far and history vectors (float64, on the grid); plus the map back to
        the batch rows."""
        cfg = self.config
        key, inverse = np.unique((user << 32) | np.clip(ts, 0, (1 << 32) - 1), return_inverse=True)
        user, ts = key >> 32, key & ((1 << 32) - 1)
        last_organic = self.organic.last_before(user, ts)
        idx, valid = self.organic.window(user, last_organic, max(cfg.long_window, cfg.recent_window))
        emb = self.organic_emb[self.organic.payload["item"][idx]]  # (U, M, D) float32 grid values, newest first
        clicked_idx, clicked_valid = self.clicks.window(user, self.clicks.last_before(user, ts), cfg.click_window)
        clicked = self.ad_emb[self.clicks.payload["item"][clicked_idx]].astype(np.float64)  # (U, C, D)
        long, long_valid = emb[:, : cfg.long_window], valid[:, : cfg.long_window]
        return {
            "outcomes": self.user_outcomes.counts_before(user, ts),
            "organic": self.organic.cum[last_organic, 0],
            "recent": emb[:, : cfg.recent_window].astype(np.float64),
            "recent_valid": valid[:, : cfg.recent_window],
            "long_mean": _mean_on_grid(long, long_valid),
            **self._topic_interests(long, idx[:, : cfg.long_window], long_valid),
            "clicked": clicked,
            "clicked_valid": clicked_valid,
            "clicked_mean": _mean_on_grid(clicked, clicked_valid),
        }, inverse.ravel()

    def _topic_interests(self, emb: np.ndarray, idx: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
        """The user's interests as read from organic items: per content topic, the unit mean embedding of the
        window's items of that topic and the topic's share of the window. (U, T, D) and (U, T).

        The unit vector is taken of the mean put on the grid, whose squared norm is then exact (see
        ``reward_models.exact``); topics absent from the window get the zero vector and weight 0. Only the
        (user, topic) cells present are computed.
        """
        n_users, n_topics, dim = len(valid), self.n_topics, emb.shape[-1]
        topic = self.organic_topic[self.organic.payload["item"][idx]]  # (U, M)
        cell = (np.arange(n_users)[:, None] * n_topics + topic)[valid]  # (user, topic) of each valid item
        order = np.argsort(cell, kind="stable")
        cell = cell[order]
        starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]]) if len(cell) else np.zeros(0, np.int64)
        counts = np.zeros(n_users * n_topics, np.int64)
        counts[cell[starts]] = np.diff(np.r_[starts, len(cell)])
        topic_mean = np.zeros((n_users * n_topics, dim))
        if len(cell):
            rows = np.ascontiguousarray(emb[valid][order].T)  # (D, n): reduceat runs fastest along rows
            sums = np.add.reduceat(rows, starts, axis=1, dtype=np.float64).T  # exact
            mean = on_grid(sums / counts[cell[starts]][:, None])
            norm = np.sqrt((mean * mean).sum(axis=-1, keepdims=True))  # exact sum of grid squares
            topic_mean[cell[starts]] = on_grid(mean / np.maximum(norm, 1e-12))
        counts = counts.reshape(n_users, n_topics)
        return {"topic_mean": topic_mean.reshape(n_users, n_topics, dim),
                "topic_weight": counts / np.maximum(counts.sum(1, keepdims=True), 1)}

    def build_rows(self, request_ids: np.ndarray, ad_ids: np.ndarray, position: np.ndarray | int = 0,
                   chunk_size: int = 8_192) -> FeatureMatrix:
        """Features of N logged (request, ad, position) rows, e.g. impressions, built in bounded-memory chunks."""
        request_ids, ad_ids = np.asarray(request_ids), np.asarray(ad_ids)
        position = np.broadcast_to(np.asarray(position), request_ids.shape)
        parts = [
            self.build(request_ids[lo:lo + chunk_size], ad_ids[lo:lo + chunk_size, None],
                       position[lo:lo + chunk_size, None]).values
            for lo in range(0, len(request_ids), chunk_size)
        ]
        values = np.concatenate(parts) if parts else np.zeros((0, len(self.specs)), np.float32)
        return FeatureMatrix(values, self.specs)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _unit_on_grid(embeddings: np.ndarray) -> np.ndarray:
    """(N, D) float32 unit rows on the exact grid (float32 holds grid values of size <= 1 exactly)."""
    return on_grid(_unit(np.asarray(embeddings, dtype=np.float32))).astype(np.float32)


def _mean_on_grid(emb: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(N, D) mean of the valid rows of (N, M, D) grid vectors, on the grid; NaN where none is valid.

    The sum of grid vectors is exact in any order; the division is one rounding, the same in the kernels.
    """
    n = valid.sum(axis=1)[:, None]
    total = np.where(valid[:, :, None], emb, 0).sum(axis=1, dtype=np.float64)
    return np.where(n > 0, on_grid(total / np.maximum(n, 1)), np.nan)


def _cosine(ad_emb: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """(B, K) dot products of (B, K, D) ads with each request's (B, D) vector; NaN where the vector is."""
    missing = np.isnan(vectors[:, 0])
    exact = np.matmul(ad_emb, np.where(missing[:, None], 0.0, vectors)[:, :, None])[..., 0]
    return np.where(missing[:, None], np.nan, exact)


def _pool(cos: np.ndarray, weight: np.ndarray, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """Max and weighted soft-max of (B, K, M) cosines over items with weight (B, M) > 0; NaN where none.

    The soft-max is log(sum_m w_m exp(T cos_m) / sum_m w_m) / T: near the best match among heavily weighted items,
    the form of the world's own interest match. Sums run in item order, exp and
    log are ``reward_models.exact``'s: the kernels compute the same numbers.
    """
    weight = np.broadcast_to(weight.astype(np.float64)[:, None, :], cos.shape)
    top = np.where(weight > 0, cos, -np.inf).max(axis=-1)  # (B, K)
    has = np.isfinite(top)
    top = np.where(has, top, 0.0)
    terms = np.zeros(cos.shape)  # weight x exp, 0 where the weight is (the kernels skip those items)
    use = weight > 0
    terms[use] = weight[use] * exact.exp(temperature * (cos - top[..., None])[use])
    # in item order, as the kernels add (numpy's accumulate is sequential, its sum is not)
    mean_exp = np.cumsum(terms, axis=-1)[..., -1] / np.maximum(np.cumsum(weight, axis=-1)[..., -1], 1e-12)
    soft = top + exact.log(np.maximum(mean_exp, 1e-30)) / temperature
    return np.where(has, top, np.nan), np.where(has, soft, np.nan)
