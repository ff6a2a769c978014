"""The world's population: topics, users with drifting interests, advertisers' ads and organic content.

Everything here is a pure function of ``(WorldConfig, seed)``. The logs store only what a production system
would observe; hidden truth (interest vectors, creative quality) is regenerated from the config and seed
whenever an evaluation needs it, so a bundle never has to carry it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from adsim.world.config import DEVICES, GOALS, ORGANIC_KINDS, WorldConfig
from adsim.world.rng import stream

GOAL_BID_SCALE = {"CPM": 15.0, "CPC": 0.6, "oCPC": 4.0, "oCPA": 12.0, "oCPI": 6.0}
"""Median bid per goal: CPM per mille impressions, CPC per click, oCPC/oCPA/oCPI per conversion (oCPC's target cost
per conversion, 4.0, puts its eCPM near CPC's at the world's ~16% conversion rate per click)."""


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _zipf_probs(n: int, exponent: float) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** exponent
    return p / p.sum()


def _around(centroids: np.ndarray, topics: np.ndarray, spread: float, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors scattered around their topic centroid; ``spread`` is the noise norm relative to it."""
    dim = centroids.shape[1]
    noise = rng.standard_normal((len(topics), dim)) * (spread / np.sqrt(dim))
    return _unit(centroids[topics] + noise).astype(np.float32)


@dataclass
class Users:
    table: pd.DataFrame
    """Observable profile: user_id, age_bucket, gender, region, activity_group (1-5), primary_device."""
    interests: np.ndarray
    """Hidden truth: (n_days, n_users, max_interests, dim) float32 unit interest vectors per day."""
    interest_weights: np.ndarray
    """Hidden truth: (n_days, n_users, max_interests) float32, zero for an unused slot; rows sum to 1."""
    click_bias: np.ndarray
    """Hidden truth: (n_users,) per-user logit offset of clicking."""
    convert_bias: np.ndarray


@dataclass
class Ads:
    table: pd.DataFrame
    embeddings: np.ndarray
    """(n_ads, dim) float32 content embeddings, observable (a content model's output)."""
    quality: np.ndarray
    """Hidden truth: creative quality, a logit offset of clicking."""
    convert_quality: np.ndarray
    topic: np.ndarray


@dataclass
class Organic:
    table: pd.DataFrame
    embeddings: np.ndarray
    topic: np.ndarray


