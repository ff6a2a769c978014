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

from pathlib import Path

import numpy as np
import pandas as pd

from adsim.errors import AdSimDataError
from adsim.importers.canonical import RawLogs
from adsim.importers.encoding import dense_codes, feature_embeddings
from adsim.importers.parsing import file_info, numeric, read_delimited, seconds_since_first_midnight
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
        raise ValueError(f"behavior must be one of {BEHAVIORS}, got {behavior!r}")
    src = Path(src) if src is not None else shared_data_set("open_bandit_dataset")
    if src.is_file():
        return src, src.with_name(src.name.replace("_all.csv", "_all_item_context.csv"))
    return src / f"{behavior}_all.csv", src / f"{behavior}_all_item_context.csv"


def read_obd(src: str | Path | None = None, behavior: str = "random", max_rows: int | None = None
             ) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """The checked, typed log (time ordered) and item table, and the files read.

    Log columns: timestamp (datetime), item_id, position (1..3), click (bool), propensity_score, the four user
    features (strings) and the affinity columns (float).
    """
    log_file, item_file = obd_files(src, behavior)
    raw = read_delimited(log_file, sep=",", required=LOG_COLUMNS, nrows=max_rows)
    items_raw = read_delimited(item_file, sep=",", required=ITEM_COLUMNS)
    f, g = str(log_file), str(item_file)

    items = pd.DataFrame({"item_id": numeric(items_raw, "item_id", g, int),
                          "item_feature_0": numeric(items_raw, "item_feature_0", g)})
    for c in ITEM_COLUMNS[2:]:
        items[c] = items_raw[c].to_numpy()
    if not np.array_equal(np.sort(items["item_id"].to_numpy()), np.arange(len(items))):
        raise AdSimDataError("item ids must be 0..n-1, each once", file=g, column="item_id")
    items = items.sort_values("item_id", ignore_index=True)

    log = pd.DataFrame({"timestamp": pd.to_datetime(raw["timestamp"], errors="coerce", utc=True)})
    if log["timestamp"].isna().any():
        raise AdSimDataError("not a timestamp", file=f, column="timestamp",
                             rows=np.flatnonzero(log["timestamp"].isna().to_numpy()))
    log["item_id"] = numeric(raw, "item_id", f, int)
    log["position"] = numeric(raw, "position", f, int)
    log["click"] = numeric(raw, "click", f, bool)
    log["propensity_score"] = numeric(raw, "propensity_score", f)
    for column, bad in (("item_id", ~np.isin(log["item_id"], items["item_id"])),
                        ("position", ~log["position"].between(1, N_POSITIONS)),
                        ("propensity_score", ~log["propensity_score"].between(1e-12, 1.0))):
        bad = np.asarray(bad)
        if bad.any():
            raise AdSimDataError("value out of range (item_id in the item table, position 1..3, propensity in "
                                 "(0, 1])", file=f, column=column, rows=np.flatnonzero(bad))
    for c in USER_FEATURES:
        log[c] = raw[c].to_numpy()
    affinity = [c for c in raw.columns if c.startswith(AFFINITY)]
    for c in affinity:
        log[c] = numeric(raw, c, f)
    log = log.sort_values("timestamp", kind="stable", ignore_index=True)
    return log, items, [file_info(log_file), file_info(item_file)]


def item_embeddings(items: pd.DataFrame) -> np.ndarray:
    return feature_embeddings(len(items), {"item_feature_0": items["item_feature_0"].to_numpy()},
                              {c: items[c].to_numpy() for c in ("item_feature_1", "item_feature_2", "item_feature_3")})


def read_raw(src: str | Path | None = None, behavior: str = "random", max_rows: int | None = None) -> RawLogs:
    """The canonical long format of one OBD log (see the module docstring)."""
    log, items, files = read_obd(src, behavior, max_rows)
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
    return RawLogs(source=f"obd:{behavior}", events=events, ads=ads, ad_embeddings=emb, users=users,
                   organic_items=organic_items, organic_embeddings=emb, organic_events=organic_events, notes=notes)
