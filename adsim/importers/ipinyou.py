"""iPinYou RTB impression logs (Zhang et al. 2014, arXiv:1407.7073; the DLF sample of advertiser 2259) -> a bundle.

Source: ``train.log.txt`` and/or ``test.log.txt`` in SRC (default ``shared_data_dir() / "ipinyou_2259"``), or one
such file. TAB-separated, no header, 27 columns (29 in test files: two trailing columns, ignored), in the
make-ipinyou-data order (``COLUMNS``). Every row is an auction the advertiser won (an impression).

The auction: ``payprice`` is what the winner paid, the second price, so it is the market price a bid had to beat.
It is kept per request as ``arrays/request_market_price.npy``, and ``Simulator.evaluate`` then pays a chosen ad
only if its eCPM reaches it (a lost auction scores final_value 0, still a valid action). Bids and prices are CPM in
Chinese fen per mille impressions. ``slotprice`` (the floor) is not a separate rule: the winning price already
includes it where the exchange enforced it.

Mapping (beyond ``adsim.importers.canonical``'s defaults):

* requests: one per row (``bidid`` repeats once in the 2259 train file, so rows are not merged), ``ts`` from
  ``timestamp`` (Beijing time as logged), one ad slot, position 0. ``device`` from ``useragent``: android -> 0, ios
  -> 1, windows/mac/linux/other -> 2. ``placement`` carries the ad exchange (1, 2, 3 -> 0, 1, 2): iPinYou logs no
  feed/video/article placement, and the exchange is its only three-level context. Splits: ``test.log.txt`` rows are
  test; in ``train.log.txt`` the latest 15% by time are valid, the rest train (the DLF split, kept).
* impressions: ``creative`` -> ad, click from ``click``, ``cost`` = payprice / 1000 (CPM: per impression),
  ``ranking_ecpm`` = ``bidprice`` (the bidder's own eCPM for the request), propensity 1 (the bidder is
  deterministic: no off-policy evaluation on this bundle), conversions not in this log.
* ads: the creatives of advertiser 2259 (one advertiser, industry 0), goal CPM, bid = the creative's median logged
  ``bidprice``.
* users: ``ipinyouid``. Gender from the user tags: 10110 -> 0 (male), 10111 -> 1 (female), neither -> 0;
  ``region`` = ``city`` (``region`` is one province in this sample); age is not logged (bucket 0).
* organic content: the page the ad was on. Items are ``domain`` values (kind "article", topic 0); each request is
  preceded by one view of its domain, one second earlier.
* embeddings: creatives: log median bid, slot area, mean floor standardised, plus hashed creative id, slot size and
  main exchange; domains: hashed domain and main exchange (shared exchange tokens relate pages and creatives).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from adsim.errors import AdSimDataError
from adsim.importers.canonical import RawLogs
from adsim.importers.encoding import feature_embeddings
from adsim.importers.parsing import Origin, check_max_rows, read_delimited, seconds_since_first_midnight
from adsim.paths import shared_data_set

COLUMNS = ("click weekday hour bidid timestamp logtype ipinyouid useragent IP region city adexchange domain url urlid "
           "slotid slotwidth slotheight slotvisibility slotformat slotprice creative bidprice payprice keypage "
           "advertiser usertag").split()
FILES = ("train.log.txt", "test.log.txt")
MALE, FEMALE = "10110", "10111"
VALID_FRACTION = 0.15
EVENT_COLUMNS = {"user": "ipinyouid", "ad": "creative", "ts": "timestamp", "click": "click", "device": "useragent",
                 "placement": "adexchange", "cost": "payprice", "ranking_ecpm": "bidprice",
                 "bid": "bidprice (the creative's median)", "gender": "usertag", "region": "city",
                 "item": "domain"}
"""The file's column behind each canonical field (errors name it)."""


def ipinyou_files(src: str | Path | None) -> list[Path]:
    src = Path(src) if src is not None else shared_data_set("ipinyou_2259")
    if src.is_file():
        return [src]
    files = [src / name for name in FILES if (src / name).is_file()]
    if not files:
        raise AdSimDataError(f"no iPinYou log here (expected {' and/or '.join(FILES)})", file=str(src))
    return files


