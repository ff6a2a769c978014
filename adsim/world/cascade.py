"""The logging policy: a retrieval -> pre-ranking -> ranking -> GSP auction cascade.

It is the production system the generative policy replaces, with its blind spots on purpose: retrieval reads
fixed per-topic lists ordered by a historical prior, so most of the inventory is never shown. That exposure
bias is what RL in the simulator is for.

Exploration: each slot shows, with probability ``exploration_eps``, a uniformly random pre-ranked eligible
candidate outside the greedy winners instead of its greedy winner (only when there are at least
``MAX_SLOTS`` such alternatives, so explored slots never collide). The recorded propensity of a shown ad at
its slot is ``1 - eps`` for a greedy winner and ``eps / n_alternatives`` for an explored one.

Pricing (GSP): slot ``j`` pays the next ranked eCPM estimate (or the reserve); an explored ad pays
``min(own eCPM, reserve)``. CPM ads are charged per impression ``price / 1000``; every other goal is charged
per click ``price / (1000 * estimated pCTR)``, which never exceeds the bid-implied eCPM.

Budgets: an ad is eligible while its spend today is below its daily budget, checked between chunks of requests.
Within a chunk an ad may go on being shown past its budget (over-delivery), but, as ad platforms bill, it is never
charged more than its budget: the charge that crosses it is cut to what was left, later ones in the chunk are free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from adsim.world.config import GOALS
from adsim.world.rng import stream
from adsim.world.world import World, soft_match

MAX_SLOTS = 3
PRIOR_RATE = {"CPM": 1e-3, "CPC": 0.03, "oCPC": 0.003, "oCPA": 0.003, "oCPI": 0.003}
"""Goal-level rates the prior uses to put bids on one eCPM scale (bid x rate x 1000)."""
_USES_PCVR = np.array([False, False, True, True, True])


def capped_charges(ad: np.ndarray, cost: np.ndarray, left: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Charges in impression order with each ad's total cut at ``left[ad]`` (what its budget still allows).

    Returns the charges and a mask of the impressions whose charge was cut (the one that reached the budget and
    every later one of that ad). Uncut charges are returned unchanged, bit for bit.
    """
    order = np.lexsort((np.arange(len(ad)), ad))  # by ad, impression order within an ad
    a, c = ad[order], cost[order]
    total = np.cumsum(c)
    first = np.r_[True, a[1:] != a[:-1]]
    before = total - c - np.maximum.accumulate(np.where(first, total - c, 0.0))  # the ad's charges before this one
    room = np.maximum(left[a] - before, 0.0)
    cut = c > room
    charged, was_cut = np.empty_like(cost), np.empty(len(ad), dtype=bool)
    charged[order], was_cut[order] = np.where(cut, room, c), cut
    return charged, was_cut


def estimated_ecpm(goal_idx: np.ndarray, bid: np.ndarray, pctr: np.ndarray, pcvr: np.ndarray) -> np.ndarray:
    """eCPM by goal: CPM -> bid; CPC -> bid*pCTR*1000; oCPC/oCPA/oCPI -> bid*pCTR*pCVR*1000.

    oCPC ("optimised CPC") bids a target cost per conversion and is billed per click: it ranks like oCPA.
    """
    rate = np.where(goal_idx == 0, 1e-3, pctr * np.where(_USES_PCVR[goal_idx], pcvr, 1.0))
    return bid * rate * 1000.0


@dataclass
class CascadeState:
    """What the logging system knows during one day: the retrieval lists and the spend so far."""

    topic_lists: np.ndarray  # (n_topics, M) ad ids
    spend: np.ndarray  # (n_ads,) spend today


