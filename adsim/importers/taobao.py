"""Taobao display-ad click sample (Alimama, Tianchi dataset 56; the DMR-preprocessed PaddleRec sample) -> a bundle.

Source: ``alimama_sampled_train.txt`` in SRC (default ``shared_data_dir() / "taobao_display_ad"``) or that file:
comma-separated, no header, 267 columns: the user's last 50 behaviours (``btag``, category, brand, mask and
match mask, 50 columns each, oldest first and left-padded), then the user profile, the ad and the click
(``PROFILE_COLUMNS``).

Clicks are over-sampled: 210 of the sample's 500 rows are clicks, against a natural CTR of about 5%. The manifest's
``label_sampling`` records the sample CTR, the natural CTR assumed (``natural_ctr``, default 0.05) and
``click_weight``, the weight of a clicked impression that restores the natural CTR (negatives weigh 1:
``w = natural (1 - sample) / ((1 - natural) sample)``). ``adsim.ope.BanditFeedback.from_scenario`` applies it;
the reward models are trained unweighted, so their pCTR is on the sample's scale (the manifest says so).

The sample has no clock. Time is synthetic and only orders events (seeded by ``seed``): each user's rows form one
session in file order, ``SESSION_GAP_S`` apart (closer for very long sessions), starting at a uniformly drawn
time within ``DAYS`` days.

Mapping (beyond ``adsim.importers.canonical``'s defaults):

* requests: one per row, one slot, position 0; ``placement`` = ``pid`` (the two ad slots, 0/1), device 0 (not
  logged); splits by (synthetic) time quantiles.
* ads: ``mid`` (ad group) -> ad; ``customer`` -> advertiser; ``cate_id`` -> industry (and industry_l1: one
  category level); goal CPC with bid = ``price`` (the sample's normalised price, 0.5..1; no bid is logged);
  propensity 1 (unknown).
* users: ``uid``; gender = final_gender_code - 1; age_bucket = age_level - 1 (within 0..5); region =
  new_user_class_level (the city tier). cms_segid, cms_group_id, pvalue_level, shopping_level and occupation have
  no adsim column and are dropped.
* history -> organic events: the behaviour history is a stream of (category, brand) product views. Organic items
  are the distinct (category, brand) pairs (kind "article": a product page; topic = category). A user's first row
  contributes its whole history, in order, ending one second before the first request; each later row contributes
  only the behaviours its window adds (the longest overlap with the previous window is removed), spread between
  the two requests. The behaviour type (``btag``: view, cart, favourite, buy) has no adsim column; its counts are in
  the manifest.
* embeddings: ads: price standardised + hashed category, brand, campaign and advertiser; organic items: hashed
  category and brand, the same tokens, so an ad and the products a user browsed share directions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from adsim.errors import AdSimOptionError
from adsim.importers.canonical import RawLogs
from adsim.importers.encoding import feature_embeddings
from adsim.importers.parsing import check_max_rows, read_delimited
from adsim.paths import shared_data_set
from adsim.world.rng import stream

HISTORY = 50
PROFILE_COLUMNS = ("uid", "cms_segid", "cms_group_id", "final_gender_code", "age_level", "pvalue_level",
                   "shopping_level", "occupation", "new_user_class_level", "mid", "cate_id", "campaign_id",
                   "customer", "brand", "price", "pid", "clk")
N_COLUMNS = 5 * HISTORY + len(PROFILE_COLUMNS)
FILE = "alimama_sampled_train.txt"
DAYS = 8
"""The original collection period (2017-05-06..13), over which the synthetic sessions are spread."""
SESSION_GAP_S = 60
NATURAL_CTR = 0.05
TARGETS = {"uid": "requests.user_id", "mid": "impressions.ad_id", "customer": "ads.advertiser_id",
           "cate_id": "ads.industry", "pid": "requests.placement", "final_gender_code": "users.gender",
           "age_level": "users.age_bucket", "new_user_class_level": "users.region"}
"""The adsim field each profile column feeds (errors name it)."""
COLUMNS = {"user": "uid", "ad": "mid", "click": "clk", "placement": "pid", "advertiser": "customer",
           "industry": "cate_id", "bid": "price", "gender": "final_gender_code", "age_bucket": "age_level",
           "region": "new_user_class_level", "item": "cate_i/brand_i (history)", "ts": "(synthetic clock)"}
"""The file's column behind each canonical field."""


