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
