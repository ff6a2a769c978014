"""Open Bandit Dataset (ZOZOTOWN fashion e-commerce, Saito et al. 2021, arXiv:2008.07146) -> an adsim bundle.

Source: one behaviour policy's "all" campaign, ``{behavior}_all.csv`` and ``{behavior}_all_item_context.csv`` in
SRC (default ``shared_data_dir() / "open_bandit_dataset"``; ``behavior`` is ``random`` or ``bts``).

Mapping (beyond ``adsim.importers.canonical``'s defaults):

* requests: one per log row. The sample keeps one (item, position) row per impression, and rows of the same page
  view are not linked, so each row is its own request with ``n_slots`` 3 (the page's three slots) and one logged
  impression. ``ts``: the logged UTC time, seconds since 2019-11-24 00:00 UTC (hours are UTC hours). Placement 0,
  device 0 and privacy False: not logged.
* impressions: item -> ad, ``position`` 1..3 (left, center, right) -> 0..2, ``propensity`` = the log's
  ``propensity_score`` unchanged (the behaviour policy's probability of the item at that slot: off-policy
  evaluation reads it), conversion False and ranking_ecpm 0 (not logged).
* ads: the 80 items, goal CPC with bid 1 (recommendations have no bid, so eCPM = 1000 x pCTR: the click objective
  of the dataset). The hashed item features are nested: each ``item_feature_2`` value has one ``item_feature_3``
  value, so ``industry`` = item_feature_2 (21 levels), ``industry_l1`` = item_feature_3 (7), and ``advertiser`` =
  item_feature_1 (12 levels; its meaning is not published).
* users: OBD has no user id. A user is one distinct tuple of the four hashed user features (240 in the random
  sample: segments rather than people). ``age_bucket`` = user_feature_0's code (3 levels), ``region`` = the code
  of the (user_feature_1, user_feature_2, user_feature_3) triple (the 61 most frequent exactly, the rest folded),
  gender 0: the features are hashed, so these are carriers of the features, not demographics.
* organic content: the items themselves (kind "article": a product page; topic = item_feature_3). The log's
  ``user-item_affinity_k`` (the user's past clicks on item k, as of the row) becomes one organic view of item k
  one second before the request for every k with affinity > 0: the user's history of the catalogue.
* embeddings (ads and organic items alike): item_feature_0 (numeric, price-like) standardised, plus the three
  hashed categorical item features, hashed into 32 dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from adsim.errors import AdSimOptionError
from adsim.importers.canonical import RawLogs
from adsim.importers.encoding import dense_codes, feature_embeddings
from adsim.importers.parsing import Origin, check_max_rows, read_delimited, seconds_since_first_midnight
from adsim.paths import shared_data_set

BEHAVIORS = ("random", "bts")
USER_FEATURES = tuple(f"user_feature_{i}" for i in range(4))
LOG_COLUMNS = ("timestamp", "item_id", "position", "click", "propensity_score", *USER_FEATURES)
ITEM_COLUMNS = ("item_id", "item_feature_0", "item_feature_1", "item_feature_2", "item_feature_3")
AFFINITY = "user-item_affinity_"
N_POSITIONS = 3


def obd_files(src: str | Path | None, behavior: str) -> tuple[Path, Path]:
    """The log and item-context files of ``behavior`` in directory ``src`` (or beside the log file ``src``)."""
    if behavior not in BEHAVIORS:
        raise AdSimOptionError(f"must be one of {BEHAVIORS}, got {behavior!r}", option="behavior")
    src = Path(src) if src is not None else shared_data_set("open_bandit_dataset")
    if src.is_file():
        return src, src.with_name(src.name.replace("_all.csv", "_all_item_context.csv"))
    return src / f"{behavior}_all.csv", src / f"{behavior}_all_item_context.csv"


@dataclass
class ObdLog:
    """The checked, typed log (time ordered) and item table, where their rows came from, and the files read."""

    log: pd.DataFrame
    items: pd.DataFrame
    log_origin: Origin
    """Of ``log``'s rows (in time order): the log file's data rows; columns by canonical event field."""
    items_origin: Origin
    files: list[dict]


def _read(src: str | Path | None, behavior: str, max_rows: int | None) -> ObdLog:
    log_file, item_file = obd_files(src, behavior)
    raw = read_delimited(log_file, sep=",", required=LOG_COLUMNS, nrows=check_max_rows(max_rows))
    items_raw = read_delimited(item_file, sep=",", required=ITEM_COLUMNS)

    items = pd.DataFrame({"item_id": items_raw.numeric("item_id", int, "ads (the item table's ids)"),
                          "item_feature_0": items_raw.numeric("item_feature_0")})
    for c in ITEM_COLUMNS[2:]:
        items[c] = items_raw.frame[c].to_numpy()
    ids = items["item_id"].to_numpy()
    bad = np.flatnonzero(pd.Series(ids).duplicated().to_numpy() | (ids < 0) | (ids >= len(ids)))
    if len(bad):
        raise items_raw.error(f"item ids must be 0..{len(ids) - 1}, each once", bad, "item_id")
    item_order = np.argsort(ids, kind="stable")
    items = items.iloc[item_order].reset_index(drop=True)
    items_origin = items_raw.origin({"advertiser": "item_feature_1", "industry": "item_feature_2",
                                     "industry_l1": "item_feature_3", "topic": "item_feature_3"}).take(item_order)

    log = pd.DataFrame({"timestamp": pd.to_datetime(raw.frame["timestamp"], errors="coerce", utc=True)})
    bad = np.flatnonzero(log["timestamp"].isna().to_numpy())
    if len(bad):
        raise raw.error(f"not a timestamp: {raw.frame['timestamp'].iloc[int(bad[0])]!r}", bad, "timestamp",
                        "requests.ts")
    log["item_id"] = raw.numeric("item_id", int, "impressions.ad_id")
    log["position"] = raw.numeric("position", int, "impressions.position", (1, N_POSITIONS))
    log["click"] = raw.numeric("click", bool, "impressions.click")
    log["propensity_score"] = raw.numeric("propensity_score", float, "impressions.propensity", (1e-12, 1.0))
    unknown = np.flatnonzero(~np.isin(log["item_id"], items["item_id"]))
    if len(unknown):
        raise raw.error(f"item_id not in the item table {item_file.name}", unknown, "item_id", "impressions.ad_id")
    for c in USER_FEATURES:
        log[c] = raw.frame[c].to_numpy()
    affinity = [c for c in raw.frame.columns if c.startswith(AFFINITY)]
    for c in affinity:
        log[c] = raw.numeric(c, float, "organic_events (history)", (0, None))
    order = np.argsort(log["timestamp"].to_numpy(), kind="stable")
    log = log.iloc[order].reset_index(drop=True)
    log_origin = raw.origin({"ts": "timestamp", "ad": "item_id", "position": "position", "click": "click",
                             "propensity": "propensity_score", "user": "user_feature_0..3"}).take(order)
    return ObdLog(log, items, log_origin, items_origin, [raw.info(), items_raw.info()])


def read_obd(src: str | Path | None = None, behavior: str = "random", max_rows: int | None = None
             ) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """The checked, typed log (time ordered) and item table, and the files read.

    Log columns: timestamp (datetime), item_id, position (1..3), click (bool), propensity_score, the four user
    features (strings) and the affinity columns (float).
    """
    read = _read(src, behavior, max_rows)
    return read.log, read.items, read.files


def item_embeddings(items: pd.DataFrame) -> np.ndarray:
    return feature_embeddings(len(items), {"item_feature_0": items["item_feature_0"].to_numpy()},
                              {c: items[c].to_numpy() for c in ("item_feature_1", "item_feature_2", "item_feature_3")})


def read_raw(src: str | Path | None = None, behavior: str = "random", max_rows: int | None = None) -> RawLogs:
    """The canonical long format of one OBD log (see the module docstring)."""
    read = _read(src, behavior, max_rows)
    log, items, files = read.log, read.items, read.files
    n = len(log)
    user_key = log[list(USER_FEATURES)].astype(str).agg("|".join, axis=1)
    new = ~user_key.duplicated().to_numpy()  # users in order of first appearance
    first = log.loc[new, list(USER_FEATURES)].set_axis(pd.Index(user_key.to_numpy()[new]), axis=0)
    triple = first[["user_feature_1", "user_feature_2", "user_feature_3"]].astype(str).agg("|".join, axis=1)
    users = pd.DataFrame({"age_bucket": dense_codes(first["user_feature_0"].to_numpy(), 6),
                          "gender": 0, "region": triple.to_numpy()}, index=first.index)
    ts = seconds_since_first_midnight(log["timestamp"])
    events = pd.DataFrame({
        "user": user_key.to_numpy(), "ad": log["item_id"].to_numpy(), "ts": ts, "click": log["click"].to_numpy(),
        "position": log["position"].to_numpy() - 1, "propensity": log["propensity_score"].to_numpy(),
        "n_slots": N_POSITIONS,
    })
    ads = pd.DataFrame({"advertiser": items["item_feature_1"].to_numpy(),
                        "industry": items["item_feature_2"].to_numpy(),
                        "industry_l1": items["item_feature_3"].to_numpy(), "goal": "CPC", "bid": 1.0},
                       index=pd.Index(items["item_id"].to_numpy()))
    emb = item_embeddings(items)

    # organic history: every item with positive affinity, viewed one second before the row's request
    affinity_cols = [f"{AFFINITY}{k}" for k in items["item_id"] if f"{AFFINITY}{k}" in log.columns]
    aff = log[affinity_cols].to_numpy() if affinity_cols else np.zeros((n, 0))
    rows, k = np.nonzero(aff > 0)
    organic_events = pd.DataFrame({"user": user_key.to_numpy()[rows],
                                   "item": np.array([int(c[len(AFFINITY):]) for c in affinity_cols])[k]
                                   if len(rows) else np.zeros(0, np.int64),
                                   "ts": np.maximum(ts[rows] - 1, 0)})
    organic_items = pd.DataFrame({"kind": "article", "topic": items["item_feature_3"].to_numpy()},
                                 index=ads.index)
    notes = {
        "format": "obd", "behavior": behavior, "files": files, "rows_read": n,
        "propensities": "logged (propensity_score)",
        "mapping": {
            "request": "one per row (n_slots 3, one logged impression)", "ts": "UTC seconds since first midnight",
            "ad": "item_id", "position": "position - 1", "propensity": "propensity_score",
            "advertiser": "item_feature_1", "industry": "item_feature_2", "industry_l1": "item_feature_3",
            "goal/bid": "CPC, bid 1 (eCPM = 1000 pCTR)", "user": "distinct (user_feature_0..3) tuple",
            "age_bucket": "code of user_feature_0", "region": "code of (user_feature_1, _2, _3)",
            "organic": "items as content; affinity > 0 -> one view 1 s before the request",
            "embeddings": "item_feature_0 standardised + hashed item_feature_1..3, 32 dims",
        },
        "conversions": "not logged",
    }
    user_columns = {"user": "user_feature_0..3", "age_bucket": "user_feature_0", "region": "user_feature_1..3"}
    origins = {"events": read.log_origin, "ads": read.items_origin, "organic_items": read.items_origin,
               "users": read.log_origin.take(np.flatnonzero(new)).with_columns(user_columns),
               "organic_events": read.log_origin.take(rows).with_columns(
                   {"user": "user_feature_0..3", "item": f"{AFFINITY}<item>", "ts": "timestamp"})}
    return RawLogs(source=f"obd:{behavior}", events=events, ads=ads, ad_embeddings=emb, users=users,
                   organic_items=organic_items, organic_embeddings=emb, organic_events=organic_events, notes=notes,
                   origins=origins)
