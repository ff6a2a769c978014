"""A small seeded stand-in for a scenario's ads and organic items, for SID tests and benchmarks.

It has the columns and array layout of ``Scenario.table("ads")`` / ``Scenario.ad_embeddings`` that the SID code
reads, and the property Commercial SID is about: semantically similar ads (same topic) can have very different
bids, because the bid level depends on the optimisation goal and the industry, not on the content.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

GOALS = ("CPM", "CPC", "oCPC", "oCPA", "oCPI")
GOAL_PROBS = (0.15, 0.25, 0.25, 0.25, 0.10)
GOAL_BID_SCALE = {"CPM": 8.0, "CPC": 0.6, "oCPC": 0.8, "oCPA": 12.0, "oCPI": 5.0}
ROI_TARGETS = (1.2, 1.5, 2.0, 3.0)


@dataclass
class SyntheticAds:
    ads: pd.DataFrame
    """ad_id (= row), advertiser_id, industry, industry_l1, goal, roi_target (0 = none), bid."""
    ad_embeddings: np.ndarray
    """(n_ads, dim) float32 unit vectors."""
    organic_embeddings: np.ndarray
    """(n_organic, dim) float32 unit vectors around the same topics."""


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def make_synthetic_ads(n_ads: int = 8000, n_organic: int = 30000, dim: int = 32, n_topics: int = 40,
                       n_industries: int = 30, spread: float = 0.6, seed: int = 0) -> SyntheticAds:
    """Topic clusters of unit embeddings; lognormal bids whose level is set by goal x industry.

    Args:
        spread: noise norm relative to the topic centroid (larger = topics overlap more).
    """
    rng = np.random.default_rng(seed)
    centroids = _unit(rng.standard_normal((n_topics, dim)))
    popularity = rng.dirichlet(np.full(n_topics, 0.7))

    def around(n: int, topics: np.ndarray) -> np.ndarray:
        noise = rng.standard_normal((n, dim)) * spread / np.sqrt(dim)
        return _unit(centroids[topics] + noise)

    industry_topics = rng.choice(n_topics, size=(n_industries, 3), p=popularity)
    industry = rng.choice(n_industries, size=n_ads, p=rng.dirichlet(np.full(n_industries, 0.5)))
    topic = industry_topics[industry, rng.integers(0, 3, size=n_ads)]
    goal = np.asarray(GOALS)[rng.choice(len(GOALS), size=n_ads, p=GOAL_PROBS)]
    per_conversion = np.isin(goal, ["oCPA", "oCPI"])
    roi = np.where(per_conversion, np.asarray(ROI_TARGETS)[rng.integers(0, len(ROI_TARGETS), size=n_ads)], 0.0)
    industry_scale = np.exp(rng.normal(0.0, 0.7, size=n_industries))
    bid = (np.array([GOAL_BID_SCALE[g] for g in goal]) * industry_scale[industry] * np.sqrt(np.maximum(roi, 1.0))
           * np.exp(rng.normal(0.0, 0.35, size=n_ads)))
    ads = pd.DataFrame({
        "ad_id": np.arange(n_ads, dtype=np.int64),
        "advertiser_id": (industry * 1000 + rng.integers(0, 20, size=n_ads)).astype(np.int64),
        "industry": industry.astype(np.int64),
        "industry_l1": (industry // 3).astype(np.int64),
        "goal": goal,
        "roi_target": roi,
        "bid": bid,
    })
    organic = around(n_organic, rng.choice(n_topics, size=n_organic, p=popularity))
    return SyntheticAds(ads=ads, ad_embeddings=around(n_ads, topic), organic_embeddings=organic)