def click_weight(sample_ctr: float, natural_ctr: float) -> float:
    """Weight of a click (negatives weigh 1) under which the sample's CTR equals ``natural_ctr``."""
    if not 0 < sample_ctr < 1 or not 0 < natural_ctr < 1:
        return 1.0
    return natural_ctr * (1 - sample_ctr) / ((1 - natural_ctr) * sample_ctr)


def _new_behaviours(prev: list, cur: list) -> list:
    """The entries ``cur`` adds to ``prev`` (both oldest first): ``cur`` minus its longest prefix that is a suffix
    of ``prev``."""
    for start in range(len(prev) + 1):
        overlap = prev[start:]
        if cur[: len(overlap)] == overlap:
            return cur[len(overlap):]
    return cur


def read_raw(src: str | Path | None = None, max_rows: int | None = None, seed: int = 0,
             natural_ctr: float = NATURAL_CTR) -> RawLogs:
    """The canonical long format of the Taobao sample (see the module docstring)."""
    path = Path(src) if src is not None else shared_data_set("taobao_display_ad")
    if path.is_dir():
        path = path / FILE
    if not isinstance(natural_ctr, int | float) or isinstance(natural_ctr, bool) or not 0 < natural_ctr < 1:
        raise AdSimOptionError(f"must be a probability strictly between 0 and 1 (the CTR clicks are re-weighted "
                               f"to), got {natural_ctr!r}", option="natural_ctr")
    names = [f"{part}_{i}" for part in ("btag", "cate", "brand", "mask", "match") for i in range(HISTORY)]
    raw = read_delimited(path, sep=",", header=False, n_columns=(N_COLUMNS,), names=[*names, *PROFILE_COLUMNS],
                         nrows=check_max_rows(max_rows))
    ints = [c for c in PROFILE_COLUMNS if c not in ("price", "clk")]
    log = pd.DataFrame({c: raw.numeric(c, int, TARGETS.get(c)) for c in ints})
    log["clk"] = raw.numeric("clk", bool, "impressions.click").astype(np.int64)
    log["price"] = raw.numeric("price", float, "ads.bid", positive=True)
    hist = {part: np.column_stack([raw.numeric(f"{part}_{i}", int, "organic_events (history)")
                                   for i in range(HISTORY)])
            for part in ("btag", "cate", "brand", "mask")}
    n = len(log)

    # ---- synthetic clock: one session per user, rows in file order
    users_index = pd.Index(pd.unique(log["uid"]))
    user_row = users_index.get_indexer(log["uid"])
    longest = int(np.bincount(user_row).max())
    gap = max(1, min(SESSION_GAP_S, DAYS * 86_400 // 2 // longest))  # long sessions (full data): closer rows
    start = stream(seed, "taobao-sessions").integers(3600, DAYS * 86_400 - gap * longest, size=len(users_index))
    ts = start[user_row] + gap * log.groupby("uid", sort=False).cumcount().to_numpy()

    # ---- history -> organic views, only what each row's window adds
    org_user, org_key, org_ts, org_row, btags = [], [], [], [], np.zeros(5, dtype=np.int64)
    prev: dict[int, list] = {}
    prev_ts: dict[int, int] = {}
    for r in range(n):
        valid = hist["mask"][r] > 0
        cur = list(zip(hist["cate"][r][valid].tolist(), hist["brand"][r][valid].tolist(),
                       hist["btag"][r][valid].tolist(), strict=True))
        u = int(user_row[r])
        if u in prev:
            new = _new_behaviours(prev[u], cur)
            times = np.linspace(prev_ts[u], ts[r], len(new) + 2)[1:-1].astype(np.int64)
        else:
            new = cur
            times = ts[r] - np.arange(len(new), 0, -1)
        prev[u], prev_ts[u] = cur, int(ts[r])
        for (cate, brand, btag), t in zip(new, times, strict=True):
            org_user.append(log["uid"].iat[r])
            org_key.append(f"{cate}|{brand}")
            org_ts.append(int(t))
            org_row.append(r)
            btags[min(max(btag, 0), 4)] += 1
    organic_events = pd.DataFrame({"user": org_user, "item": org_key, "ts": np.asarray(org_ts, dtype=np.int64)})
    item_keys = pd.Index(sorted(set(org_key)))
    cate_brand = item_keys.str.split("|", expand=True)
    item_cate = np.asarray(cate_brand.get_level_values(0)) if len(item_keys) else np.zeros(0, str)
    item_brand = np.asarray(cate_brand.get_level_values(1)) if len(item_keys) else np.zeros(0, str)
    organic_items = pd.DataFrame({"kind": "article", "topic": item_cate}, index=item_keys)
    organic_emb = feature_embeddings(len(item_keys), None, {"cate": item_cate, "brand": item_brand})

    # ---- ads and users
    ad_rows = log.groupby("mid", sort=True).head(1).set_index("mid").sort_index()
    ads = pd.DataFrame({"advertiser": ad_rows["customer"], "industry": ad_rows["cate_id"], "goal": "CPC",
                        "bid": ad_rows["price"]}, index=ad_rows.index)
    ad_emb = feature_embeddings(len(ads), {"price": ad_rows["price"].to_numpy()},
                                {"cate": ad_rows["cate_id"].to_numpy(), "brand": ad_rows["brand"].to_numpy(),
                                 "campaign": ad_rows["campaign_id"].to_numpy(),
                                 "customer": ad_rows["customer"].to_numpy()})
    first = log.groupby("uid", sort=False).head(1).set_index("uid").loc[users_index]
    users = pd.DataFrame({"age_bucket": np.clip(first["age_level"].to_numpy() - 1, 0, 5),
                          "gender": np.clip(first["final_gender_code"].to_numpy() - 1, 0, 1),
                          "region": first["new_user_class_level"].to_numpy()}, index=users_index)
    events = pd.DataFrame({"user": log["uid"].to_numpy(), "ad": log["mid"].to_numpy(), "ts": ts,
                           "click": log["clk"].to_numpy().astype(bool), "placement": np.clip(log["pid"], 0, 2),
                           "n_slots": 1})

    sample_ctr = float(log["clk"].mean())
    weight = click_weight(sample_ctr, natural_ctr)
    notes = {
        "format": "taobao", "files": [raw.info()], "rows_read": n, "propensities": "unknown (1.0)",
        "clock": f"synthetic: one session per user, {gap} s between rows, seeded starts within {DAYS} days",
        "mapping": {
            "request": "one per row", "ad": "mid", "advertiser": "customer", "industry": "cate_id",
            "goal/bid": "CPC, bid = price", "placement": "pid", "user": "uid", "gender": "final_gender_code - 1",
            "age_bucket": "age_level - 1", "region": "new_user_class_level",
            "dropped": ["cms_segid", "cms_group_id", "pvalue_level", "shopping_level", "occupation", "btag"],
            "organic": "behaviour history (category, brand) -> organic views, deduplicated across a user's windows",
            "embeddings": "ads: price + hashed cate, brand, campaign, customer; items: hashed cate, brand; 32 dims",
        },
        "behaviour_types": {"pad": int(btags[0]), "1": int(btags[1]), "2": int(btags[2]), "3": int(btags[3]),
                            "4": int(btags[4])},
        "conversions": "not logged",
    }
    label_sampling = {
        "clicks_over_sampled": True, "sample_ctr": round(sample_ctr, 6), "natural_ctr": natural_ctr,
        "click_weight": weight,
        "note": "the sample's clicks are over-sampled: weight clicked impressions by click_weight (negatives 1) "
                "to estimate natural CTRs (adsim.ope does); the bundle's reward models are trained unweighted, so "
                "their pCTR is on the sample's scale",
    }
    origin = raw.origin(COLUMNS)
    org_row = np.asarray(org_row, dtype=np.int64)
    first_item = pd.Series(org_row).groupby(np.asarray(org_key, dtype=object), sort=True).first().to_numpy()
    origins = {"events": origin, "organic_events": origin.take(org_row),
               "organic_items": origin.take(first_item.astype(np.int64)),
               "users": origin.take(np.flatnonzero(~log["uid"].duplicated().to_numpy())),
               "ads": origin.take(pd.Series(np.arange(n)).groupby(log["mid"].to_numpy(), sort=True).first().to_numpy())}
    return RawLogs(source="taobao", events=events, ads=ads, ad_embeddings=ad_emb, users=users, origins=origins,
                   organic_items=organic_items, organic_embeddings=organic_emb, organic_events=organic_events,
                   notes=notes, extra={"label_sampling": label_sampling})
