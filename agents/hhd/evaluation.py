"""Offline next-ad evaluation on held-out logs: HR@K, NDCG@K and UniVA's value-weighted ValueHR@K / wNDCG@K.

A recommender maps sample indices to K ranked SID paths per request. A hit is the target ad's full path among them
(paths, not ads, are what a generative model emits; on ``small`` 8,000 ads lie on 7,863 paths). HR and NDCG use a
random sample of held-out impressions; ValueHR@K = sum(gmv * hit) / sum(gmv) and wNDCG@K (weights log10(1 + gmv))
use held-out conversions, the "next-conversion set".

Personalised inventory: a request may receive the ads its targeting and the ads' liveness allow
(``adsim.simulator.eligibility``). The logged budgets are left out by default (``budget_filter=False``): some
logged impressions (6 % on ``small``, generator version 2) come after the moment ``Eligibility`` considers the ad's
budget spent (the world checks budgets once per chunk of requests), so filtering on them would make those targets
unreachable for every model alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from adsim.data.bundle import Scenario
from adsim.simulator.eligibility import Eligibility
from adsim.trie import SidTrie
from agents.hhd.decoding import BeamConfig, TorchTrie, beam_search
from agents.hhd.model import HHD
from agents.hhd.sequences import Sequences

Recommender = Callable[[np.ndarray], np.ndarray]
"""Sample indices (B,) -> (B, K, L) ranked SID paths (-1 rows for empty slots)."""
AllowedFn = Callable[[np.ndarray], np.ndarray | None]
"""Sample indices (B,) -> (B, n_items) bool personalised inventory, or None (everything allowed)."""


@dataclass
class EvalConfig:
    ks: tuple[int, ...] = (10, 50, 100)
    n_requests: int = 2000
    """Held-out impressions sampled for HR / NDCG."""
    n_value: int = 500
    """Held-out conversions sampled for ValueHR / wNDCG (0 skips them)."""
    split: str = "test"
    budget_filter: bool = False
    """Also drop ads whose logged budget was spent before the request (see the module docstring)."""
    batch_size: int = 128
    seed: int = 0


def target_ranks(trie: SidTrie, candidates: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(B, K, L) ranked paths and (B, L) targets -> (B,) 0-based rank of the target's path, -1 if absent."""
    leaf = trie.walk(candidates)  # (B, K)
    target = trie.walk(targets)  # (B,)
    hit = (leaf == target[:, None]) & (leaf >= 0)
    return np.where(hit.any(axis=1), hit.argmax(axis=1), -1)


def ranking_metrics(ranks: np.ndarray, ks: tuple[int, ...], gmv: np.ndarray | None = None) -> dict[str, float]:
    """HR@K and NDCG@K (one relevant item); with ``gmv``, ValueHR@K and wNDCG@K over the same rows."""
    out = {}
    for k in ks:
        hit = (ranks >= 0) & (ranks < k)
        ndcg = np.where(hit, 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0)
        if gmv is None:
            out[f"HR@{k}"], out[f"NDCG@{k}"] = float(hit.mean()), float(ndcg.mean())
        else:
            w = np.log10(1.0 + gmv)
            out[f"ValueHR@{k}"] = float((gmv * hit).sum() / gmv.sum())
            out[f"wNDCG@{k}"] = float((w * ndcg).sum() / w.sum())
    return out


def eval_indices(seqs: Sequences, config: EvalConfig) -> tuple[np.ndarray, np.ndarray]:
    """Seeded samples of the held-out split: impressions for HR/NDCG, conversions (gmv > 0) for the value metrics."""
    rng = np.random.default_rng(config.seed)
    pool = seqs.indices(config.split)
    conv = pool[seqs.samples["gmv"][pool] > 0]
    pick = np.sort(rng.choice(pool, size=min(config.n_requests, len(pool)), replace=False))
    value = np.sort(rng.choice(conv, size=min(config.n_value, len(conv)), replace=False))
    return pick, value


def scenario_allowed(scenario: Scenario, seqs: Sequences, budget_filter: bool = False) -> AllowedFn:
    """The personalised inventory of each sample's request (targeting + liveness, and budgets if asked)."""
    eligibility = Eligibility(scenario)

    def allowed(idx: np.ndarray) -> np.ndarray:
        s = seqs.samples
        day = s["day"][idx].astype(np.int64)
        ts = s["ts"][idx] if budget_filter else day * 86_400  # at the day's start every budget is unspent
        return eligibility.allowed(s["user_id"][idx], day, ts)

    return allowed


def everything_allowed(idx: np.ndarray) -> None:
    return None


class Popularity:
    """The most logged paths among those the request may receive."""

    def __init__(self, trie: SidTrie, item_counts: np.ndarray):
        self.trie = trie
        leaf = trie.levels[-1]
        sums = np.concatenate([[0], np.cumsum(np.asarray(item_counts, dtype=np.float64)[trie.order])])
        self.path_counts = sums[leaf.end] - sums[leaf.start]  # (P,)
        self.path_codes = trie.sorted_codes[leaf.start]  # (P, L)

    @classmethod
    def fit(cls, trie: SidTrie, seqs: Sequences, train_idx: np.ndarray) -> Popularity:
        return cls(trie, np.bincount(seqs.samples["ad_id"][train_idx], minlength=trie.n_items))

    def recommend(self, allowed: np.ndarray | None, k: int) -> np.ndarray:
        """(B, n_items) allowed (or None) -> (B, k, L) paths, most popular first (ties: path order)."""
        leaf = self.trie.levels[-1]
        score = np.broadcast_to(self.path_counts, (1 if allowed is None else len(allowed), len(leaf.start)))
        if allowed is not None:
            sums = self.trie.allowed_prefix_sums(allowed)
            score = np.where(sums[:, leaf.end] - sums[:, leaf.start] > 0, score, -np.inf)
        top = np.argsort(-score, axis=1, kind="stable")[:, :k]  # (B, k)
        ok = np.take_along_axis(score, top, 1) > -np.inf
        return np.where(ok[..., None], self.path_codes[top], -1)

    def recommender(self, allowed: AllowedFn, k: int) -> Recommender:
        def recommend(idx: np.ndarray) -> np.ndarray:
            paths = self.recommend(allowed(idx), k)
            return np.broadcast_to(paths, (len(idx),) + paths.shape[1:])

        return recommend


def model_recommender(model: HHD, seqs: Sequences, trie: SidTrie, allowed: AllowedFn, beam: BeamConfig,
                      device: str | torch.device = "cpu") -> Recommender:
    """Trie-constrained beam search of ``model`` under each request's personalised trie."""
    tensors = TorchTrie(trie, device)

    def recommend(idx: np.ndarray) -> np.ndarray:
        model.eval()
        return beam_search(model, seqs.batch(idx).to(device), tensors.legal(allowed(idx)), beam).paths

    return recommend


def evaluate(recommend: Recommender, seqs: Sequences, trie: SidTrie, idx: np.ndarray, value_idx: np.ndarray,
             config: EvalConfig) -> dict[str, float]:
    """All metrics of one recommender on the given held-out samples."""

    def ranks(rows: np.ndarray) -> np.ndarray:
        out = [target_ranks(trie, recommend(chunk), seqs.item_codes[seqs.samples["ad_id"][chunk]])
               for chunk in np.array_split(rows, max(1, -(-len(rows) // config.batch_size)))]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    metrics = ranking_metrics(ranks(idx), config.ks)
    if len(value_idx):
        metrics |= ranking_metrics(ranks(value_idx), config.ks, seqs.samples["gmv"][value_idx])
    return metrics
