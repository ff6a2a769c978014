"""What every importer shares: the canonical long format real logs are mapped onto, and the one function that turns
it into adsim's six tables, two embedding arrays and a bundle.

An importer reads its source into ``RawLogs``: one row per logged impression (``events``, canonical column names),
an ads frame and a users frame keyed by the source's own ids, optional organic content, and embeddings. ``assemble``
then does what is the same for every source, so each default is invented once and documented once:

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
* cost where the source logs none: CPM pays bid / 1000 per impression, CPC and oCPC pay the bid per click,
  oCPA and oCPI per conversion.
* propensity where the source logs none: 1.0 (the bundle is then not usable for off-policy evaluation; the
  manifest's ``import.propensities`` says which).
* organic events link to the user's first request at or after them; events after a user's last request are dropped
  (counted in the manifest).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from adsim.data.bundle import BuildStep, Scenario, array_path, write_bundle
from adsim.errors import AdSimDataError
from adsim.world.config import GOALS, ORGANIC_KINDS
from adsim.world.logs import SPLITS

SECONDS_PER_DAY = 86_400
MAX_REGIONS = 62
"""Region codes 0..61: the ``target_region_mask`` bit set is an int64."""
NO_BUDGET = 1e12
EMBEDDING_DIM = 32
NUMERIC_COLUMNS = 4
"""Leading embedding columns reserved for standardised numeric features; the rest hold hashed categoricals."""
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)

EVENT_REQUIRED = ("user", "ad", "ts", "click")
EVENT_DEFAULTS: dict[str, object] = {
    "request": None,  # None: every event is its own request
    "position": 0,
    "propensity": 1.0,
    "ranking_ecpm": 0.0,
    "conversion": False,
    "cost": None,  # None: by the ad's goal (see the module docstring)
    "gmv": 0.0,
    "device": 0,
    "placement": 0,
    "n_slots": None,  # None: the request's impressions, within 1..3
    "privacy": False,
    "split": None,  # None: time quantiles
}
AD_DEFAULTS: dict[str, object] = {
    "advertiser": 0, "industry": 0, "industry_l1": None, "goal": "CPC", "bid": 1.0, "roi_target": 0.0,
    "daily_budget": NO_BUDGET, "created_day": 0, "conversion_value": 0.0,
}
"""``industry_l1`` None: the same as ``industry`` (sources with one category level)."""
USER_DEFAULTS: dict[str, object] = {"age_bucket": 0, "gender": 0, "region": 0, "primary_device": None}
"""``primary_device`` None: the device of most of the user's requests."""
ORGANIC_ITEM_DEFAULTS: dict[str, object] = {"kind": "article", "topic": 0}


@dataclass
class RawLogs:
    """A source's logs in the canonical long format, before ids, defaults and validation."""

    source: str
    events: pd.DataFrame
    """One row per impression: EVENT_REQUIRED columns plus any of EVENT_DEFAULTS (and ``market_price``)."""
    ads: pd.DataFrame
    """Index: the source's ad key, in ad_id order; any AD_DEFAULTS columns."""
    ad_embeddings: np.ndarray
    """(len(ads), D) aligned with ``ads``."""
    users: pd.DataFrame | None = None
    """Index: user key, in user_id order (default: sorted event users); any USER_DEFAULTS columns."""
    organic_items: pd.DataFrame | None = None
    """Index: item key; ``kind``, ``topic``."""
    organic_embeddings: np.ndarray | None = None
    organic_events: pd.DataFrame | None = None
    """Columns ``user``, ``item``, ``ts`` and optionally ``dwell_s``."""
    notes: dict = field(default_factory=dict)
    """The manifest's ``import`` entry: files, how the source's columns were mapped, the defaults used."""
    extra: dict = field(default_factory=dict)
    """Other top-level manifest entries (e.g. ``label_sampling``, ``auction``)."""


@dataclass
class ImportedLogs:
    """The six tables and arrays ``write_bundle`` takes, plus per-request arrays written by a build step."""

    source: str
    tables: dict[str, pd.DataFrame]
    arrays: dict[str, np.ndarray]
    request_arrays: dict[str, np.ndarray]
    manifest: dict


