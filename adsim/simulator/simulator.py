"""The batched simulator: resolve SID paths to ads under each request's personalised trie, and score them.

This is the fast path every trainer and the env use. A full path may carry several ads (SID collisions); the
simulator resolves it to the eligible ad with the highest eCPM predicted by the reward models on that path (the
ranking stack's own choice), under every reward source: ``reward_source="truth"`` scores that same ad with the
world's truth, it does not pick another. An invalid path (not in the trie, or no eligible ad on it) scores zero
and is flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal, NamedTuple

import numpy as np

from adsim.data.bundle import Scenario
from adsim.errors import AdSimError
from adsim.sid.path_index import PathIndex
from adsim.simulator import kernels
from adsim.simulator.eligibility import Eligibility
from adsim.simulator.history import ACTION_CLICK, EventIndex, ad_index
from adsim.simulator.kernels import Backend, EligibilityTables, ProcessTables
from adsim.simulator.requests import RequestBatch, take
from adsim.simulator.scoring import RewardSource, Scorer, Scores
from adsim.trie import SidTrie

__all__ = ["Evaluation", "Popularity", "ProcessRewardConfig", "RewardSource", "Scorer", "Scores", "Simulator",
           "zscore"]

SIMULATOR_VERSION = 2
"""Bumped when the simulator's dynamics or rewards change for the same bundle (results record it). v2: process
rewards read P_l under the path's prefix; truth scores the ad the reward models resolve."""

Popularity = Literal["prefix", "unconditional"]
POPULARITIES: tuple[Popularity, ...] = ("prefix", "unconditional")


_NO_PRICE = np.zeros(0)


class Evaluation(NamedTuple):
    """What ``Simulator.evaluate`` returns for (B, K) candidate paths."""

    ad_id: np.ndarray  # (B, K) resolved ad, -1 when invalid
    valid: np.ndarray  # (B, K) bool
    pctr: np.ndarray
    pcvr: np.ndarray
    ecpm: np.ndarray
    final_value: np.ndarray  # (B, K), 0 where invalid
    zscore: np.ndarray  # (B, K) final_value z-scored over each request's valid candidates
    won: np.ndarray | None = None
    """(B, K) bool where the scenario logs market prices (imported RTB auctions): the resolved ad's eCPM reached
    the request's market price. A lost auction is still valid, with final_value 0. None without market prices."""


@dataclass(frozen=True)
class ProcessRewardConfig:
    """HEPO's process rewards at the coarse levels (GPR): r_l = alpha_l * max(0, P_l(z_l) - mean_legal P_l).

    P_l(t | z_<l) is the share of the user's last ``history`` successful interactions (clicks, conversions) before
    the request whose ad carries token t at level l, among those whose ad shares the path's prefix z_<l: residual
    codes mean different things under different parents, so GPR's per-token popularity is read under the parent.
    A prefix none of the user's successes shares earns nothing. ``popularity="unconditional"`` counts every
    success (adsim before generator v5's process rewards).
    """

    alphas: tuple[float, ...] = (0.2, 0.1)
    history: int = 50
    popularity: Popularity = "prefix"

    def __post_init__(self):
        if self.popularity not in POPULARITIES:
            raise ValueError(f"popularity must be one of {POPULARITIES}, got {self.popularity!r}")


