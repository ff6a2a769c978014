"""Scoring any policy on a fixed set of held-out requests, against the random-legal and oracle references.

Every baseline (random, logged cascade, greedy eCPM, PPO, MCTS) is reduced to either SID paths or ad ids per
request and scored here, under the reward models ("model") and the world's ground truth ("truth", when the
scenario has one). The normalised score is (policy - random legal) / (oracle - random legal) on the mean
final_value: 0 is the random legal policy, 1 the best eligible ad of every request.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from adsim.metrics import normalised_score
from adsim.simulator.requests import RequestBatch, RequestStream, take
from adsim.simulator.simulator import Simulator
from agents.mcts.paths import RequestTries, random_legal_paths
from envs.context import SimulatorContext

SOURCES = ("model", "truth")


def held_out_requests(ctx: SimulatorContext, split: str = "test", n: int | None = None, seed: int = 0) -> RequestBatch:
    """``n`` logged requests of ``split`` (all of them when None), a fixed sample for a given seed."""
    return RequestStream(ctx.scenario, split, ctx.seed).held_out(n, np.random.default_rng(seed))


def logged_ads(ctx: SimulatorContext, requests: RequestBatch) -> np.ndarray:
    """(B,) the ad the logging cascade showed in the top slot of each logged request, -1 when none."""
    imp = ctx.scenario.table("impressions")
    top = imp[imp["position"].to_numpy() == 0]
    by_request = dict(zip(top["request_id"].to_numpy().tolist(), top["ad_id"].to_numpy().tolist(), strict=True))
    return np.array([by_request.get(int(r), -1) for r in requests["request_id"]], dtype=np.int64)


def greedy_ecpm_ads(simulator: Simulator, tries: RequestTries) -> np.ndarray:
    """(B,) the eligible ad with the highest predicted (model) eCPM: a one-stage ranker over the whole trie."""
    n, n_ads = tries.allowed.shape
    out = np.full(n, -1, dtype=np.int64)
    chunk = max(1, 200_000 // max(n_ads, 1))
    scorer = simulator.scorer("model")
    for lo in range(0, n, chunk):
        rows = np.arange(lo, min(lo + chunk, n))
        ecpm = scorer.score(take(tries.requests, rows), np.broadcast_to(np.arange(n_ads), (len(rows), n_ads))).ecpm
        ecpm = np.where(tries.allowed[rows], ecpm, -np.inf)
        out[rows] = np.where(tries.allowed[rows].any(axis=1), ecpm.argmax(axis=1), -1)
    return out


class Evaluator:
    """Held-out requests with their random-legal and oracle references, ready to score policies."""

    def __init__(self, simulator: Simulator, requests: RequestBatch, seed: int = 0, random_samples: int = 16,
                 sources: Sequence[str] = SOURCES):
        self.sim = simulator
        self.tries = RequestTries(simulator, requests)
        self.sources = [s for s in sources if simulator.scorers.get(s) is not None]
        rng = np.random.default_rng(seed)
        random_paths = random_legal_paths(self.tries, rng, random_samples)
        self.random = {s: self._evaluate(random_paths, s).mean(axis=1) for s in self.sources}
        self.oracle = {s: simulator.oracle(self.tries.requests, s, allowed=self.tries.allowed)[0]
                       for s in self.sources}

    def __len__(self) -> int:
        return len(self.tries)

    @property
    def requests(self) -> RequestBatch:
        return self.tries.requests

    def _evaluate(self, paths: np.ndarray, source: str) -> np.ndarray:
        ev = self.sim.evaluate(self.tries.requests, paths, source, allowed=self.tries.allowed)
        return ev.final_value

    def path_values(self, paths: np.ndarray) -> dict[str, np.ndarray]:
        """(B,) final_value of one (B, L) path per request, per reward source."""
        paths = np.asarray(paths, dtype=np.int64)
        return {s: self._evaluate(paths[:, None, :], s)[:, 0] for s in self.sources}

    def ad_values(self, ads: np.ndarray) -> dict[str, np.ndarray]:
        """(B,) final_value of one ad per request (0 where -1 or not eligible), per reward source."""
        ads = np.asarray(ads, dtype=np.int64)
        ok = ads >= 0
        ok[ok] = self.tries.allowed[np.flatnonzero(ok), ads[ok]]
        out = {}
        for s in self.sources:
            values = np.zeros(len(ads))
            if ok.any():
                rows = np.flatnonzero(ok)
                values[rows] = self.sim.scorer(s).score(take(self.requests, rows), ads[rows, None]).final_value[:, 0]
            out[s] = values
        return out

    def summary(self, values: dict[str, np.ndarray]) -> dict[str, float]:
        """Mean final_value and normalised score per source: ``final_value_model``, ``normalised_model``, ..."""
        out: dict[str, float] = {}
        for s in SOURCES:
            if s not in values:
                out[f"final_value_{s}"] = out[f"normalised_{s}"] = float("nan")
                continue
            out[f"final_value_{s}"] = float(np.mean(values[s]))
            out[f"normalised_{s}"] = normalised_score(values[s], self.random[s], self.oracle[s])
        return out

    def reference_rows(self) -> list[dict[str, float | str]]:
        """Summary rows of the random legal policy and the oracle."""
        return [{"policy": "random legal", **self.summary(self.random)},
                {"policy": "oracle", **self.summary(self.oracle)}]
