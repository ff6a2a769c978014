"""Request arrivals and organic consumption for one day of the world."""

from __future__ import annotations

from functools import cached_property

import numpy as np
import pandas as pd

from adsim.world.config import DEVICES, PLACEMENTS
from adsim.world.world import World

SECONDS_PER_DAY = 86_400
HOUR_WEIGHTS = np.array([2, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 7, 8, 7, 6, 6, 6, 7, 8, 9, 10, 10, 8, 5], dtype=float)
HOUR_WEIGHTS /= HOUR_WEIGHTS.sum()
SLOTS_PER_PLACEMENT = np.array([2, 1, 3])
"""Ad slots of a feed, video and article page."""
PLACEMENT_PROBS = np.array([0.5, 0.3, 0.2])
assert len(SLOTS_PER_PLACEMENT) == len(PLACEMENTS) and len(DEVICES) == 3


def sample_requests(world: World, day: int, rng: np.random.Generator) -> pd.DataFrame:
    """One day's requests in time order (no ids yet): every user arrives at a rate set by activity group."""
    users = world.users.table
    rates = np.asarray(world.config.activity_rates)[users["activity_group"].to_numpy() - 1]
    user = np.repeat(users["user_id"].to_numpy(), rng.poisson(rates))
    n = len(user)
    ts = day * SECONDS_PER_DAY + rng.choice(24, size=n, p=HOUR_WEIGHTS) * 3600 + rng.integers(0, 3600, size=n)
    order = np.lexsort((user, ts))
    user, ts = user[order], ts[order]
    primary = users["primary_device"].to_numpy()[user]
    device = np.where(rng.random(n) < 0.9, primary, rng.integers(0, len(DEVICES), size=n))
    placement = rng.choice(len(PLACEMENTS), size=n, p=PLACEMENT_PROBS)
    return pd.DataFrame(
        {
            "user_id": user.astype(np.int64),
            "ts": ts.astype(np.int64),
            "day": np.full(n, day, dtype=np.int16),
            "hour": ((ts % SECONDS_PER_DAY) // 3600).astype(np.int8),
            "device": device.astype(np.int8),
            "placement": placement.astype(np.int8),
            "n_slots": SLOTS_PER_PLACEMENT[placement].astype(np.int8),
            "privacy": rng.random(n) < world.config.privacy_prob,
        }
    )


class OrganicSampler:
    """Organic items a user consumes: close to one of the user's current interests, so they reveal it."""

    def __init__(self, world: World, candidates_per_draw: int = 4):
        self.world = world
        self.candidates_per_draw = candidates_per_draw

    @cached_property
    def _by_topic(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        topic = self.world.organic.topic
        order = np.argsort(topic, kind="stable")
        counts = np.bincount(topic, minlength=self.world.config.n_topics)
        return order, np.concatenate([[0], np.cumsum(counts)[:-1]]), counts

    def sample(self, requests: pd.DataFrame, request_ids: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
        world, cfg = self.world, self.world.config
        per_request = rng.poisson(cfg.organic_per_request, size=len(requests))
        rows = np.repeat(np.arange(len(requests)), per_request)
        user = requests["user_id"].to_numpy()[rows]
        day = requests["day"].to_numpy()[rows].astype(np.int64)
        weights = world.users.interest_weights[day, user]  # (E, K)
        cumulative = weights.cumsum(axis=1)
        slot = (rng.random(len(rows))[:, None] > cumulative).sum(axis=1).clip(max=weights.shape[1] - 1)
        interest = world.users.interests[day, user, slot]  # (E, D)
        topic = np.argmax(interest @ world.topic_centroids.T, axis=1)

        order, start, count = self._by_topic
        picks = start[topic][:, None] + (rng.random((len(rows), self.candidates_per_draw)) * count[topic][:, None])
        candidates = order[picks.astype(np.int64)]  # (E, C)
        cos = np.einsum("ed,ecd->ec", interest, world.organic.embeddings[candidates])
        best = cos.argmax(axis=1)
        item = candidates[np.arange(len(rows)), best]
        affinity = cos[np.arange(len(rows)), best]
        # consumed in the minutes before the request, never before the day starts (days are written in order)
        ts = np.maximum(requests["ts"].to_numpy()[rows] - rng.integers(1, 900, size=len(rows)), day * SECONDS_PER_DAY)
        events = pd.DataFrame(
            {
                "user_id": user.astype(np.int64),
                "item_id": item.astype(np.int64),
                "ts": ts.astype(np.int64),
                "request_id": request_ids[rows].astype(np.int64),
                "dwell_s": (10.0 * np.exp(1.5 * affinity + rng.normal(0.0, 0.5, size=len(rows)))).astype(np.float32),
            }
        )
        return events.sort_values(["ts", "request_id"], kind="stable", ignore_index=True)
