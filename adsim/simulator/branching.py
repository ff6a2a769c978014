"""How much choice a personalised trie leaves at each SID level: the share of decisions that are forced.

A level where the user's trie holds exactly one legal code is no decision: its log-probability has no gradient and
a terminal advantage placed there is lost. ``decision_branching`` walks random legal paths for a sample of logged
requests and counts the legal codes met at each level.
"""

from __future__ import annotations

import numpy as np

from adsim.data.bundle import Scenario
from adsim.sid.pipeline import bundle_sids
from adsim.simulator.eligibility import Eligibility
from adsim.trie import SidTrie


def decision_branching(scenario: Scenario, ad_codes: np.ndarray, codebook_sizes: tuple[int, ...],
                       n_requests: int = 300, seed: int = 0, split: str = "train") -> dict[str, list[float]]:
    """Median and 10th percentile of legal codes, and the forced share (exactly one legal code), per level, over
    uniformly random legal walks of ``n_requests`` logged requests of ``split``."""
    req = scenario.table("requests")
    rows = np.flatnonzero(req["split"].astype(str).to_numpy() == split)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(rows, size=min(n_requests, len(rows)), replace=False))
    allowed = Eligibility(scenario).allowed(req["user_id"].to_numpy()[rows], req["day"].to_numpy()[rows],
                                            req["ts"].to_numpy()[rows])
    trie = SidTrie(ad_codes, codebook_sizes)
    sums = trie.allowed_prefix_sums(allowed[:, trie.order])
    prefix = np.full((len(rows), trie.depth), -1, dtype=np.int64)
    legal_counts = np.zeros((len(rows), trie.depth), dtype=np.int64)
    for level in range(trie.depth):
        mask = trie.legal_mask(prefix[:, :level], sums)  # (B, W)
        legal_counts[:, level] = mask.sum(axis=1)
        # a uniform legal code per row: the k-th legal column, k uniform in [0, count)
        k = np.floor(rng.random(len(rows)) * np.maximum(legal_counts[:, level], 1)).astype(np.int64)
        prefix[:, level] = np.argmax(np.cumsum(mask, axis=1) > k[:, None], axis=1)
    walked = legal_counts[:, -1] > 0  # requests with at least one eligible ad
    counts = legal_counts[walked]
    return {
        "median_legal": np.median(counts, axis=0).tolist(),
        "p10_legal": np.percentile(counts, 10, axis=0).tolist(),
        "forced_share": np.round((counts == 1).mean(axis=0), 4).tolist(),
        "requests": int(walked.sum()),
    }


def branching_step(root, scenario: Scenario, progress: bool) -> dict:
    """Build step after the SIDs: record ``decision_branching`` of the bundle's SIDs in the manifest."""
    sids = bundle_sids(scenario)
    return decision_branching(scenario, sids.ad_codes, tuple(sids.tokenizer.codebook_sizes))
