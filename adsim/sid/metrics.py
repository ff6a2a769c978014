"""SID quality metrics: GPR Table 1 (collision, code usage, path average similarity) and UniVA section 4.4 (per-path
bid dispersion, weighted entropy H and vocabulary V of the Commercial SID). ``codes`` is always ``(N, L) int``,
one row per distinct item.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from adsim.errors import AdSimDataError
from adsim.sid.path_index import group_paths


def collision_rate(codes: np.ndarray) -> float:
    """Share of items that do not get a path of their own.

    ``collision = sum_c (count(c) - 1) / N = 1 - P / N``, with count(c) the items on full path c, P the number of
    distinct paths and N the number of items. 0 = every item has its own path.
    """
    paths, _, _ = group_paths(codes)
    return 1.0 - paths.shape[0] / len(codes)


def code_usage_rate(codes: np.ndarray, codebook_sizes: tuple[int, ...]) -> np.ndarray:
    """CUR per level: ``CUR_l = |{codes used at level l}| / K_l``, shape ``(L,)`` in [0, 1]."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] != len(codebook_sizes):
        raise ValueError(f"codes must be (N, {len(codebook_sizes)}) to match codebook_sizes, got {codes.shape}")
    return np.array([np.unique(codes[:, level]).size / k for level, k in enumerate(codebook_sizes)])


def path_average_similarity(codes: np.ndarray, embeddings: np.ndarray) -> float:
    """PAS: mean pairwise cosine similarity of items sharing a full path, averaged over paths with >= 2 items.

    ``PAS = 1/|C2| sum_{c in C2} 1/(n_c (n_c - 1)) sum_{i != j in c} cos(e_i, e_j)``, C2 = paths with n_c >= 2.
    With unit vectors u, the inner sum is ``||sum_i u_i||^2 - n_c``, so no pair is enumerated. NaN if no path is
    shared.
    """
    e = np.asarray(embeddings, dtype=np.float64)
    if e.ndim != 2 or e.shape[0] != len(codes):
        raise ValueError(f"embeddings must be (N, D) with N = len(codes) = {len(codes)}, got {e.shape}")
    norms = np.linalg.norm(e, axis=1)
    if (zero := np.flatnonzero(norms == 0)).size:
        raise AdSimDataError("cosine similarity is undefined for zero embeddings", rows=zero)
    _, inverse, counts = group_paths(codes)
    sums = np.zeros((counts.size, e.shape[1]))
    np.add.at(sums, inverse, e / norms[:, None])
    shared = counts >= 2
    if not shared.any():
        return float("nan")
    n = counts[shared]
    return float(np.mean(((sums[shared] ** 2).sum(axis=1) - n) / (n * (n - 1))))


@dataclass
class BidDispersion:
    """Per-path bid spread summarised over paths (UniVA Figure 3)."""

    std_mean: float
    std_p75: float
    std_p99: float
    range_mean: float
    range_p75: float
    range_p99: float
    n_paths: int
    """Paths with at least ``min_items`` ads, over which the statistics are taken."""


def bid_dispersion(codes: np.ndarray, bids: np.ndarray, min_items: int = 2) -> BidDispersion:
    """Spread of bids among the ads sharing a full path.

    Per path c with n_c >= ``min_items`` ads: ``std_c = sqrt(1/n_c sum_i (b_i - mean_c)^2)`` and
    ``range_c = max_i b_i - min_i b_i``; reported as mean, 75th and 99th percentile over those paths. Paths with
    one ad are left out by default: their spread is 0 by construction and would reward collision-free codes rather
    than commercially coherent ones. NaN statistics if no path qualifies.
    """
    bids = np.asarray(bids, dtype=np.float64)
    if bids.shape != (len(codes),):
        raise ValueError(f"bids must have shape ({len(codes)},) to match codes, got {bids.shape}")
    _, inverse, counts = group_paths(codes)
    mean = np.bincount(inverse, weights=bids, minlength=counts.size) / counts
    std = np.sqrt(np.bincount(inverse, weights=(bids - mean[inverse]) ** 2, minlength=counts.size) / counts)
    high = np.full(counts.size, -np.inf)
    low = np.full(counts.size, np.inf)
    np.maximum.at(high, inverse, bids)
    np.minimum.at(low, inverse, bids)
    keep = counts >= min_items
    if not keep.any():
        nan = float("nan")
        return BidDispersion(nan, nan, nan, nan, nan, nan, 0)
    std, spread = std[keep], (high - low)[keep]
    return BidDispersion(
        std_mean=float(std.mean()), std_p75=float(np.percentile(std, 75)), std_p99=float(np.percentile(std, 99)),
        range_mean=float(spread.mean()), range_p75=float(np.percentile(spread, 75)),
        range_p99=float(np.percentile(spread, 99)), n_paths=int(keep.sum()))


def weighted_entropy(groups: np.ndarray, tokens: np.ndarray) -> float:
    """UniVA eq. (5) in bits: ``H = sum_k w_k H_k``, ``H_k = -sum_j p_j^(k) log2 p_j^(k)``.

    ``w_k`` is the share of items in group (composition key) k and ``p_j^(k)`` the share of group k's items with
    token j; i.e. the conditional entropy H(token | key). Higher = bids spread more evenly over each key's bins.
    """
    group_ids = pd.factorize(np.asarray(groups, dtype=object))[0]
    tokens = np.asarray(tokens, dtype=np.int64)
    if group_ids.shape != tokens.shape:
        raise ValueError(f"groups and tokens must have the same length, got {group_ids.shape} and {tokens.shape}")
    pairs, joint = np.unique(np.stack([group_ids, tokens]), axis=1, return_counts=True)
    in_group = np.bincount(group_ids)[pairs[0]]  # n_k of each (key, token) pair's key
    return float(-(joint / tokens.size * np.log2(joint / in_group)).sum())


def vocabulary_used(tokens: np.ndarray) -> int:
    """V: distinct tokens actually used (UniVA reports V against the budget, e.g. 1939 of 2048)."""
    return int(np.unique(np.asarray(tokens)).size)
