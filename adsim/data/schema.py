"""Documented schemas of the logged tables. One source of truth for writing, validating and the docs."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from adsim.world.config import GOALS, ORGANIC_KINDS
from adsim.world.logs import SPLITS


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    doc: str
    min_value: float | None = None
    max_value: float | None = None
    categories: tuple[str, ...] | None = None


CATEGORY = pa.dictionary(pa.int8(), pa.string())


TABLES: dict[str, tuple[Column, ...]] = {
    "users": (
        Column("user_id", pa.int64(), "dense id 0..n-1", 0),
        Column("age_bucket", pa.int8(), "age bucket 0 (youngest) .. 5", 0),
        Column("gender", pa.int8(), "0 or 1", 0, 1),
        Column("region", pa.int16(), "region index", 0),
        Column("activity_group", pa.int8(), "UG1 (low) .. UG5 (high activity)", 1, 5),
        Column("primary_device", pa.int8(), "most used device (0 android, 1 ios, 2 pc)", 0, 2),
    ),
    "ads": (
        Column("ad_id", pa.int64(), "dense id 0..n-1", 0),
        Column("advertiser_id", pa.int64(), "advertiser", 0),
        Column("industry", pa.int16(), "second-level industry, 0 is the most common", 0),
        Column("industry_l1", pa.int16(), "first-level industry", 0),
        Column("goal", CATEGORY, "optimisation goal", categories=GOALS),
        Column("roi_target", pa.float32(), "advertiser's ROI target (GMV / cost); 0 when the goal has none", 0),
        Column("bid", pa.float64(), "CPM: per mille impressions; CPC: per click; oCPC/oCPA/oCPI: per conversion", 0),
        Column("target_age_mask", pa.int16(), "bit i set: age bucket i may see the ad", 1),
        Column("target_gender_mask", pa.int8(), "bit g set: gender g may see the ad", 1, 3),
        Column("target_region_mask", pa.int64(), "bit r set: region r may see the ad", 1),
        Column("daily_budget", pa.float64(), "spend cap per day", 0),
        Column("created_day", pa.int16(), "first day the ad is live (later days: cold start)", 0),
        Column("conversion_value", pa.float64(), "mean GMV of one conversion (oCPA/oCPI), else 0", 0),
    ),
    "organic_items": (
        Column("item_id", pa.int64(), "dense id 0..n-1", 0),
        Column("kind", CATEGORY, "short_video or article", categories=ORGANIC_KINDS),
        Column("topic", pa.int16(), "content category", 0),
    ),
    "organic_events": (
        Column("event_id", pa.int64(), "dense id, time ordered", 0),
        Column("user_id", pa.int64(), "consuming user", 0),
        Column("item_id", pa.int64(), "organic item consumed", 0),
        Column("ts", pa.int64(), "seconds since the start of day 0", 0),
        Column("request_id", pa.int64(), "the request this consumption preceded", 0),
        Column("dwell_s", pa.float32(), "seconds spent", 0),
    ),
    "requests": (
        Column("request_id", pa.int64(), "dense id, time ordered", 0),
        Column("user_id", pa.int64(), "requesting user", 0),
        Column("ts", pa.int64(), "seconds since the start of day 0", 0),
        Column("day", pa.int16(), "ts // 86400", 0),
        Column("hour", pa.int8(), "hour of day", 0, 23),
        Column("device", pa.int8(), "0 android, 1 ios, 2 pc", 0, 2),
        Column("placement", pa.int8(), "0 feed, 1 video, 2 article", 0, 2),
        Column("n_slots", pa.int8(), "ad slots on the page", 1, 3),
        Column("privacy", pa.bool_(), "user limits tracking"),
        Column("is_synthetic", pa.bool_(), "False for logged requests, True for anticipatory (ARR) ones"),
        Column("split", CATEGORY, "time-based split", categories=SPLITS),
    ),
    "impressions": (
        Column("impression_id", pa.int64(), "dense id, time ordered", 0),
        Column("request_id", pa.int64(), "request served", 0),
        Column("ad_id", pa.int64(), "ad shown", 0),
        Column("position", pa.int8(), "slot, 0 is the top", 0, 2),
        Column("propensity", pa.float64(), "logging policy's probability of this ad at this slot", 1e-12, 1),
        Column("ranking_ecpm", pa.float64(), "the logging ranker's eCPM estimate"),
        Column("click", pa.bool_(), "clicked"),
        Column("conversion", pa.bool_(), "converted (only after a click)"),
        Column("cost", pa.float64(), "charged to the advertiser", 0),
        Column("gmv", pa.float64(), "value of the conversion (oCPA/oCPI)", 0),
    ),
}

FOREIGN_KEYS: tuple[tuple[str, str, str, str], ...] = (
    ("requests", "user_id", "users", "user_id"),
    ("organic_events", "user_id", "users", "user_id"),
    ("organic_events", "item_id", "organic_items", "item_id"),
    ("organic_events", "request_id", "requests", "request_id"),
    ("impressions", "request_id", "requests", "request_id"),
    ("impressions", "ad_id", "ads", "ad_id"),
)
"""(table, column) -> (referenced table, column)."""

TIME_ORDERED: dict[str, str] = {"requests": "ts", "organic_events": "ts", "impressions": "request_id"}
UNIQUE: dict[str, str] = {
    "users": "user_id", "ads": "ad_id", "organic_items": "item_id", "organic_events": "event_id",
    "requests": "request_id", "impressions": "impression_id",
}


def arrow_schema(table: str) -> pa.Schema:
    return pa.schema([pa.field(c.name, c.type, nullable=False) for c in TABLES[table]])


def markdown() -> str:
    """The schemas as Markdown, for the docs."""
    out = []
    for table, columns in TABLES.items():
        out.append(f"### {table}\n\n| column | type | meaning |\n|---|---|---|")
        out.extend(f"| `{c.name}` | {c.type} | {c.doc} |" for c in columns)
        out.append("")
    return "\n".join(out)
