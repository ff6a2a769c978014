"""``assemble``: the one function that turns canonical ``RawLogs`` into adsim's six tables and two embedding arrays.

It does what is the same for every source, so each default is invented once and documented once:

* ids: ads and users are numbered in the order of their frames; requests and impressions in time order.
* time: ``ts`` is seconds since midnight of the first logged day (the importer converts the source's clock);
  ``day = ts // 86400``, ``hour = ts % 86400 // 3600``.
* splits: given by the importer, else the earliest 70% of requests train, the next 15% valid, the last 15% test.
* ``activity_group``: quintiles of the users' request counts (1 = least active); tied counts share a group, so
  logs where every user makes one request put everyone in UG3.
* categorical ad and user attributes (advertiser, industry, region) become dense codes, 0 the most frequent;
  regions beyond 62 codes fold into code 61 (targeting masks are int64 bit sets).
* targeting: untargeted (every age bucket, both genders, every region present). ``created_day`` 0, no budget
  (``daily_budget`` 1e12), ``roi_target`` 0, ``conversion_value`` 0, goal CPC with bid 1 where the source has
  neither.
* cost where the source logs none: CPM pays bid / 1000 per impression, CPC pays the bid per click, oCPC, oCPA
  and oCPI per conversion.
* propensity where the source logs none: 1.0 (the bundle is then not usable for off-policy evaluation; the
  manifest's ``import.propensities`` says which).
* organic events link to the user's first request at or after them; events after a user's last request are dropped
  (counted in the manifest).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from adsim.errors import AdSimDataError
from adsim.importers.canonical import (
    AD_DEFAULTS,
    EVENT_DEFAULTS,
    EVENT_REQUIRED,
    MAX_REGIONS,
    ORGANIC_ITEM_DEFAULTS,
    SECONDS_PER_DAY,
    SPLIT_FRACTIONS,
    TARGETS,
    USER_DEFAULTS,
    ImportedLogs,
    RawLogs,
)
from adsim.importers.encoding import activity_groups, dense_codes
from adsim.importers.parsing import Origin
from adsim.simulator.history import EventIndex
from adsim.world.config import GOALS, ORGANIC_KINDS
from adsim.world.logs import SPLITS


def _with_defaults(df: pd.DataFrame, defaults: Mapping[str, object], used: dict) -> pd.DataFrame:
    df = df.copy()
    for column, value in defaults.items():
        if column not in df.columns and value is not None:
            df[column] = value
            used[column] = value
    return df


def _split_by_time(n: int) -> np.ndarray:
    rank = np.arange(n) / max(n, 1)
    edges = np.cumsum(SPLIT_FRACTIONS)[:-1]
    return np.asarray(SPLITS)[np.searchsorted(edges, rank, side="right")]


def _check_keys(values: pd.Series, known: pd.Index, what: str, origin: Origin, field: str, adsim: str
                ) -> np.ndarray:
    pos = known.get_indexer(values)
    if (pos < 0).any():
        raise origin.error(f"{what} key not in the {what}s read (no {what} row for it)", np.flatnonzero(pos < 0),
                           field, adsim)
    return pos.astype(np.int64)


def _origin(raw: RawLogs, frame: str, n: int) -> Origin:
    """The importer's origin of ``frame``, or (an importer that records none) its rows by position."""
    origin = raw.origins.get(frame)
    return origin if origin is not None and len(origin) == n else Origin.positions(f"{raw.source}:{frame}", n)


def table_origin(origin: Origin, frame: str, table: str, **derived: str) -> Origin:
    """``origin`` (of a canonical frame) re-keyed by the columns of adsim ``table`` its fields become; ``derived``
    adds adsim columns computed from a field (``day="ts"``)."""
    columns = {}
    for name, target in TARGETS[frame].items():
        target_table, column = target.split(".")
        if target_table == table and name in origin.columns:
            columns[column] = origin.columns[name]
    for column, name in derived.items():
        if name in origin.columns:
            columns[column] = origin.columns[name]
    return origin.with_columns(columns)


