"""A batch of requests seen through their personalised tries: legal masks, random legal paths, observations.

The one place agents turn (request, SID prefix) pairs into what the env would show: the MCTS search, the random
baseline, greedy decoding of a trained policy and PriorValueFn adapters all read from here, so their notion of a
legal code is the env's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from adsim.simulator.requests import RequestBatch, take
from adsim.simulator.simulator import Simulator
from envs.context import SimulatorContext


class RequestTries:
    """B requests with their eligibility: ``allowed`` (B, n_ads) and its trie prefix sums (B, n_ads + 1)."""

    def __init__(self, simulator: Simulator, requests: RequestBatch, allowed: np.ndarray | None = None):
        self.simulator, self.trie = simulator, simulator.trie
        self.requests = {k: np.asarray(v) for k, v in requests.items()}
        self.allowed = simulator.allowed(self.requests) if allowed is None else np.asarray(allowed, dtype=bool)
        self.sums = self.trie.allowed_prefix_sums(self.allowed)

    def __len__(self) -> int:
        return len(self.allowed)

    @property
    def depth(self) -> int:
        return self.trie.depth

    @property
    def width(self) -> int:
        return self.trie.width

    def take(self, rows: np.ndarray) -> RequestTries:
        out = object.__new__(RequestTries)
        out.simulator, out.trie = self.simulator, self.trie
        out.requests, out.allowed, out.sums = take(self.requests, rows), self.allowed[rows], self.sums[rows]
        return out

    def legal_mask(self, prefixes: np.ndarray) -> np.ndarray:
        """(B, W) codes that keep each (B, d) prefix on a path to an allowed ad (d < L); as the env's mask."""
        return self.trie.legal_mask(prefixes, self.sums)

    def node_allowed(self, depth: int) -> np.ndarray:
        """(B, n_nodes at ``depth``) bool: the trie node's range holds at least one allowed ad."""
        level = self.trie.levels[depth]
        return (self.sums[:, level.end] - self.sums[:, level.start]) > 0

    def has_legal_ad(self) -> np.ndarray:
        """(B,) whether the request may see any ad at all (an empty trie ends no episode well)."""
        return self.allowed.any(axis=1)


def random_legal_paths(tries: RequestTries, rng: np.random.Generator, k: int = 1) -> np.ndarray:
    """(B, K, L) paths chosen code by code uniformly among the legal codes (the env's random legal policy).

    A request with no legal code at some level gets -1 from there on (its paths are invalid and score zero).
    """
    b = len(tries)
    flat = tries.take(np.repeat(np.arange(b), k))
    paths = np.full((b * k, tries.depth), -1, dtype=np.int64)
    for d in range(tries.depth):
        mask = flat.legal_mask(paths[:, :d])
        paths[:, d] = sample_masked(mask.astype(np.float64), rng)
    return paths.reshape(b, k, tries.depth)


def sample_masked(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row drawn in proportion to non-negative ``weights`` (B, W); -1 for an all-zero row."""
    total = weights.sum(axis=1)
    cdf = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * total
    choice = (cdf <= u[:, None]).sum(axis=1)
    return np.where(total > 0, np.minimum(choice, weights.shape[1] - 1), -1)


def decode(tries: RequestTries, logits_fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
           rng: np.random.Generator | None = None) -> np.ndarray:
    """(B, L) paths built level by level from ``logits_fn(prefixes (B, L) with -1, mask (B, W)) -> (B, W)``.

    Greedy (argmax over legal codes) without ``rng``, sampled from the masked softmax with it.
    """
    b, depth = len(tries), tries.depth
    paths = np.full((b, depth), -1, dtype=np.int64)
    for d in range(depth):
        mask = tries.legal_mask(paths[:, :d])
        logits = np.where(mask, np.asarray(logits_fn(paths.copy(), mask), dtype=np.float64), -np.inf)
        if rng is None:
            choice = logits.argmax(axis=1)
        else:
            z = np.exp(logits - np.where(mask.any(axis=1), logits.max(axis=1), 0.0)[:, None])
            choice = sample_masked(np.nan_to_num(z), rng)
        paths[:, d] = np.where(mask.any(axis=1), choice, -1)
    return paths


def observations(ctx: SimulatorContext, tries: RequestTries, prefixes: np.ndarray) -> dict[str, np.ndarray]:
    """AdSim-v0 observations (batched) of requests at (B, L) prefixes (-1 on open levels, at least one open)."""
    prefixes = np.asarray(prefixes, dtype=np.int64)
    level = (prefixes >= 0).sum(axis=1)
    if (level >= tries.depth).any():
        raise ValueError("observations() needs an open level in every prefix (a full path has no decision left)")
    mask = np.zeros((len(tries), tries.width), dtype=bool)
    for d in np.unique(level):
        rows = np.flatnonzero(level == d)
        mask[rows] = tries.take(rows).legal_mask(prefixes[rows, :d])
    return {**ctx.observations.build(tries.requests), "prefix": prefixes.copy(), "level": level[:, None],
            "action_mask": mask.astype(np.int8)}