class LoggingPolicy:
    """The cascade over one world. ``retrieval_lists`` and ``start_day`` open a day; ``serve`` handles a chunk.

    Args:
        world: the world, or one user shard of it (``adsim.world.logs.shard_world``).
        seed: seeds the ranker's historical prior (the same for every shard).
        budget_share: the part of every ad's daily budget this policy may spend: 1 for the whole marketplace,
            the shard's share of the expected requests when users are served in shards.
    """

    def __init__(self, world: World, seed: int, budget_share: float = 1.0):
        if not 0.0 < budget_share <= 1.0:
            raise ValueError(f"budget_share must be in (0, 1], got {budget_share}")
        self.world = world
        self.seed = seed
        ads = world.ads.table
        self.goal_idx = ads["goal"].cat.codes.to_numpy().astype(np.int64)
        self.bid = ads["bid"].to_numpy()
        self.budget = ads["daily_budget"].to_numpy() * budget_share
        self.created_day = ads["created_day"].to_numpy()
        self.age_mask = ads["target_age_mask"].to_numpy().astype(np.int64)
        self.gender_mask = ads["target_gender_mask"].to_numpy().astype(np.int64)
        self.region_mask = ads["target_region_mask"].to_numpy()
        self.per_conversion = np.isin(ads["goal"].to_numpy(), ["oCPA", "oCPI"])
        self.conversion_value = ads["conversion_value"].to_numpy()
        rates = np.array([PRIOR_RATE[g] for g in GOALS])[self.goal_idx]
        history = stream(seed, "logging_prior").normal(0.0, 0.8, size=len(ads))
        self.log_prior = np.log(self.bid * rates * 1000.0) + history

    def _bill(self, ad: np.ndarray, cost: np.ndarray, spend: np.ndarray) -> np.ndarray:
        """Charge a chunk's impressions (in order) to ``spend``, never beyond the budget (see the module doc)."""
        cost, cut = capped_charges(ad, cost, self.budget - spend)
        np.add.at(spend, ad, cost)
        spend[ad[cut]] = self.budget[ad[cut]]  # exactly exhausted, whatever the rounding of the sum
        return cost

    def retrieval_lists(self, day: int, rng: np.random.Generator) -> np.ndarray:
        """(n_topics, M) ad ids: each topic's fixed list for ``day``, from the live ads by affinity and prior."""
        cfg = self.world.config
        live = np.flatnonzero(self.created_day <= day)
        affinity = self.world.topic_centroids @ self.world.ads.embeddings[live].T  # (T, n_live)
        score = 4.0 * affinity + self.log_prior[live] + rng.normal(0.0, 0.2, size=len(live))
        m = min(cfg.retrieval_per_topic, len(live))
        top = np.argpartition(-score, m - 1, axis=1)[:, :m]
        return live[top]

    def start_day(self, topic_lists: np.ndarray) -> CascadeState:
        """The state of a day that uses ``topic_lists`` (``retrieval_lists``): nothing spent yet."""
        return CascadeState(topic_lists=topic_lists, spend=np.zeros(len(self.bid)))

    def serve(self, requests: pd.DataFrame, state: CascadeState, rng: np.random.Generator) -> pd.DataFrame:
        """Run the cascade and the auction for a chunk of requests; returns one row per impression."""
        world, cfg = self.world, self.world.config
        n = len(requests)
        user = requests["user_id"].to_numpy()
        day = requests["day"].to_numpy().astype(np.int64)
        vecs = world.users.interests[day, user]  # (n, K, D)
        weights = world.users.interest_weights[day, user]  # (n, K)

        # ---- retrieval: a few topics from a noisy read of the user's interests, then their fixed lists
        topic_affinity = np.einsum("nkd,td,nk->nt", vecs, world.topic_centroids, weights)
        noisy = 5.0 * topic_affinity + rng.gumbel(size=topic_affinity.shape)
        topics = np.argpartition(-noisy, cfg.retrieval_topics - 1, axis=1)[:, : cfg.retrieval_topics]
        cand = np.sort(state.topic_lists[topics].reshape(n, cfg.retrieval_topics * state.topic_lists.shape[1]), axis=1)
        duplicate = np.zeros(cand.shape, dtype=bool)
        duplicate[:, 1:] = cand[:, 1:] == cand[:, :-1]

        # ---- eligibility: targeting, budget
        profile = world.users.table
        age = profile["age_bucket"].to_numpy()[user].astype(np.int64)[:, None]
        gender = profile["gender"].to_numpy()[user].astype(np.int64)[:, None]
        region = profile["region"].to_numpy()[user].astype(np.int64)[:, None]
        eligible = (
            ~duplicate
            & ((self.age_mask[cand] >> age) & 1).astype(bool)
            & ((self.gender_mask[cand] >> gender) & 1).astype(bool)
            & ((self.region_mask[cand] >> region) & 1).astype(bool)
            & (state.spend[cand] < self.budget[cand])
        )

        # ---- pre-ranking: prior plus a noisy, cheap user-ad match
        user_vec = np.einsum("nkd,nk->nd", vecs, weights)
        user_vec += rng.normal(0.0, 0.3 / np.sqrt(user_vec.shape[1]), size=user_vec.shape)
        pre = self.log_prior[cand] + 3.0 * np.einsum("nd,nrd->nr", user_vec, world.ads.embeddings[cand])
        pre = np.where(eligible, pre, -np.inf)
        p = min(cfg.preranking_size, cand.shape[1])
        keep = np.argpartition(-pre, p - 1, axis=1)[:, :p]
        shortlist = np.take_along_axis(cand, keep, axis=1)  # (n, P)
        valid = np.isfinite(np.take_along_axis(pre, keep, axis=1))

        # ---- ranking: a noisy estimate of the true eCPM
        cos = np.einsum("nkd,npd->npk", vecs, world.ads.embeddings[shortlist])
        match = soft_match(cos, weights[:, None, :])  # (n, P)
        ctx = {k: requests[k].to_numpy()[:, None] for k in ("hour", "device", "placement")}
        users2d = user[:, None]
        true_ctr0 = world.pctr_from_match(match, users2d, shortlist, ctx["hour"], ctx["device"], ctx["placement"], 0)
        true_cvr = world.pcvr_from_match(match, users2d, shortlist, ctx["device"])
        sigma = cfg.ecpm_noise
        est_ctr = true_ctr0 * np.exp(rng.normal(-sigma**2 / 2, sigma, size=match.shape))
        est_cvr = np.minimum(true_cvr * np.exp(rng.normal(-sigma**2 / 2, sigma, size=match.shape)), 1.0)
        ecpm = np.where(valid, estimated_ecpm(self.goal_idx[shortlist], self.bid[shortlist], est_ctr, est_cvr),
                        -np.inf)
        rank = np.argsort(-ecpm, axis=1, kind="stable")
        ecpm_sorted = np.take_along_axis(ecpm, rank, axis=1)
        n_valid = np.isfinite(ecpm_sorted).sum(axis=1)
        n_slots = requests["n_slots"].to_numpy().astype(np.int64)

        # ---- auction with exploration, slot by slot
        eps = cfg.exploration_eps
        n_alt = np.maximum(n_valid - n_slots, 0)
        base = np.floor(rng.random(n) * np.maximum(n_alt, 1)).astype(np.int64)
        padded = np.concatenate([ecpm_sorted, np.full((n, 1), -np.inf)], axis=1)
        rows = []
        for j in range(MAX_SLOTS):
            greedy = (j < n_slots) & (j < n_valid) & (ecpm_sorted[:, min(j, p - 1)] >= cfg.reserve_ecpm)
            explore = greedy & (n_alt >= MAX_SLOTS) & (rng.random(n) < eps)
            pick_rank = np.where(explore, n_slots + (base + j) % np.maximum(n_alt, 1), j)
            pick_rank = np.minimum(pick_rank, p - 1)
            next_ecpm = padded[np.arange(n), np.minimum(j + 1, p)]
            own_ecpm = ecpm_sorted[np.arange(n), pick_rank]
            price = np.where(explore, np.minimum(own_ecpm, cfg.reserve_ecpm), np.maximum(next_ecpm, cfg.reserve_ecpm))
            propensity = np.where(explore, eps / np.maximum(n_alt, 1), np.where(n_alt >= MAX_SLOTS, 1 - eps, 1.0))
            slot_col = rank[np.arange(n), pick_rank]
            r = np.flatnonzero(greedy)
            rows.append((r, np.full(len(r), j), slot_col[r], price[r], propensity[r], own_ecpm[r]))

        r, pos, col, price, propensity, own_ecpm = (np.concatenate(x) for x in zip(*rows, strict=True))
        order = np.lexsort((pos, r))
        r, pos, col, price, propensity, own_ecpm = (x[order] for x in (r, pos, col, price, propensity, own_ecpm))
        ad = shortlist[r, col]

        # ---- outcomes under the truth at the slot actually shown
        ctr = world.pctr_from_match(match[r, col], user[r], ad, ctx["hour"][r, 0], ctx["device"][r, 0],
                                    ctx["placement"][r, 0], pos)
        click = rng.random(len(r)) < ctr
        conversion = click & (rng.random(len(r)) < true_cvr[r, col])
        per_click = price / (1000.0 * est_ctr[r, col])
        cost = np.where(self.goal_idx[ad] == 0, price / 1000.0, click * per_click)
        gmv = np.where(conversion & self.per_conversion[ad],
                       self.conversion_value[ad] * np.exp(rng.normal(0.0, 0.3, size=len(r))), 0.0)
        cost = self._bill(ad, cost, state.spend)
        return pd.DataFrame(
            {
                "request_row": r,
                "ad_id": ad.astype(np.int64),
                "position": pos.astype(np.int8),
                "propensity": propensity.astype(np.float64),
                "ranking_ecpm": own_ecpm.astype(np.float64),
                "click": click,
                "conversion": conversion,
                "cost": cost.astype(np.float64),
                "gmv": gmv.astype(np.float64),
            }
        )
