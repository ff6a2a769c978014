"""Configuration of the synthetic ad world: one dataclass, four presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

GOALS: tuple[str, ...] = ("CPM", "CPC", "oCPC", "oCPA", "oCPI")
"""Optimisation goals. CPM bids per mille impressions, CPC per click, oCPC/oCPA/oCPI per conversion (install); every
goal but CPM is billed per click (``adsim.world.cascade``)."""

DEVICES: tuple[str, ...] = ("android", "ios", "pc")
PLACEMENTS: tuple[str, ...] = ("feed", "video", "article")
ORGANIC_KINDS: tuple[str, ...] = ("short_video", "article")


@dataclass(frozen=True)
class WorldConfig:
    """Everything that shapes a synthetic world. Sizes scale with the preset; the rest is shared."""

    # --- sizes
    n_users: int = 8_000
    n_ads: int = 8_000
    n_advertisers: int = 1_200
    n_organic_items: int = 30_000
    n_days: int = 14
    embed_dim: int = 32
    n_topics: int = 32
    n_industries: int = 40
    n_industry_l1: int = 8
    n_regions: int = 16
    n_age_buckets: int = 6

    # --- users
    activity_rates: tuple[float, ...] = (0.25, 0.8, 2.0, 4.5, 9.0)
    """Mean requests per user and day for activity groups UG1 (low) .. UG5 (high)."""
    activity_shares: tuple[float, ...] = (0.30, 0.25, 0.20, 0.15, 0.10)
    max_interests: int = 4
    interest_spread: float = 0.35
    """Noise of an interest vector around its topic centroid (relative to the centroid norm)."""
    drift_per_day: float = 0.12
    """Standard deviation of the daily random-walk step of every interest vector."""
    new_interest_prob: float = 0.03
    """Daily chance that a user's weakest interest is replaced by a brand new one."""
    organic_per_request: float = 2.0
    """Mean organic items consumed just before each request."""

    # --- ads
    initial_ad_share: float = 0.6
    """Share of ads live on day 0; the rest arrive uniformly over the following days (cold start)."""
    goal_probs: tuple[float, ...] = (0.12, 0.06, 0.36, 0.40, 0.06)
    bid_sigma: float = 0.9
    """Log-normal sigma of bids around their industry x goal scale (heavy tail)."""
    untargeted_prob: float = 0.5
    """Chance that an ad does not restrict one targeting dimension (age, gender, region)."""
    budget_median: float = 60.0
    """Median daily budget (currency units)."""

    # --- requests and logging policy
    retrieval_topics: int = 2
    """Topics the coarse matcher retrieves from per request."""
    retrieval_per_topic: int = 100
    """Ads per topic list of the coarse matcher (candidates = topics x this)."""
    preranking_size: int = 32
    exploration_eps: float = 0.05
    """Per-slot chance that the logging policy shows a uniformly random pre-ranked candidate."""
    ecpm_noise: float = 0.5
    """Log-normal sigma of the logging ranker's eCPM estimate around the truth."""
    reserve_ecpm: float = 0.5
    privacy_prob: float = 0.1
    split_fractions: tuple[float, float] = (0.7, 0.15)
    """Train and validation share of days; the rest is test."""
    chunk_size: int = 2_048
    """Requests of the marketplace between budget checks. A user shard scores ``chunk_size`` x its share of the
    requests together and checks budgets between such chunks, so checks come about as often, in time, whatever
    the number of shards."""
    n_shards: int = 4
    """User shards the logs are generated in (contiguous user-id ranges). Each shard draws from its own random
    streams and spends its own share of every ad's daily budget, so shards run in sequence or in parallel (Ray)
    with identical results: the number of shards is part of the data, the number of workers is not (see
    ``adsim.world.logs``)."""

    def __post_init__(self) -> None:
        checks = {
            "n_users": self.n_users >= 10,
            "n_ads": self.n_ads >= 20,
            "n_advertisers": 1 <= self.n_advertisers <= self.n_ads,
            "n_organic_items": self.n_organic_items >= self.n_topics,
            "n_days": self.n_days >= 3,
            "n_topics": self.n_topics >= 2,
            "max_interests": 1 <= self.max_interests <= 8,
            "activity_rates": len(self.activity_rates) == 5 and min(self.activity_rates) > 0,
            "activity_shares": len(self.activity_shares) == 5 and abs(sum(self.activity_shares) - 1) < 1e-6,
            "goal_probs": len(self.goal_probs) == len(GOALS) and abs(sum(self.goal_probs) - 1) < 1e-6,
            "n_regions": 1 <= self.n_regions <= 62,
            "n_industry_l1": 1 <= self.n_industry_l1 <= self.n_industries,
            "exploration_eps": 0 <= self.exploration_eps < 1,
            "split_fractions": 0 < self.split_fractions[0] and sum(self.split_fractions) < 1,
            "chunk_size": self.chunk_size >= 1,
            "n_shards": 1 <= self.n_shards <= self.n_users,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid WorldConfig field(s): {', '.join(bad)} (got {[getattr(self, b) for b in bad]})")

    def replace(self, **changes) -> WorldConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> WorldConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown WorldConfig field(s): {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


PRESETS: dict[str, WorldConfig] = {
    "tiny": WorldConfig(
        n_users=300, n_ads=400, n_advertisers=80, n_organic_items=1_500, n_days=7, n_topics=12,
        n_industries=16, n_industry_l1=4, retrieval_per_topic=30, preranking_size=16, chunk_size=128,
        activity_rates=(0.5, 1.0, 2.0, 4.0, 8.0), budget_median=30.0, n_shards=2,
    ),
    "small": WorldConfig(),
    "medium": WorldConfig(
        n_users=100_000, n_ads=50_000, n_advertisers=6_000, n_organic_items=200_000, n_days=21, n_topics=64,
        retrieval_per_topic=150, n_shards=8,
    ),
    "large": WorldConfig(
        n_users=500_000, n_ads=300_000, n_advertisers=30_000, n_organic_items=1_000_000, n_days=14, n_topics=128,
        n_industries=80, n_industry_l1=10, retrieval_per_topic=200, chunk_size=16_384, n_shards=64,
    ),
}
"""``tiny`` builds in seconds (tests), ``small`` is the default, ``medium`` is for benchmarks and scale-out on
one machine. ``large`` (about 16M requests, 30M impressions and 31M organic events over 14 days, 300k ads) is
meant for a Ray cluster: ``adsim build --preset large --ray-address auto`` runs its 64 x 14 shard-days as tasks.
The users' daily interest vectors (about 3.6 GB) are generated by one Ray task and stay in the workers' object stores;
the driver holds the catalogue and one day of logs (``adsim.world.shards``)."""


def preset(name: str) -> WorldConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