# ------------------------------------------------------------------------------------------------ reading
def read_delimited(path: str | Path, *, sep: str, header: bool = True, required: Sequence[str] = (),
                   n_columns: Sequence[int] = (), names: Sequence[str] | None = None, nrows: int | None = None,
                   index_col: int | None = None) -> pd.DataFrame:
    """Read a delimited text file as strings, or fail naming the file (and the column or row) at fault.

    Args:
        required: columns a file with a header must have.
        n_columns: the column counts a file without a header may have (e.g. 27 or 29).
        names: column names of a headerless file, given to its first ``len(names)`` columns.
    """
    path = Path(path)
    if not path.is_file():
        raise AdSimDataError("file not found", file=str(path))
    if path.stat().st_size == 0:
        raise AdSimDataError("file is empty", file=str(path))
    shown_sep = {"\t": "TAB", ",": "comma"}.get(sep, repr(sep))
    try:
        df = pd.read_csv(path, sep=sep, header=0 if header else None, dtype=str, nrows=nrows, index_col=index_col,
                         keep_default_na=False, engine="c")
    except pd.errors.EmptyDataError:
        raise AdSimDataError("file is empty", file=str(path)) from None
    except pd.errors.ParserError as e:
        raise AdSimDataError(f"cannot parse as {shown_sep}-separated text: {e}", file=str(path)) from None
    if len(df) == 0:
        raise AdSimDataError("file has no data rows", file=str(path))
    if header:
        missing = [c for c in required if c not in df.columns]
        if missing:
            hint = f"; is it {shown_sep}-separated?" if len(df.columns) <= 1 else ""
            raise AdSimDataError(f"missing column(s) {missing}; found {list(df.columns)[:8]}{hint}",
                                 file=str(path), column=missing[0])
    else:
        if n_columns and df.shape[1] not in n_columns:
            hint = " (wrong separator?)" if df.shape[1] <= 1 else ""
            raise AdSimDataError(f"found {df.shape[1]} {shown_sep}-separated columns, expected "
                                 f"{' or '.join(map(str, n_columns))}{hint}", file=str(path))
        if names is not None:
            df = df.iloc[:, : len(names)].set_axis(list(names), axis=1)
    return df


def numeric(df: pd.DataFrame, column: str, file: str, kind: type = float) -> np.ndarray:
    """A string column as numbers; an error naming the file, column and data rows that are not numbers."""
    series = df[column]
    text = series.dtype == object or pd.api.types.is_string_dtype(series)
    values = pd.to_numeric(series.str.strip() if text else series, errors="coerce")
    bad = values.isna().to_numpy()
    if bad.any():
        raise AdSimDataError(f"not a number: {series.iloc[int(np.flatnonzero(bad)[0])]!r}", file=file,
                             column=column, rows=np.flatnonzero(bad))
    if kind is int and pd.api.types.is_integer_dtype(values.dtype):
        return values.to_numpy(dtype=np.int64)  # exact: 17-digit timestamps do not survive float64
    out = values.to_numpy(dtype=np.float64)
    if kind is int:
        frac = out != np.round(out)
        if frac.any():
            raise AdSimDataError("not an integer", file=file, column=column, rows=np.flatnonzero(frac))
        return out.astype(np.int64)
    if kind is bool:
        bad = ~np.isin(out, (0, 1))
        if bad.any():
            raise AdSimDataError("not 0 or 1", file=file, column=column, rows=np.flatnonzero(bad))
        return out.astype(bool)
    return out


def file_info(path: str | Path) -> dict:
    """Name and sha256 of a source file, for the manifest."""
    path = Path(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"file": path.name, "sha256": digest}


def seconds_since_first_midnight(times: pd.Series) -> np.ndarray:
    """int64 seconds from midnight of the earliest day in ``times`` (datetimes, in the clock the source logs)."""
    times = pd.to_datetime(times)
    if times.dt.tz is not None:
        times = times.dt.tz_localize(None)
    start = times.min().normalize()
    return ((times - start) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)


# ------------------------------------------------------------------------------------------------ features
def dense_codes(values, max_codes: int | None = None) -> np.ndarray:
    """int64 codes by descending frequency (0 the most common, ties by value); codes past ``max_codes - 1`` fold
    into the last one."""
    values = pd.Series(np.asarray(values))
    counts = values.value_counts().sort_index().sort_values(ascending=False, kind="stable")
    codes = pd.Index(counts.index).get_indexer(values).astype(np.int64)
    return codes if max_codes is None else np.minimum(codes, max_codes - 1)