def make_topics(config: WorldConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Topic centroids (unit vectors) and their popularity (long-tailed)."""
    rng = stream(seed, "topics")
    centroids = _unit(rng.standard_normal((config.n_topics, config.embed_dim))).astype(np.float32)
    popularity = rng.permutation(_zipf_probs(config.n_topics, 0.8))
    return centroids, popularity


def make_users(config: WorldConfig, seed: int, centroids: np.ndarray, popularity: np.ndarray) -> Users:
    rng = stream(seed, "users")
    n, k, dim = config.n_users, config.max_interests, config.embed_dim
    group = rng.choice(5, size=n, p=np.asarray(config.activity_shares)) + 1
    table = pd.DataFrame(
        {
            "user_id": np.arange(n, dtype=np.int64),
            "age_bucket": rng.choice(config.n_age_buckets, size=n, p=_zipf_probs(config.n_age_buckets, 0.3)).astype(
                np.int8
            ),
            "gender": rng.integers(0, 2, size=n).astype(np.int8),
            "region": rng.choice(config.n_regions, size=n, p=_zipf_probs(config.n_regions, 0.7)).astype(np.int16),
            "activity_group": group.astype(np.int8),
            "primary_device": rng.choice(len(DEVICES), size=n, p=[0.6, 0.32, 0.08]).astype(np.int8),
        }
    )
    count_probs = np.array([0.2, 0.35, 0.3, 0.15, 0.0, 0.0, 0.0, 0.0])[:k]
    n_interests = rng.choice(k, size=n, p=count_probs / count_probs.sum()) + 1
    active = np.arange(k)[None, :] < n_interests[:, None]

    vectors = _around(centroids, rng.choice(config.n_topics, size=n * k, p=popularity), config.interest_spread, rng)
    vectors = vectors.reshape(n, k, dim)
    weights = np.where(active, rng.dirichlet(np.ones(k), size=n), 0.0)

    interests = np.empty((config.n_days, n, k, dim), dtype=np.float32)
    all_weights = np.empty((config.n_days, n, k), dtype=np.float32)
    for day in range(config.n_days):
        if day > 0:
            step = rng.standard_normal(vectors.shape) * (config.drift_per_day / np.sqrt(dim))
            vectors = _unit(vectors + step).astype(np.float32)
            renewed = rng.random(n) < config.new_interest_prob
            if renewed.any():
                # a new interest takes a free slot when there is one, else replaces the weakest
                slot = np.where(active.all(axis=1), np.argmin(np.where(active, weights, np.inf), axis=1),
                                np.argmin(active, axis=1))
                rows = np.flatnonzero(renewed)
                topics = rng.choice(config.n_topics, size=len(rows), p=popularity)
                vectors[rows, slot[rows]] = _around(centroids, topics, config.interest_spread, rng)
                active[rows, slot[rows]] = True
                weights[rows, slot[rows]] = rng.uniform(0.2, 0.6, size=len(rows))
        weights = np.where(active, weights, 0.0)
        weights = weights / weights.sum(axis=1, keepdims=True)
        interests[day] = vectors
        all_weights[day] = weights
    return Users(
        table=table,
        interests=interests,
        interest_weights=all_weights,
        click_bias=rng.normal(0.0, 0.3, size=n).astype(np.float32),
        convert_bias=rng.normal(0.0, 0.3, size=n).astype(np.float32),
    )


def _targeting_masks(config: WorldConfig, n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Bitmasks of allowed age buckets, genders and regions; all bits set means untargeted."""
    full_age = (1 << config.n_age_buckets) - 1
    lo = rng.integers(0, config.n_age_buckets, size=n)
    width = rng.integers(1, config.n_age_buckets + 1, size=n)
    hi = np.minimum(lo + width, config.n_age_buckets)
    age = ((1 << hi) - (1 << lo)).astype(np.int64)
    age = np.where(rng.random(n) < config.untargeted_prob, full_age, age)

    gender = np.where(rng.random(n) < config.untargeted_prob, 0b11, 1 << rng.integers(0, 2, size=n)).astype(np.int8)

    full_region = (1 << config.n_regions) - 1
    picks = rng.random((n, config.n_regions)) < rng.uniform(0.1, 0.6, size=(n, 1))
    picks[np.arange(n), rng.integers(0, config.n_regions, size=n)] = True
    region = (picks.astype(np.int64) << np.arange(config.n_regions, dtype=np.int64)).sum(axis=1)
    region = np.where(rng.random(n) < config.untargeted_prob, full_region, region)
    return age.astype(np.int16), gender, region.astype(np.int64)


def make_ads(config: WorldConfig, seed: int, centroids: np.ndarray, popularity: np.ndarray) -> Ads:
    rng = stream(seed, "ads")
    n = config.n_ads
    # advertisers: long-tailed industries and long-tailed sizes
    adv_industry = rng.choice(config.n_industries, size=config.n_advertisers, p=_zipf_probs(config.n_industries, 1.1))
    advertiser = rng.choice(config.n_advertisers, size=n, p=rng.permutation(_zipf_probs(config.n_advertisers, 0.9)))
    industry = adv_industry[advertiser]
    industry_l1 = (industry * config.n_industry_l1) // config.n_industries

    # each industry writes ads about a few topics of its own
    industry_topics = rng.choice(config.n_topics, size=(config.n_industries, 3), p=popularity)
    own_topic = industry_topics[industry, rng.integers(0, 3, size=n)]
    topic = np.where(rng.random(n) < 0.8, own_topic, rng.choice(config.n_topics, size=n, p=popularity))
    embeddings = _around(centroids, topic, config.interest_spread, rng)

    goal_idx = rng.choice(len(GOALS), size=n, p=np.asarray(config.goal_probs))
    goals = np.asarray(GOALS)[goal_idx]
    industry_scale = np.exp(rng.normal(0.0, 0.5, size=config.n_industries))
    goal_scale = np.array([GOAL_BID_SCALE[g] for g in GOALS])[goal_idx]
    bid = goal_scale * industry_scale[industry] * np.exp(rng.normal(0.0, config.bid_sigma, size=n))
    per_conversion = np.isin(goals, ["oCPA", "oCPI"])
    roi_target = np.where(per_conversion, np.round(np.exp(rng.normal(0.5, 0.4, size=n)), 1), 0.0)
    conversion_value = np.where(per_conversion, bid * roi_target * np.exp(rng.normal(0.0, 0.3, size=n)), 0.0)

    age, gender, region = _targeting_masks(config, n, rng)
    budget = config.budget_median * np.exp(rng.normal(0.0, 1.0, size=n))
    n_initial = int(round(config.initial_ad_share * n))
    created_day = np.concatenate([np.zeros(n_initial), rng.integers(1, config.n_days, size=n - n_initial)])
    created_day = rng.permutation(created_day).astype(np.int16)

    table = pd.DataFrame(
        {
            "ad_id": np.arange(n, dtype=np.int64),
            "advertiser_id": advertiser.astype(np.int64),
            "industry": industry.astype(np.int16),
            "industry_l1": industry_l1.astype(np.int16),
            "goal": pd.Categorical(goals, categories=list(GOALS)),
            "roi_target": roi_target.astype(np.float32),
            "bid": bid.astype(np.float64),
            "target_age_mask": age,
            "target_gender_mask": gender,
            "target_region_mask": region,
            "daily_budget": budget.astype(np.float64),
            "created_day": created_day,
            "conversion_value": conversion_value.astype(np.float64),
        }
    )
    return Ads(
        table=table,
        embeddings=embeddings,
        quality=rng.normal(0.0, 0.5, size=n).astype(np.float32),
        convert_quality=rng.normal(0.0, 0.5, size=n).astype(np.float32),
        topic=topic.astype(np.int32),
    )


def make_organic(config: WorldConfig, seed: int, centroids: np.ndarray, popularity: np.ndarray) -> Organic:
    rng = stream(seed, "organic")
    n = config.n_organic_items
    topic = np.concatenate([np.arange(config.n_topics), rng.choice(config.n_topics, size=n - config.n_topics,
                                                                    p=popularity)])
    embeddings = _around(centroids, topic, config.interest_spread, rng)
    kind = rng.choice(len(ORGANIC_KINDS), size=n, p=[0.7, 0.3])
    table = pd.DataFrame(
        {
            "item_id": np.arange(n, dtype=np.int64),
            "kind": pd.Categorical(np.asarray(ORGANIC_KINDS)[kind], categories=list(ORGANIC_KINDS)),
            "topic": topic.astype(np.int16),
        }
    )
    return Organic(table=table, embeddings=embeddings, topic=topic.astype(np.int32))