def assemble(raw: RawLogs) -> ImportedLogs:
    """The six tables, embeddings and manifest entries of ``raw`` (see the module docstring for every default)."""
    src = raw.source
    defaults: dict[str, dict] = {"events": {}, "ads": {}, "users": {}, "organic_items": {}}
    ev = raw.events.reset_index(drop=True)
    missing = [c for c in EVENT_REQUIRED if c not in ev.columns]
    if missing:
        raise AdSimDataError(f"events lack column(s) {missing}", file=src, column=missing[0])
    ev_origin = _origin(raw, "events", len(ev))
    if len(ev) == 0:
        raise ev_origin.error("no logged impressions")
    if (ev["ts"].to_numpy() < 0).any():
        raise ev_origin.error("timestamps before the first day", np.flatnonzero(ev["ts"].to_numpy() < 0), "ts",
                              "requests.ts")
    ev = _with_defaults(ev, EVENT_DEFAULTS, defaults["events"])

    # ---- ads
    ads = _with_defaults(raw.ads, AD_DEFAULTS, defaults["ads"])
    ads_origin = _origin(raw, "ads", len(ads))
    if "industry_l1" not in raw.ads.columns:
        ads["industry_l1"] = ads["industry"]
        defaults["ads"]["industry_l1"] = "= industry"
        if "industry" in ads_origin.columns:
            ads_origin = ads_origin.with_columns({**ads_origin.columns, "industry_l1": ads_origin.columns["industry"]})
    if len(raw.ad_embeddings) != len(ads):
        raise AdSimDataError(f"{len(ads)} ads but {len(raw.ad_embeddings)} ad embeddings", file=src)
    ad_pos = _check_keys(ev["ad"], ads.index, "ad", ev_origin, "ad", "impressions.ad_id")
    goal = ads["goal"].astype(str).to_numpy()

    # ---- requests: one per distinct request key, in time order
    if "request" not in ev.columns:
        ev["request"] = np.arange(len(ev))
        defaults["events"]["request"] = "one request per impression"
    order = np.lexsort((ev["position"].to_numpy(), ev["request"].to_numpy(), ev["ts"].to_numpy()))
    ev, ad_pos, ev_origin = ev.iloc[order].reset_index(drop=True), ad_pos[order], ev_origin.take(order)
    first = ~ev["request"].duplicated().to_numpy()
    request_of_event = np.cumsum(first) - 1  # dense request ids, time ordered
    req_rows = ev.loc[first]
    req_origin = ev_origin.take(np.flatnonzero(first))
    n_req = len(req_rows)
    for column in ("ts", "user", "device", "placement", "n_slots", "privacy", "split"):
        if column not in ev.columns:
            continue
        bad = ev.groupby("request")[column].transform("nunique").to_numpy() > 1
        if bad.any():
            raise ev_origin.error(f"impressions of one request have different {column} values", np.flatnonzero(bad),
                                  column, TARGETS["events"][column])

    # ---- users
    if raw.users is None:
        keys, first_event = np.unique(ev["user"].to_numpy(), return_index=True)
        users = pd.DataFrame(index=pd.Index(keys))
        users_origin = ev_origin.take(first_event).with_columns({})
    else:
        users = raw.users
        users_origin = _origin(raw, "users", len(users))
    users = _with_defaults(users, USER_DEFAULTS, defaults["users"])
    user_of_request = _check_keys(req_rows["user"], users.index, "user", req_origin, "user", "requests.user_id")
    n_users = len(users)
    counts = np.bincount(user_of_request, minlength=n_users)
    device = req_rows["device"].to_numpy().astype(np.int64)
    if "primary_device" not in users.columns:
        per = np.zeros((n_users, 3), dtype=np.int64)
        np.add.at(per, (user_of_request, np.clip(device, 0, 2)), 1)
        users["primary_device"] = per.argmax(axis=1)
        defaults["users"]["primary_device"] = "most frequent request device"

    ts = req_rows["ts"].to_numpy().astype(np.int64)
    if "split" in ev.columns:
        split = req_rows["split"].astype(str).to_numpy()
        bad = ~np.isin(split, SPLITS)
        if bad.any():
            raise req_origin.error(f"split outside {list(SPLITS)}", np.flatnonzero(bad), "split", "requests.split")
    else:
        split = _split_by_time(n_req)
        defaults["events"]["split"] = f"time quantiles {list(SPLIT_FRACTIONS)}"
    if "n_slots" in ev.columns:
        n_slots = req_rows["n_slots"].to_numpy()
    else:
        n_slots = np.clip(np.bincount(request_of_event, minlength=n_req), 1, 3)
        defaults["events"]["n_slots"] = "impressions per request, within 1..3"
    requests = pd.DataFrame({
        "request_id": np.arange(n_req, dtype=np.int64),
        "user_id": user_of_request,
        "ts": ts,
        "day": (ts // SECONDS_PER_DAY).astype(np.int16),
        "hour": (ts % SECONDS_PER_DAY // 3600).astype(np.int8),
        "device": device.astype(np.int8),
        "placement": req_rows["placement"].to_numpy().astype(np.int8),
        "n_slots": np.asarray(n_slots).astype(np.int8),
        "privacy": req_rows["privacy"].to_numpy().astype(bool),
        "is_synthetic": np.zeros(n_req, dtype=bool),
        "split": pd.Categorical(split, categories=list(SPLITS)),
    })
    # ---- impressions
    click = ev["click"].to_numpy().astype(bool)
    conversion = ev["conversion"].to_numpy().astype(bool)
    bid = ads["bid"].to_numpy().astype(np.float64)[ad_pos]
    if "cost" in ev.columns:
        cost = ev["cost"].to_numpy().astype(np.float64)
    else:
        g = goal[ad_pos]
        cost = np.where(g == "CPM", bid / 1000.0,
                        np.where(g == "CPC", bid * click, bid * conversion))
        defaults["events"]["cost"] = "CPM: bid/1000 per impression; CPC: bid per click; oCPC, oCPA, oCPI: bid per " \
                                     "conversion"
    impressions = pd.DataFrame({
        "impression_id": np.arange(len(ev), dtype=np.int64),
        "request_id": request_of_event.astype(np.int64),
        "ad_id": ad_pos,
        "position": ev["position"].to_numpy().astype(np.int8),
        "propensity": ev["propensity"].to_numpy().astype(np.float64),
        "ranking_ecpm": ev["ranking_ecpm"].to_numpy().astype(np.float64),
        "click": click,
        "conversion": conversion,
        "cost": cost,
        "gmv": ev["gmv"].to_numpy().astype(np.float64),
    })

    # ---- users table (codes and groups)
    regions = dense_codes(users["region"].to_numpy(), MAX_REGIONS)
    users_table = pd.DataFrame({
        "user_id": np.arange(n_users, dtype=np.int64),
        "age_bucket": users["age_bucket"].to_numpy().astype(np.int8),
        "gender": users["gender"].to_numpy().astype(np.int8),
        "region": regions.astype(np.int16),
        "activity_group": activity_groups(counts),
        "primary_device": users["primary_device"].to_numpy().astype(np.int8),
    })

    # ---- ads table
    n_age = int(users_table["age_bucket"].max()) + 1
    n_region = int(regions.max()) + 1
    ads_table = pd.DataFrame({
        "ad_id": np.arange(len(ads), dtype=np.int64),
        "advertiser_id": dense_codes(ads["advertiser"].to_numpy()),
        "industry": dense_codes(ads["industry"].to_numpy()).astype(np.int16),
        "industry_l1": dense_codes(ads["industry_l1"].to_numpy()).astype(np.int16),
        "goal": pd.Categorical(goal, categories=list(GOALS)),
        "roi_target": ads["roi_target"].to_numpy().astype(np.float32),
        "bid": bid_values(ads, ads_origin),
        "target_age_mask": np.full(len(ads), (1 << n_age) - 1, dtype=np.int16),
        "target_gender_mask": np.full(len(ads), 3, dtype=np.int8),
        "target_region_mask": np.full(len(ads), (1 << n_region) - 1, dtype=np.int64),
        "daily_budget": ads["daily_budget"].to_numpy().astype(np.float64),
        "created_day": ads["created_day"].to_numpy().astype(np.int16),
        "conversion_value": ads["conversion_value"].to_numpy().astype(np.float64),
    })
    defaults["ads"]["targeting"] = "untargeted: every age bucket, both genders, every region"

    # ---- organic content
    organic_items, organic_events, organic_emb, dropped, organic_origins = _organic(raw, users, requests, defaults)

    tables = {"users": users_table, "ads": ads_table, "organic_items": organic_items,
              "organic_events": organic_events, "requests": requests, "impressions": impressions}
    arrays = {"ad_embeddings": np.asarray(raw.ad_embeddings, dtype=np.float32), "organic_embeddings": organic_emb}
    request_arrays = {}
    if "market_price" in ev.columns:
        request_arrays["request_market_price"] = req_rows["market_price"].to_numpy().astype(np.float32)
    notes = {**raw.notes, "defaults": {k: _jsonable(v) for k, v in defaults.items() if v},
             "organic_events_dropped_after_last_request": dropped}
    origins = {
        "impressions": table_origin(ev_origin, "events", "impressions"),
        "requests": table_origin(req_origin, "events", "requests", day="ts", hour="ts"),
        "users": table_origin(users_origin, "users", "users"),
        "ads": table_origin(ads_origin, "ads", "ads"),
        **organic_origins,
    }
    return ImportedLogs(src, tables, arrays, request_arrays, {"import": notes, **raw.extra}, origins)


def bid_values(ads: pd.DataFrame, origin: Origin) -> np.ndarray:
    bid = ads["bid"].to_numpy().astype(np.float64)
    bad = ~(np.isfinite(bid) & (bid > 0))
    if bad.any():
        raise origin.error("bids must be positive numbers", np.flatnonzero(bad), "bid", "ads.bid")
    return bid


def _organic(raw: RawLogs, users: pd.DataFrame, requests: pd.DataFrame, defaults: dict
             ) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, int, dict[str, Origin]]:
    """Organic items and events, each event tied to the user's first request at or after it (and their origins)."""
    dim = raw.ad_embeddings.shape[1]
    items = raw.organic_items if raw.organic_items is not None else pd.DataFrame(index=pd.Index([], dtype=object))
    items = _with_defaults(items, ORGANIC_ITEM_DEFAULTS, defaults["organic_items"])
    items_origin = _origin(raw, "organic_items", len(items))
    emb = raw.organic_embeddings if raw.organic_embeddings is not None else np.zeros((0, dim), np.float32)
    if len(emb) != len(items) or (len(emb) and emb.shape[1] != dim):
        raise AdSimDataError(f"organic embeddings {np.shape(emb)} do not match {len(items)} items x {dim} dims",
                             file=raw.source)
    kinds = items["kind"].astype(str).to_numpy()
    bad = ~np.isin(kinds, ORGANIC_KINDS)
    if bad.any():
        raise items_origin.error(f"organic kind outside {list(ORGANIC_KINDS)}", np.flatnonzero(bad), "kind",
                                 "organic_items.kind")
    items_table = pd.DataFrame({
        "item_id": np.arange(len(items), dtype=np.int64),
        "kind": pd.Categorical(kinds, categories=list(ORGANIC_KINDS)),
        "topic": dense_codes(items["topic"].to_numpy()).astype(np.int16),
    })
    ev = raw.organic_events if raw.organic_events is not None else pd.DataFrame({"user": [], "item": [], "ts": []})
    ev = ev.reset_index(drop=True)
    ev_origin = _origin(raw, "organic_events", len(ev))
    user = (_check_keys(ev["user"], users.index, "user", ev_origin, "user", "organic_events.user_id") if len(ev)
            else np.zeros(0, int))
    item = (_check_keys(ev["item"], items.index, "item", ev_origin, "item", "organic_events.item_id") if len(ev)
            else np.zeros(0, int))
    ts = ev["ts"].to_numpy().astype(np.int64)
    if (ts < 0).any():
        raise ev_origin.error("timestamps before the first day", np.flatnonzero(ts < 0), "ts", "organic_events.ts")
    dwell = ev["dwell_s"].to_numpy().astype(np.float32) if "dwell_s" in ev else np.zeros(len(ev), np.float32)
    if "dwell_s" not in ev and len(ev):
        defaults["organic_items"]["dwell_s"] = 0.0

    # the user's first request at or after each event
    by_user = EventIndex(requests["user_id"].to_numpy(), requests["ts"].to_numpy(),
                         {"request_id": np.arange(len(requests), dtype=np.int64)})
    at = by_user.first_at_or_after(user, ts)
    rid = by_user.payload["request_id"][at]
    keep = np.flatnonzero(at > 0)
    keep = keep[np.lexsort((keep, ts[keep]))]  # time order, stable
    events_table = pd.DataFrame({
        "event_id": np.arange(len(keep), dtype=np.int64),
        "user_id": user[keep].astype(np.int64),
        "item_id": item[keep].astype(np.int64),
        "ts": ts[keep],
        "request_id": rid[keep].astype(np.int64),
        "dwell_s": dwell[keep],
    })
    origins = {"organic_items": table_origin(items_origin, "organic_items", "organic_items"),
               "organic_events": table_origin(ev_origin.take(keep), "organic_events", "organic_events")}
    return items_table, events_table, np.asarray(emb, dtype=np.float32), int(len(ev) - len(keep)), origins


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value