class Simulator:
    """Resolves and scores candidate SID paths for batches of requests."""

    MARKET_PRICE = "request_market_price"
    """Per-request market price (the price to beat, in eCPM units) of imported RTB logs, aligned with requests."""

    def __init__(self, scenario: Scenario, ad_codes: np.ndarray, codebook_sizes: tuple[int, ...],
                 scorer: Scorer, truth: Scorer | None = None, process: ProcessRewardConfig | None = None,
                 path_index: PathIndex | None = None):
        """``path_index``: the bundle's saved ``PathIndex`` of ``ad_codes`` (built from them when None)."""
        self.scenario = scenario
        self.trie = SidTrie(ad_codes, codebook_sizes, path_index)
        self.ad_codes = np.asarray(ad_codes, dtype=np.int64)
        self.eligibility = Eligibility(scenario)
        self.scorers: dict[str, Scorer | None] = {"model": scorer, "truth": truth}
        self.process = process or ProcessRewardConfig()
        self._successes: EventIndex | None = None
        self.calls = 0
        """Pairs scored so far (the simulator budget trainers spend)."""
        try:
            self.market_price: np.ndarray | None = np.asarray(scenario.array(self.MARKET_PRICE), dtype=np.float64)
        except AdSimError:  # no auction in this scenario
            self.market_price = None

    @property
    def depth(self) -> int:
        return self.trie.depth

    def scorer(self, source: RewardSource) -> Scorer:
        if source not in self.scorers:
            raise ValueError(f"reward_source must be 'model' or 'truth', got {source!r}")
        scorer = self.scorers[source]
        if scorer is None:
            raise AdSimError(f"this scenario has no {source!r} scorer (imported real logs have no ground truth)")
        return scorer

    def allowed(self, requests: RequestBatch, backend: Backend = "reference") -> np.ndarray:
        """(B, n_ads) eligibility of every ad for each request."""
        return self.eligibility.allowed(np.asarray(requests["user_id"]), np.asarray(requests["day"]),
                                        np.asarray(requests["ts"]), backend,
                                        self.eligibility_tables if backend == "compiled" else None)

    # ------------------------------------------------------------------------------------------ compiled tables
    @cached_property
    def eligibility_tables(self) -> EligibilityTables:
        """Eligibility for the kernels, ads in trie order (a node's ads are contiguous)."""
        return self.eligibility.tables(self.trie.order)

    @property
    def successes(self) -> EventIndex:
        """The users' logged clicks and conversions (built on first use), which process rewards read."""
        if self._successes is None:
            self._successes = ad_index(self.scenario, min_action=ACTION_CLICK)
        return self._successes

    @cached_property
    def process_tables(self) -> ProcessTables:
        alphas = np.array([self.process.alphas[d] if d < len(self.process.alphas) else 0.0
                           for d in range(self.depth - 1)], dtype=np.float64)
        return ProcessTables(self.successes.tables("ad_id"), self.ad_codes, alphas, self.process.history,
                             self.process.popularity == "prefix")

    @cached_property
    def _kernel_tables(self) -> tuple[tuple, tuple]:
        """Trie and eligibility tables as the kernels take them (``kernels.plain``)."""
        return kernels.plain(self.trie.tables), kernels.plain(self.eligibility_tables)

    def _request_keys(self, requests: RequestBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """user_id, day, ts as the kernels read them (any integer dtype: numba compiles one version per set)."""
        return tuple(np.asarray(requests[c]) for c in ("user_id", "day", "ts"))

    # ------------------------------------------------------------------------------------------ evaluate
    def evaluate(self, requests: RequestBatch, paths: np.ndarray, reward_source: RewardSource = "model",
                 allowed: np.ndarray | None = None, backend: Backend = "reference") -> Evaluation:
        """Score (B, K, L) candidate paths of B requests.

        With logged market prices (``arrays/request_market_price.npy``, e.g. iPinYou), an ad wins the request only
        if its eCPM reaches the request's market price; a lost auction is valid but pays final_value 0 (``won``).
        A synthetic request (negative id -1 - j) meets the market price of logged request j mod n.

        ``backend="compiled"`` resolves paths and picks the best pairs in kernels (the scorer is the same), reading
        eligibility per leaf ad instead of building ``allowed`` when it is None: the same Evaluation.
        """
        kernels.check_backend(backend)
        paths = np.asarray(paths)
        n = len(requests["user_id"])
        if paths.ndim != 3 or paths.shape[0] != n or paths.shape[2] != self.depth:
            raise ValueError(f"paths must be (n_requests={n}, K, L={self.depth}), got {paths.shape}")
        scorer = self.scorer(reward_source)
        if backend == "compiled":
            return self._evaluate_compiled(requests, paths, scorer, allowed)
        b, k, _ = paths.shape
        allowed = self.allowed(requests) if allowed is None else allowed
        node, start, end = self.trie.leaf_ranges(paths.reshape(b * k, -1))
        # every (candidate, ad on its leaf) pair, flattened
        counts = np.where(node >= 0, end - start, 0)
        cand = np.repeat(np.arange(b * k), counts)
        offset = np.arange(len(cand)) - np.repeat(np.cumsum(counts) - counts, counts)
        ads = self.trie.order[start[cand] + offset]
        ok = allowed[cand // k, ads]
        cand, ads = cand[ok], ads[ok]

        out = {name: np.zeros(b * k) for name in Scores._fields}
        ad_id = np.full(b * k, -1, dtype=np.int64)
        bid = np.zeros(b * k)
        ranker = self.ranker(scorer)
        if len(cand):
            scores = ranker.score(take(requests, cand // k), ads[:, None])
            self.calls += len(cand)
            ecpm = scores.ecpm[:, 0]
            # per candidate, the pair with the highest eCPM (ties: lowest ad id, as pairs are in trie order)
            order = np.lexsort((-ecpm, cand))
            first = order[np.r_[True, cand[order][1:] != cand[order][:-1]]]
            chosen = cand[first]
            ad_id[chosen], bid[chosen] = ads[first], ecpm[first]
            if scorer is not ranker:  # the same ad, scored by the requested source
                scores = scorer.score(take(requests, chosen // k), ads[first, None])
                self.calls += len(first)
                first = np.arange(len(first))
            for name in Scores._fields:
                out[name][chosen] = getattr(scores, name)[first, 0]
        valid = (ad_id >= 0).reshape(b, k)
        final = out["final_value"].reshape(b, k)
        won = None
        if self.market_price is not None:
            rid = np.asarray(requests["request_id"], dtype=np.int64)
            price = self.market_price[np.where(rid >= 0, rid, -1 - rid) % len(self.market_price)]
            won = valid & (bid.reshape(b, k) >= price[:, None])  # the auction sees the bid of the served model
            final = np.where(won, final, 0.0)
        return Evaluation(ad_id.reshape(b, k), valid, out["pctr"].reshape(b, k), out["pcvr"].reshape(b, k),
                          out["ecpm"].reshape(b, k), final, zscore(final, valid), won)

    def _evaluate_compiled(self, requests: RequestBatch, paths: np.ndarray, scorer: Scorer,
                           allowed: np.ndarray | None) -> Evaluation:
        b, k, depth = paths.shape
        use_allowed = allowed is not None
        cand, ads = kernels.leaf_pairs(np.ascontiguousarray(paths.reshape(b * k, depth), dtype=np.int64), k,
                                       *self._request_keys(requests),
                                       np.ascontiguousarray(allowed, dtype=bool) if use_allowed else kernels.NO_ALLOWED,
                                       use_allowed, *self._kernel_tables)
        return self._resolve(take(requests, cand // k), cand, ads, b, k, scorer, requests["request_id"])

    def evaluate_pairs(self, pair_requests: RequestBatch | np.ndarray, cand: np.ndarray, ads: np.ndarray, b: int,
                       k: int, reward_source: RewardSource, request_ids: np.ndarray) -> Evaluation:
        """``evaluate(backend="compiled")`` from its pairs on: the (candidate, allowed ad on its leaf) pairs of B*K
        candidates (candidates ascending, ads in trie order), each pair's request, and the B request ids (market
        prices). For callers that resolved the paths themselves (the env's step kernel).

        ``pair_requests`` may be the pairs' logged request ids where every scorer in use takes ids (the reward
        models and the truth do): then no request rows are gathered, and the compiled scorer reads its own."""
        return self._resolve(pair_requests, cand, ads, b, k, self.scorer(reward_source), request_ids)

    def ranker(self, scorer: Scorer) -> Scorer:
        """The scorer that picks the ad a path shows: the reward models (the served ranking stack) whenever the
        simulator has them, whatever source then scores that ad."""
        return self.scorers["model"] or scorer

    def _resolve(self, pair_requests: RequestBatch | np.ndarray, cand: np.ndarray, ads: np.ndarray, b: int, k: int,
                 scorer: Scorer, request_ids: np.ndarray) -> Evaluation:
        ranker = self.ranker(scorer)
        if len(cand):
            scores = ranker.score(pair_requests, ads[:, None])
            self.calls += len(cand)
        else:
            scores = Scores(*[np.zeros((0, 1))] * len(Scores._fields))
        use_price = self.market_price is not None
        price = _NO_PRICE
        if use_price:
            rid = np.asarray(request_ids, dtype=np.int64)
            price = self.market_price[np.where(rid >= 0, rid, -1 - rid) % len(self.market_price)]
        ad_id, valid, won, out, pair = kernels.resolve_best(
            cand, ads, *(np.asarray(part, dtype=np.float64) for part in scores), b, k, price, use_price)
        if scorer is not ranker and valid.any():  # the same ads, scored by the requested source
            chosen = np.flatnonzero(valid)
            rows, flat = pair.ravel()[chosen], out.reshape(5, b * k)
            source = scorer.score(pair_requests[rows] if isinstance(pair_requests, np.ndarray)
                                  else take(pair_requests, rows), ad_id.ravel()[chosen, None])
            self.calls += len(chosen)
            for row, part in enumerate(source[:4]):
                flat[row, chosen] = part[:, 0]
            if use_price:
                flat[3] = np.where(won.ravel(), flat[3], 0.0)
            flat[4] = 0.0
            kernels.zscore_rows(flat[3], valid.ravel(), b, k, flat[4])
        pctr, pcvr, ecpm, final, z = out
        return Evaluation(ad_id, valid, pctr, pcvr, ecpm, final, z, won if use_price else None)

    def oracle(self, requests: RequestBatch, reward_source: RewardSource = "model",
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Best final_value over all legal ads of each request, and that ad (exhaustive)."""
        scorer = self.scorer(reward_source)
        allowed = self.allowed(requests) if allowed is None else allowed
        n = len(requests["user_id"])
        best = np.zeros(n)
        best_ad = np.full(n, -1, dtype=np.int64)
        all_ads = np.broadcast_to(np.arange(allowed.shape[1]), allowed.shape)
        chunk = max(1, 200_000 // max(allowed.shape[1], 1))
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            scores = scorer.score(take(requests, np.arange(lo, hi)), all_ads[lo:hi])
            self.calls += (hi - lo) * allowed.shape[1]
            value = np.where(allowed[lo:hi], scores.final_value, -np.inf)
            arg = value.argmax(axis=1)
            has = allowed[lo:hi].any(axis=1)
            best[lo:hi] = np.where(has, value[np.arange(hi - lo), arg], 0.0)
            best_ad[lo:hi] = np.where(has, arg, -1)
        return best, best_ad

    # --------------------------------------------------------------------------------- process rewards
    def token_popularity(self, requests: RequestBatch, level: int, prefixes: np.ndarray | None = None
                         ) -> np.ndarray:
        """(B, K, codebook_size) P_l(t | z_<l) for (B, K, level) ``prefixes``; (B, 1, codebook_size) P_l(t), every
        success counted, when None (see ProcessRewardConfig)."""
        rows, valid = self.successes.last(np.asarray(requests["user_id"]), np.asarray(requests["ts"]),
                                          self.process.history)
        codes = self.ad_codes[self.successes.payload["ad_id"][rows]]  # (B, H, L)
        counted = valid[:, None, :]  # (B, 1 or K, H)
        if prefixes is not None:
            counted = counted & (codes[:, None, :, :level] == np.asarray(prefixes)[:, :, None, :]).all(axis=-1)
        b, k, h = counted.shape
        popularity = np.zeros((b, k, self.trie.width))
        tokens = np.broadcast_to(codes[:, None, :, level], (b, k, h))
        np.add.at(popularity, (np.repeat(np.arange(b), k * h), np.tile(np.repeat(np.arange(k), h), b),
                               tokens.ravel()), counted.ravel())
        return popularity / np.maximum(counted.sum(axis=-1, keepdims=True), 1)

    def process_rewards(self, requests: RequestBatch, paths: np.ndarray, allowed: np.ndarray | None = None,
                        backend: Backend = "reference") -> np.ndarray:
        """(B, K, L-1) process rewards for the coarse levels of (B, K, L) paths (see ProcessRewardConfig).

        ``backend="compiled"``: one kernel, reading eligibility per ad where ``allowed`` is None.
        """
        kernels.check_backend(backend)
        paths = np.asarray(paths, dtype=np.int64)
        b, k, depth = paths.shape
        if backend == "compiled":
            out = np.zeros((b, k, depth - 1))
            use_allowed = allowed is not None
            kernels.process_rewards_rows(np.ascontiguousarray(paths), *self._request_keys(requests),
                                         np.ascontiguousarray(allowed, dtype=bool) if use_allowed
                                         else kernels.NO_ALLOWED, use_allowed, *self._kernel_tables,
                                         kernels.plain(self.process_tables), out)
            return out
        allowed = self.allowed(requests) if allowed is None else allowed
        sums = self.trie.allowed_prefix_sums(allowed)
        out = np.zeros((b, k, depth - 1))
        for level in range(depth - 1):
            alpha = self.process.alphas[level] if level < len(self.process.alphas) else 0.0
            if alpha == 0.0:
                continue
            popularity = self.token_popularity(  # (B, K or 1, V)
                requests, level, paths[:, :, :level] if self.process.popularity == "prefix" else None)
            legal = self.trie.legal_mask(paths[:, :, :level].reshape(b * k, level),
                                         np.repeat(sums, k, axis=0)).reshape(b, k, -1)
            mean_legal = (legal * popularity).sum(-1) / np.maximum(legal.sum(-1), 1)
            token = np.clip(paths[:, :, level], 0, self.trie.width - 1)
            chosen = np.take_along_axis(np.broadcast_to(popularity, legal.shape), token[:, :, None], axis=2)[..., 0]
            out[:, :, level] = alpha * np.maximum(0.0, chosen - mean_legal)
        return out


def zscore(values: np.ndarray, valid: np.ndarray | None = None, eps: float = 0.0) -> np.ndarray:
    """(B, K) -> (B, K): (x - mean) / (std + eps) over each row's valid entries (all when ``valid`` is None).

    0 where invalid and where a row has no spread. The simulator's own z-scores use ``eps=0``; post-training's
    group advantages (HEPO, GRPO) add GPR's small ``eps``, which matters only for rows of nearly equal rewards.
    """
    values = np.asarray(values, dtype=np.float64)
    valid = np.ones(values.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    n = np.maximum(valid.sum(axis=1, keepdims=True), 1)
    mean = np.where(valid, values, 0).sum(axis=1, keepdims=True) / n
    var = np.where(valid, (values - mean) ** 2, 0).sum(axis=1, keepdims=True) / n
    std = np.sqrt(var)
    return np.where(valid & (std > 0), (values - mean) / (np.where(std > 0, std, 1) + eps), 0.0)
