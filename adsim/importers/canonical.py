"""The canonical long format every importer maps its source onto, and the defaults ``assemble`` fills in.

An importer reads its source into ``RawLogs``: one row per logged impression (``events``, canonical column names),
an ads frame and a users frame keyed by the source's own ids, optional organic content, and embeddings.
``adsim.importers.assemble`` then does what is the same for every source, so each default below is invented once and
documented once (the full list of defaults is in that module's docstring).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from adsim.data.schema import TABLES
from adsim.importers.parsing import Origin

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

FRAMES = ("events", "ads", "users", "organic_items", "organic_events")
TARGETS: dict[str, dict[str, str]] = {
    "events": {"user": "requests.user_id", "ad": "impressions.ad_id", "ts": "requests.ts",
               "click": "impressions.click", "request": "impressions.request_id",
               "position": "impressions.position", "propensity": "impressions.propensity",
               "ranking_ecpm": "impressions.ranking_ecpm", "conversion": "impressions.conversion",
               "cost": "impressions.cost", "gmv": "impressions.gmv", "device": "requests.device",
               "placement": "requests.placement", "n_slots": "requests.n_slots", "privacy": "requests.privacy",
               "split": "requests.split"},
    "ads": {"advertiser": "ads.advertiser_id", "industry": "ads.industry", "industry_l1": "ads.industry_l1",
            "goal": "ads.goal", "bid": "ads.bid", "roi_target": "ads.roi_target", "daily_budget": "ads.daily_budget",
            "created_day": "ads.created_day", "conversion_value": "ads.conversion_value"},
    "users": {"age_bucket": "users.age_bucket", "gender": "users.gender", "region": "users.region",
              "primary_device": "users.primary_device"},
    "organic_items": {"kind": "organic_items.kind", "topic": "organic_items.topic"},
    "organic_events": {"user": "organic_events.user_id", "item": "organic_events.item_id",
                       "ts": "organic_events.ts", "dwell_s": "organic_events.dwell_s"},
}
"""Each canonical field of each frame -> the adsim ``table.column`` it becomes (what errors call it)."""
KEYS = ("user", "ad", "request", "item", "advertiser", "industry", "industry_l1", "region", "topic")
"""Fields that hold any key (coded by adsim): no value range."""


def field_bounds(frame: str, name: str) -> tuple[tuple[float | None, float | None], bool]:
    """((min, max), must be positive) a source value of ``name`` in ``frame`` must satisfy: the adsim schema's range
    of the column it becomes (``TARGETS``), bids positive. Keys and the clock have none here."""
    if name in KEYS or name == "ts" or name not in TARGETS.get(frame, {}):
        return (None, None), False
    table, column = TARGETS[frame][name].split(".")
    spec = next(c for c in TABLES[table] if c.name == column)
    return (spec.min_value, spec.max_value), name == "bid"


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
    origins: dict[str, Origin] = field(default_factory=dict)
    """Per frame (``FRAMES``): the user's file and data row of each row and the user's column of each field, so
    errors found while assembling name them. A frame without one is reported by its ``source`` name."""


@dataclass
class ImportedLogs:
    """The six tables and arrays ``write_bundle`` takes, plus per-request arrays written by a build step."""

    source: str
    tables: dict[str, pd.DataFrame]
    arrays: dict[str, np.ndarray]
    request_arrays: dict[str, np.ndarray]
    manifest: dict
    origins: dict[str, Origin] = field(default_factory=dict)
    """Per table: the user's file and data row behind each row, and the user's column behind each adsim column."""