def activity_groups(request_counts: np.ndarray) -> np.ndarray:
    """1..5 by quintile of the request count (ties share the group of their average rank)."""
    counts = pd.Series(np.asarray(request_counts, dtype=np.float64))
    if len(counts) == 0:
        return np.zeros(0, dtype=np.int8)
    pct = counts.rank(method="average", pct=True).to_numpy()
    return np.clip(np.ceil(pct * 5), 1, 5).astype(np.int8)


def _stable_hash(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")


def feature_embeddings(n: int, numeric_features: Mapping[str, np.ndarray] | None = None,
                       categorical: Mapping[str, np.ndarray] | None = None, dim: int = EMBEDDING_DIM,
                       n_numeric: int = NUMERIC_COLUMNS) -> np.ndarray:
    """(n, dim) float32 item embeddings from the source's features, comparable across ads and organic items.

    Numeric features are standardised (z-scores, 0 where constant) into the first ``n_numeric`` columns, in the
    given order. Every categorical value is the feature trick's one-hot, hashed: the token ``"name=value"`` adds
    +-1 to one of the remaining columns (blake2b, so the same value of a feature lands in the same column for ads
    and for organic items, in every run). Items sharing a category or brand therefore point the same way.
    """
    out = np.zeros((n, dim), dtype=np.float32)
    numeric_features = dict(numeric_features or {})
    if len(numeric_features) > n_numeric:
        raise ValueError(f"at most {n_numeric} numeric features, got {list(numeric_features)}")
    for j, values in enumerate(numeric_features.values()):
        x = np.asarray(values, dtype=np.float64)
        std = x.std()
        out[:, j] = (x - x.mean()) / std if std > 0 else 0.0
    width = dim - n_numeric
    for name, values in (categorical or {}).items():
        uniques, inverse = np.unique(np.asarray(values).astype(str), return_inverse=True)
        hashed = np.array([_stable_hash(f"{name}={u}") for u in uniques], dtype=np.uint64)
        column = n_numeric + (hashed % np.uint64(width)).astype(np.int64)
        sign = np.where((hashed >> np.uint64(63)) & np.uint64(1), -1.0, 1.0).astype(np.float32)
        np.add.at(out, (np.arange(n), column[inverse.ravel()]), sign[inverse.ravel()])
    return out


# ------------------------------------------------------------------------------------------------ assemble
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


def _check_keys(values: pd.Series, known: pd.Index, what: str, source: str, column: str) -> np.ndarray:
    pos = known.get_indexer(values)
    if (pos < 0).any():
        raise AdSimDataError(f"{what} not in the {what} table", file=source, column=column,
                             rows=np.flatnonzero(pos < 0))
    return pos.astype(np.int64)


def assemble(raw: RawLogs) -> ImportedLogs:
    """The six tables, embeddings and manifest entries of ``raw`` (see the module docstring for every default)."""
    src = raw.source
    defaults: dict[str, dict] = {"events": {}, "ads": {}, "users": {}, "organic_items": {}}
    ev = raw.events.reset_index(drop=True)
    missing = [c for c in EVENT_REQUIRED if c not in ev.columns]
    if missing:
        raise AdSimDataError(f"events lack column(s) {missing}", file=src, column=missing[0])
    if len(ev) == 0:
        raise AdSimDataError("no logged impressions", file=src)
    if (ev["ts"].to_numpy() < 0).any():
        raise AdSimDataError("timestamps before the first day", file=src, column="ts",
                             rows=np.flatnonzero(ev["ts"].to_numpy() < 0))
    ev = _with_defaults(ev, EVENT_DEFAULTS, defaults["events"])

    # ---- ads
    ads = _with_defaults(raw.ads, AD_DEFAULTS, defaults["ads"])
    if "industry_l1" not in raw.ads.columns:
        ads["industry_l1"] = ads["industry"]
        defaults["ads"]["industry_l1"] = "= industry"
    if len(raw.ad_embeddings) != len(ads):
        raise AdSimDataError(f"{len(ads)} ads but {len(raw.ad_embeddings)} ad embeddings", file=src)
    ad_pos = _check_keys(ev["ad"], ads.index, "ad", src, "ad")
    goal = ads["goal"].astype(str).to_numpy()

    # ---- requests: one per distinct request key, in time order
    if "request" not in ev.columns:
        ev["request"] = np.arange(len(ev))
        defaults["events"]["request"] = "one request per impression"
    order = np.lexsort((ev["position"].to_numpy(), ev["request"].to_numpy(), ev["ts"].to_numpy()))
    ev, ad_pos = ev.iloc[order].reset_index(drop=True), ad_pos[order]
    first = ~ev["request"].duplicated().to_numpy()
    request_of_event = np.cumsum(first) - 1  # dense request ids, time ordered
    req_rows = ev.loc[first]
    n_req = len(req_rows)
    for column in ("ts", "user"):
        bad = ev.groupby("request")[column].transform("nunique").to_numpy() > 1
        if bad.any():
            raise AdSimDataError(f"impressions of one request have different {column} values", file=src,
                                 column="request", rows=np.flatnonzero(bad))

    # ---- users
    if raw.users is None:
        users = pd.DataFrame(index=pd.Index(np.sort(ev["user"].unique())))
    else:
        users = raw.users
    users = _with_defaults(users, USER_DEFAULTS, defaults["users"])
    user_of_request = _check_keys(req_rows["user"], users.index, "user", src, "user")
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
            raise AdSimDataError(f"split outside {list(SPLITS)}", file=src, column="split", rows=np.flatnonzero(bad))
    else:
        split = _split_by_time(n_req)
        defaults["events"]["split"] = f"time quantiles {list(SPLIT_FRACTIONS)}"
    if "n_slots" in ev.columns:
        n_slots = req_rows["n_slots"].to_numpy()
    else:
        n_slots = np.bincount(request_of_event, minlength=n_req)
        defaults["events"]["n_slots"] = "impressions per request, within 1..3"
    requests = pd.DataFrame({
        "request_id": np.arange(n_req, dtype=np.int64),
        "user_id": user_of_request,
        "ts": ts,
        "day": (ts // SECONDS_PER_DAY).astype(np.int16),
        "hour": (ts % SECONDS_PER_DAY // 3600).astype(np.int8),
        "device": device.astype(np.int8),
        "placement": req_rows["placement"].to_numpy().astype(np.int8),
        "n_slots": np.clip(n_slots, 1, 3).astype(np.int8),
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
                        np.where(np.isin(g, ["CPC", "oCPC"]), bid * click, bid * conversion))
        defaults["events"]["cost"] = "CPM: bid/1000 per impression; CPC, oCPC: bid per click; oCPA, oCPI: bid per " \
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
        "bid": bid_values(ads, src),
        "target_age_mask": np.full(len(ads), (1 << n_age) - 1, dtype=np.int16),
        "target_gender_mask": np.full(len(ads), 3, dtype=np.int8),
        "target_region_mask": np.full(len(ads), (1 << n_region) - 1, dtype=np.int64),
        "daily_budget": ads["daily_budget"].to_numpy().astype(np.float64),
        "created_day": ads["created_day"].to_numpy().astype(np.int16),
        "conversion_value": ads["conversion_value"].to_numpy().astype(np.float64),
    })
    defaults["ads"]["targeting"] = "untargeted: every age bucket, both genders, every region"

    # ---- organic content
    organic_items, organic_events, organic_emb, dropped = _organic(raw, users, requests, defaults)

    tables = {"users": users_table, "ads": ads_table, "organic_items": organic_items,
              "organic_events": organic_events, "requests": requests, "impressions": impressions}
    arrays = {"ad_embeddings": np.asarray(raw.ad_embeddings, dtype=np.float32), "organic_embeddings": organic_emb}
    request_arrays = {}
    if "market_price" in ev.columns:
        request_arrays["request_market_price"] = req_rows["market_price"].to_numpy().astype(np.float32)
    notes = {**raw.notes, "defaults": {k: _jsonable(v) for k, v in defaults.items() if v},
             "organic_events_dropped_after_last_request": dropped}
    return ImportedLogs(src, tables, arrays, request_arrays, {"import": notes, **raw.extra})


def bid_values(ads: pd.DataFrame, source: str) -> np.ndarray:
    bid = ads["bid"].to_numpy().astype(np.float64)
    bad = ~(np.isfinite(bid) & (bid > 0))
    if bad.any():
        raise AdSimDataError("bids must be positive numbers", file=source, column="bid", rows=np.flatnonzero(bad))
    return bid


def _organic(raw: RawLogs, users: pd.DataFrame, requests: pd.DataFrame, defaults: dict
             ) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, int]:
    """Organic items and events, each event tied to the user's first request at or after it."""
    dim = raw.ad_embeddings.shape[1]
    items = raw.organic_items if raw.organic_items is not None else pd.DataFrame(index=pd.Index([], dtype=object))
    items = _with_defaults(items, ORGANIC_ITEM_DEFAULTS, defaults["organic_items"])
    emb = raw.organic_embeddings if raw.organic_embeddings is not None else np.zeros((0, dim), np.float32)
    if len(emb) != len(items) or (len(emb) and emb.shape[1] != dim):
        raise AdSimDataError(f"organic embeddings {np.shape(emb)} do not match {len(items)} items x {dim} dims",
                             file=raw.source)
    kinds = items["kind"].astype(str).to_numpy()
    bad = ~np.isin(kinds, ORGANIC_KINDS)
    if bad.any():
        raise AdSimDataError(f"organic kind outside {list(ORGANIC_KINDS)}", file=raw.source, column="kind",
                             rows=np.flatnonzero(bad))
    items_table = pd.DataFrame({
        "item_id": np.arange(len(items), dtype=np.int64),
        "kind": pd.Categorical(kinds, categories=list(ORGANIC_KINDS)),
        "topic": dense_codes(items["topic"].to_numpy()).astype(np.int16),
    })
    ev = raw.organic_events if raw.organic_events is not None else pd.DataFrame({"user": [], "item": [], "ts": []})
    ev = ev.reset_index(drop=True)
    user = _check_keys(ev["user"], users.index, "user", raw.source, "organic user") if len(ev) else np.zeros(0, int)
    item = _check_keys(ev["item"], items.index, "item", raw.source, "organic item") if len(ev) else np.zeros(0, int)
    ts = ev["ts"].to_numpy().astype(np.int64)
    dwell = ev["dwell_s"].to_numpy().astype(np.float32) if "dwell_s" in ev else np.zeros(len(ev), np.float32)
    if "dwell_s" not in ev and len(ev):
        defaults["organic_items"]["dwell_s"] = 0.0

    # the user's first request at or after each event: one search over (user, ts) keys
    span = int(max(requests["ts"].max(), ts.max(initial=0))) + 1
    req_key = requests["user_id"].to_numpy() * span + requests["ts"].to_numpy()
    order = np.argsort(req_key, kind="stable")
    pos = np.searchsorted(req_key[order], user * span + ts, side="left")
    found = pos < len(order)
    rid = order[np.minimum(pos, len(order) - 1)]
    found &= requests["user_id"].to_numpy()[rid] == user
    keep = np.flatnonzero(found)
    keep = keep[np.lexsort((keep, ts[keep]))]  # time order, stable
    events_table = pd.DataFrame({
        "event_id": np.arange(len(keep), dtype=np.int64),
        "user_id": user[keep].astype(np.int64),
        "item_id": item[keep].astype(np.int64),
        "ts": ts[keep],
        "request_id": rid[keep].astype(np.int64),
        "dwell_s": dwell[keep],
    })
    return items_table, events_table, np.asarray(emb, dtype=np.float32), int(len(ev) - len(keep))


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


# ------------------------------------------------------------------------------------------------ writing
def request_arrays_step(arrays: Mapping[str, np.ndarray]) -> BuildStep:
    """A build step writing per-request arrays (aligned with ``requests``) into the bundle's ``arrays/``."""

    def step(root: Path, scenario: Scenario, progress: bool) -> dict:
        n = len(scenario.table("requests"))
        out = {}
        for name, values in arrays.items():
            if len(values) != n:
                raise AdSimDataError(f"{name} has {len(values)} rows, requests has {n}", column=name)
            np.save(array_path(root, name), np.ascontiguousarray(values))
            out[name] = {"dtype": str(values.dtype), "min": float(values.min()), "median": float(np.median(values)),
                         "max": float(values.max())}
        return out

    return step


def reward_step(root: Path, scenario: Scenario, progress: bool) -> dict:
    """The reward-model build step, adapted to real logs that the default configuration cannot train on.

    Real logs often have no conversions at all (OBD, iPinYou's impression log, the Taobao sample) or only a few
    clicks (iPinYou: 5 in 12k impressions). With no conversions the pCVR model is fitted with ``min_positives=0``
    on every impression (``cvr_target="ctcvr"``: a validation split without clicks would leave the clicked-rows
    model no validation rows), so it predicts a constant near 0, and final_value drops its pCVR term (alphas
    ``{"pctr": 1}``); with fewer
    than 20 training clicks the pCTR model is fitted anyway (``min_positives=0``; with none it is a constant)
    and the manifest says so.
    Otherwise this is ``reward_models.bundle.bundle_step`` unchanged.
    """
    from reward_models.bundle import RewardModelsConfig, bundle_sid_codes, train_reward_models
    from reward_models.value import ValueConfig

    imp, req = scenario.table("impressions"), scenario.table("requests")
    train = req["split"].astype(str).to_numpy()[imp["request_id"].to_numpy()] == "train"
    clicks = int(imp["click"].to_numpy()[train].sum())
    conversions = int(imp["conversion"].to_numpy()[train].sum())
    config = RewardModelsConfig(seed=int(scenario.manifest.get("seed") or 0))
    adjusted = []
    if clicks < config.pctr.min_positives:
        config.pctr = replace(config.pctr, min_positives=0)
        adjusted.append(f"pctr trained on only {clicks} clicks (fewer than 20: low confidence)")
    if conversions < config.pcvr.min_positives:
        config.pcvr = replace(config.pcvr, min_positives=0)
        config.cvr_target = "ctcvr"  # fitted on every impression: a split with no click still has rows
        config.value = ValueConfig(alphas={"pctr": 1.0})
        adjusted.append(f"{conversions} conversions logged: pcvr is a constant near 0 and final_value = "
                        "eCPM + pCTR term only")
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        # a split without clicks has no pCVR metrics: they are NaN in the manifest, not warnings
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        summary = train_reward_models(scenario, root / "reward_models", config, bundle_sid_codes(root))
    return {**summary, "import_adjustments": adjusted}


def import_steps(base: Sequence[tuple[str, BuildStep]] | None = None) -> list[tuple[str, BuildStep]]:
    """``adsim.pipeline.default_steps()`` with the reward-model step swapped for ``reward_step`` (appended if the
    pipeline has none yet)."""
    if base is None:
        from adsim.pipeline import default_steps

        base = default_steps()
    steps = [(name, reward_step if name == "reward_models" else step) for name, step in base]
    if "reward_models" not in [name for name, _ in steps]:
        steps.append(("reward_models", reward_step))
    return steps


def write_imported(logs: ImportedLogs, out: str | Path, *, seed: int = 0,
                   steps: Sequence[tuple[str, BuildStep]] | None = None, progress: bool = True,
                   overwrite: bool = False) -> Path:
    """Validate and write the bundle (nothing is written if anything fails), then run the build steps.

    Empty organic tables validate, but the build steps cannot use them: the reward-model features fail at
    ``reward_models/features.py`` ``FeatureBuilder.__init__`` (``self.organic_topic.max()`` of an empty array) and
    ``FeatureBuilder._user_history`` (``self.organic_emb[...]`` indexes an empty array), and the env's observations
    at ``adsim/simulator/observation.py`` ``ObservationBuilder.build`` (``self.organic_codes[...]``). Logs without
    organic events are therefore refused here, before anything is written, unless ``steps=()`` (logs only).
    """
    steps = import_steps() if steps is None else list(steps)
    if steps and len(logs.tables["organic_events"]) == 0:
        raise AdSimDataError("no organic events: the reward models and the env's history need at least one "
                             "(reward_models/features.py FeatureBuilder, adsim/simulator/observation.py "
                             "ObservationBuilder); map an organic source, or import the logs only with steps=()",
                             file=logs.source, column="organic_events")
    if logs.request_arrays:
        steps = [("request_arrays", request_arrays_step(logs.request_arrays)), *steps]
    extra = {**logs.manifest, "seed": int(seed)}
    return write_bundle(out, logs.tables, logs.arrays, logs.source, extra=extra, steps=steps, progress=progress,
                        overwrite=overwrite)
