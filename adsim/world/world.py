"""The ground-truth world: entities plus the true click and conversion probabilities.

``World(config, seed)`` regenerates everything hidden from the logs (interest vectors, creative quality), so
any later number (reward-model error, policy value, simulator fidelity) can be checked against the truth.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from adsim.world.config import WorldConfig, preset
from adsim.world.entities import Ads, Organic, Users, make_ads, make_organic, make_topics, make_users

MATCH_TEMPERATURE = 6.0
POSITION_LOGIT = np.array([0.0, -0.35, -0.65, -0.9])
DEVICE_LOGIT = np.array([0.0, 0.1, -0.3])
PLACEMENT_LOGIT = np.array([0.0, 0.25, -0.2])
GOAL_CVR_LOGIT = np.array([-0.3, -0.2, 0.0, 0.3, 0.5])
"""Conversion logit by goal (CPM, CPC, oCPC, oCPA, oCPI): per-conversion goals optimise for it."""


def hour_logit(hour: np.ndarray) -> np.ndarray:
    """Evenings click more, nights less."""
    return 0.15 * np.sin((np.asarray(hour) - 14.0) / 24.0 * 2 * np.pi)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class World:
    """Seeded synthetic ad marketplace with known truth. Cheap to rebuild: the logs are the expensive part."""

    def __init__(self, config: WorldConfig | str = "small", seed: int = 0):
        self.config = preset(config) if isinstance(config, str) else config
        self.seed = int(seed)
        self.topic_centroids, self.topic_popularity = make_topics(self.config, self.seed)

    @cached_property
    def users(self) -> Users:
        return make_users(self.config, self.seed, self.topic_centroids, self.topic_popularity)

    @cached_property
    def ads(self) -> Ads:
        return make_ads(self.config, self.seed, self.topic_centroids, self.topic_popularity)

    @cached_property
    def organic(self) -> Organic:
        return make_organic(self.config, self.seed, self.topic_centroids, self.topic_popularity)

    @cached_property
    def _goal_index(self) -> np.ndarray:
        return self.ads.table["goal"].cat.codes.to_numpy().astype(np.int64)

    # ------------------------------------------------------------------ truth
    def interest_match(self, user_ids, ad_ids, day) -> np.ndarray:
        """Soft maximum over the user's interests of their cosine with the ad, on that day. Broadcasts."""
        user_ids, ad_ids, day = np.broadcast_arrays(*(np.asarray(a, dtype=np.int64) for a in (user_ids, ad_ids, day)))
        vecs = self.users.interests[day.ravel(), user_ids.ravel()]  # (P, K, D)
        weights = self.users.interest_weights[day.ravel(), user_ids.ravel()]  # (P, K)
        emb = self.ads.embeddings[ad_ids.ravel()]  # (P, D)
        cos = np.einsum("pkd,pd->pk", vecs, emb)
        return soft_match(cos, weights).reshape(user_ids.shape)

    def true_pctr(self, user_ids, ad_ids, day, hour, device, placement, position) -> np.ndarray:
        """True click probability of showing ``ad`` to ``user`` in that context. All arguments broadcast."""
        match = self.interest_match(user_ids, ad_ids, day)
        return self.pctr_from_match(match, user_ids, ad_ids, hour, device, placement, position)

    def true_pcvr(self, user_ids, ad_ids, day, device=0) -> np.ndarray:
        """True conversion probability given a click."""
        match = self.interest_match(user_ids, ad_ids, day)
        return self.pcvr_from_match(match, user_ids, ad_ids, device)

    def pctr_from_match(self, match, user_ids, ad_ids, hour, device, placement, position) -> np.ndarray:
        logit = (
            -5.45
            + 2.8 * match
            + self.ads.quality[ad_ids]
            + self.users.click_bias[user_ids]
            + POSITION_LOGIT[np.minimum(position, len(POSITION_LOGIT) - 1)]
            + DEVICE_LOGIT[device]
            + PLACEMENT_LOGIT[placement]
            + hour_logit(hour)
        )
        return _sigmoid(logit)

    def pcvr_from_match(self, match, user_ids, ad_ids, device=0) -> np.ndarray:
        logit = (
            -3.25
            + 1.4 * match
            + self.ads.convert_quality[ad_ids]
            + self.users.convert_bias[user_ids]
            + GOAL_CVR_LOGIT[self._goal_index[ad_ids]]
            - 0.2 * (np.asarray(device) == 2)
        )
        return _sigmoid(logit)


def soft_match(cos: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """log(sum_k w_k exp(T cos_k)) / T over the last axis: near the best-matching strong interest."""
    t = MATCH_TEMPERATURE
    top = cos.max(axis=-1, keepdims=True)
    return (top[..., 0] + np.log(np.maximum((weights * np.exp(t * (cos - top))).sum(axis=-1), 1e-12)) / t)