def _read(path: Path, max_rows: int | None) -> tuple[pd.DataFrame, Origin, dict]:
    raw = read_delimited(path, sep="\t", header=False, n_columns=(27, 29), names=COLUMNS, nrows=max_rows)
    frame = raw.frame
    out = pd.DataFrame({"bidid": frame["bidid"].to_numpy(), "user": frame["ipinyouid"].to_numpy(),
                        "creative": frame["creative"].to_numpy(), "domain": frame["domain"].to_numpy(),
                        "useragent": frame["useragent"].to_numpy(), "city": frame["city"].to_numpy(),
                        "usertag": frame["usertag"].to_numpy()})
    stamp = raw.numeric("timestamp", int, "requests.ts")  # yyyyMMddHHmmssSSS
    out["time"] = pd.to_datetime(pd.Series(stamp // 1000).astype(str), format="%Y%m%d%H%M%S", errors="coerce")
    bad = np.flatnonzero(out["time"].isna().to_numpy())
    if len(bad):
        raise raw.error(f"not a yyyyMMddHHmmssSSS timestamp: {frame['timestamp'].iloc[int(bad[0])]!r}", bad,
                        "timestamp", "requests.ts")
    out["time"] += pd.to_timedelta(stamp % 1000, unit="ms")
    out["click"] = raw.numeric("click", bool, "impressions.click")
    targets = {"adexchange": "requests.placement", "bidprice": "impressions.ranking_ecpm and ads.bid",
               "payprice": "impressions.cost"}
    for c in ("adexchange", "slotwidth", "slotheight", "slotprice", "bidprice", "payprice"):
        out[c] = raw.numeric(c, int, targets.get(c, "ad_embeddings"), (0, None), positive=c == "bidprice")
    bad = np.flatnonzero(out["payprice"].to_numpy() > out["bidprice"].to_numpy())
    if len(bad):
        raise raw.error("payprice above bidprice: not a won auction", bad, "payprice", "impressions.cost")
    out["file"] = path.name
    return out, raw.origin(EVENT_COLUMNS), raw.info()


def device_of(useragent: pd.Series) -> np.ndarray:
    os_name = useragent.str.split("_").str[0].to_numpy()
    return np.select([os_name == "android", os_name == "ios"], [0, 1], 2)


def read_raw(src: str | Path | None = None, max_rows: int | None = None) -> RawLogs:
    """The canonical long format of iPinYou logs (see the module docstring); ``max_rows`` per file."""
    paths = ipinyou_files(src)
    parts = [_read(p, check_max_rows(max_rows)) for p in paths]
    log = pd.concat([part for part, _, _ in parts], ignore_index=True)
    origin = Origin.concat([o for _, o, _ in parts])
    duplicate_bidids = int(log["bidid"].duplicated().sum())  # the 2259 train file reuses one: rows stay apart
    ts = seconds_since_first_midnight(log["time"])

    # ---- splits: test file -> test; the train file's latest 15% -> valid
    split = np.where(log["file"].to_numpy() == "test.log.txt", "test", "train").astype(object)
    in_train = np.flatnonzero(split == "train")
    if len(in_train):
        cut = np.quantile(ts[in_train], 1 - VALID_FRACTION)
        split[in_train[ts[in_train] > cut]] = "valid"

    # ---- ads: creatives
    creatives = log.groupby("creative", sort=True)
    ads_frame = pd.DataFrame({
        "bid": creatives["bidprice"].median().astype(np.float64),
        "area": (creatives["slotwidth"].median() * creatives["slotheight"].median()),
        "floor": creatives["slotprice"].mean(),
        "size": creatives["slotwidth"].first().astype(str) + "x" + creatives["slotheight"].first().astype(str),
        "exchange": creatives["adexchange"].agg(lambda s: s.value_counts().index[0]),
    })
    ads = pd.DataFrame({"advertiser": 0, "industry": 0, "goal": "CPM", "bid": ads_frame["bid"]},
                       index=ads_frame.index)
    ad_emb = feature_embeddings(len(ads), {"log_bid": np.log(ads_frame["bid"].to_numpy()),
                                           "area": ads_frame["area"].to_numpy(),
                                           "floor": ads_frame["floor"].to_numpy()},
                                {"creative": ads.index.to_numpy(), "size": ads_frame["size"].to_numpy(),
                                 "exchange": ads_frame["exchange"].to_numpy()})

    # ---- users
    first = ~log["user"].duplicated().to_numpy()
    tags = log["usertag"].str.split(",")
    gender = np.where(tags.apply(lambda t: FEMALE in t).to_numpy(), 1, 0)
    users = pd.DataFrame({"gender": gender[first], "region": log["city"].to_numpy()[first]},
                         index=pd.Index(log["user"].to_numpy()[first]))

    events = pd.DataFrame({
        "request": np.arange(len(log)), "user": log["user"].to_numpy(), "ad": log["creative"].to_numpy(),
        "ts": ts, "click": log["click"].to_numpy(), "device": device_of(log["useragent"]),
        "placement": np.clip(log["adexchange"].to_numpy() - 1, 0, 2), "n_slots": 1, "split": split,
        "cost": log["payprice"].to_numpy() / 1000.0, "ranking_ecpm": log["bidprice"].to_numpy().astype(np.float64),
        "market_price": log["payprice"].to_numpy().astype(np.float64),
    })

    # ---- organic: the page (domain) each ad was shown on, viewed a second before the request
    pages = log.groupby("domain", sort=True)["adexchange"].agg(lambda s: s.value_counts().index[0])
    organic_items = pd.DataFrame({"kind": "article", "topic": 0}, index=pages.index)
    organic_emb = feature_embeddings(len(pages), None, {"domain": pages.index.to_numpy(),
                                                        "exchange": pages.to_numpy()})
    organic_events = pd.DataFrame({"user": log["user"].to_numpy(), "item": log["domain"].to_numpy(),
                                   "ts": np.maximum(ts - 1, 0)})

    market = log["payprice"].to_numpy()
    notes = {
        "format": "ipinyou", "files": [info for _, _, info in parts], "rows_read": len(log),
        "propensities": "unknown (1.0): deterministic bidder",
        "mapping": {
            "request": "one per row (bidid is not unique)",
            "ts": "timestamp (Beijing time), seconds since first midnight", "ad": "creative",
            "user": "ipinyouid", "gender": f"usertag {MALE} -> 0, {FEMALE} -> 1, else 0", "region": "city",
            "device": "useragent os: android 0, ios 1, else 2", "placement": "adexchange - 1",
            "split": "test file -> test; latest 15% of the train file -> valid", "goal/bid": "CPM, median bidprice",
            "cost": "payprice / 1000", "ranking_ecpm": "bidprice",
            "organic": "domain of the page, one view 1 s before each request",
            "embeddings": "ads: log bid, slot area, mean floor + hashed creative, size, exchange; pages: hashed "
                          "domain, exchange; 32 dims",
        },
        "conversions": "not logged",
        "clicks": int(log["click"].sum()),
        "duplicate_bidids": duplicate_bidids,
    }
    auction = {
        "market_price": "arrays/request_market_price.npy: payprice per request (CPM, fen per mille)",
        "rule": "an ad wins the request only if its eCPM >= the market price; a lost auction pays final_value 0",
        "won_fraction_logged": 1.0,
        "market_price_quantiles": {str(q): float(np.quantile(market, q)) for q in (0.1, 0.5, 0.9)},
    }
    position = pd.Series(np.arange(len(log)))
    origins = {"events": origin, "organic_events": origin, "users": origin.take(np.flatnonzero(first)),
               "ads": origin.take(position.groupby(log["creative"].to_numpy(), sort=True).first().to_numpy()),
               "organic_items": origin.take(position.groupby(log["domain"].to_numpy(), sort=True).first().to_numpy())}
    return RawLogs(source="ipinyou", events=events, ads=ads, ad_embeddings=ad_emb, users=users, origins=origins,
                   organic_items=organic_items, organic_embeddings=organic_emb, organic_events=organic_events,
                   notes=notes, extra={"auction": auction})
