"""Off-policy evaluation (OPE) on logged bandit feedback with propensities: IPS, SNIPS, DM and DR.

n logged rounds i: a slot ``p_i``, an action ``a_i`` the behaviour policy chose with probability ``pscore_i``,
a reward ``r_i`` (a click). An evaluation policy gives ``pi_e(a | round i)`` for every action, an ``(n, A)`` array;
a reward model gives ``q(i, a)``, also ``(n, A)``. With ``w_i = pi_e(a_i | i) / pscore_i``:

    IPS   = mean(w r)                         unbiased when the propensities are right; variance grows with w
    SNIPS = sum(w r) / sum(w)                 self-normalised: O(1/n) bias, less variance
    DM    = mean(sum_a pi_e(a | i) q(i, a))   no importance weights, biased by q
    DR    = DM + mean(w (r - q(i, a_i)))      unbiased like IPS, with less variance the better q is

Every estimator is a ratio of weighted sums over rounds, so row weights carry both sample weights (e.g. the
Taobao sample's ``click_weight`` on clicked rows, which undoes its over-sampled clicks) and bootstrap resampling
(multinomial counts): intervals come from one matrix product per chunk of resamples. The reward model is fitted
once, outside the bootstrap.

Policies are anything with ``action_probabilities(feedback) -> (n, A)``; ``PositionPolicy`` is the context-free
kind (one distribution per slot), and ``thompson_policy`` fits one to a Bernoulli Thompson-sampling log by
simulating Beta posteriors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from adsim.errors import AdSimDataError, AdSimError
from adsim.world.rng import stream

ESTIMATORS = ("IPS", "SNIPS", "DM", "DR")


@dataclass
class BanditFeedback:
    """Logged rounds: what was shown, with what probability, and what it earned."""

    action: np.ndarray  # (n,) int64 in 0..n_actions-1
    reward: np.ndarray  # (n,) float64
    pscore: np.ndarray  # (n,) float64 in (0, 1]: the behaviour policy's probability of the action (at the slot)
    n_actions: int
    position: np.ndarray | None = None  # (n,) int64 slot, 0 the top
    sample_weight: np.ndarray | None = None  # (n,) float64; None: all 1
    contexts: pd.DataFrame | None = None
    """One row per round for policies that read the context (e.g. the logged request's columns)."""

    def __post_init__(self) -> None:
        self.action = np.asarray(self.action, dtype=np.int64)
        self.reward = np.asarray(self.reward, dtype=np.float64)
        self.pscore = np.asarray(self.pscore, dtype=np.float64)
        n = len(self.action)
        for name in ("reward", "pscore", "position", "sample_weight"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise AdSimDataError(f"{name} has {len(value)} rows, action has {n}", column=name)
        bad = ~((self.pscore > 0) & (self.pscore <= 1))
        if bad.any():
            raise AdSimDataError("propensities must be in (0, 1]", column="pscore", rows=np.flatnonzero(bad))
        bad = (self.action < 0) | (self.action >= self.n_actions)
        if bad.any():
            raise AdSimDataError(f"actions outside 0..{self.n_actions - 1}", column="action", rows=np.flatnonzero(bad))
        if self.position is not None:
            self.position = np.asarray(self.position, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.action)

    @property
    def weights(self) -> np.ndarray:
        return np.ones(len(self)) if self.sample_weight is None else np.asarray(self.sample_weight, np.float64)

    @classmethod
    def from_scenario(cls, scenario, split: str | None = None, require_propensities: bool = True) -> BanditFeedback:
        """The logged impressions of a bundle (all, or one split's): ad, click, propensity and position.

        The manifest's ``label_sampling.click_weight`` (over-sampled clicks, e.g. Taobao) becomes the weight of
        clicked rows. Bundles whose propensities are unknown (manifest ``import.propensities``) are refused unless
        ``require_propensities=False`` (then only on-policy values, e.g. the natural CTR, are meaningful).
        """
        manifest = scenario.manifest
        known = str(manifest.get("import", {}).get("propensities", "logged"))
        if require_propensities and known.startswith("unknown"):
            raise AdSimError(f"{scenario.path} has no logged propensities ({known}): off-policy evaluation needs "
                             "the logging policy's probabilities")
        imp, req = scenario.table("impressions"), scenario.table("requests")
        rows = np.searchsorted(req["request_id"].to_numpy(), imp["request_id"].to_numpy())
        if split is not None:
            keep = req["split"].astype(str).to_numpy()[rows] == split
            imp, rows = imp.loc[keep], rows[keep]
        click = imp["click"].to_numpy()
        weight = manifest.get("label_sampling", {}).get("click_weight")
        contexts = req.iloc[rows].reset_index(drop=True).assign(position=imp["position"].to_numpy(),
                                                                 request_row=rows)
        return cls(action=imp["ad_id"].to_numpy(), reward=click.astype(np.float64),
                   pscore=imp["propensity"].to_numpy(), n_actions=len(scenario.table("ads")),
                   position=imp["position"].to_numpy(),
                   sample_weight=None if weight is None else np.where(click, float(weight), 1.0), contexts=contexts)


class ActionProbabilityPolicy(Protocol):
    """Anything OPE can evaluate."""

    def action_probabilities(self, feedback: BanditFeedback) -> np.ndarray:
        """(n, n_actions) probability of every action in each logged round; rows sum to 1."""
        ...


@dataclass
class PositionPolicy:
    """A context-free policy: one action distribution per slot, ``table`` (n_positions, n_actions)."""

    table: np.ndarray

    def action_probabilities(self, feedback: BanditFeedback) -> np.ndarray:
        position = np.zeros(len(feedback), np.int64) if feedback.position is None else feedback.position
        return np.asarray(self.table, dtype=np.float64)[position]


def check_probabilities(pi_e: np.ndarray, feedback: BanditFeedback) -> np.ndarray:
    pi_e = np.asarray(pi_e, dtype=np.float64)
    if pi_e.shape != (len(feedback), feedback.n_actions):
        raise ValueError(f"action probabilities must be (n={len(feedback)}, A={feedback.n_actions}), got {pi_e.shape}")
    bad = ~np.isclose(pi_e.sum(axis=1), 1.0, atol=1e-6) | (pi_e < 0).any(axis=1)
    if bad.any():
        raise AdSimDataError("action probabilities must be non-negative and sum to 1 per round", column="pi_e",
                             rows=np.flatnonzero(bad))
    return pi_e


# ------------------------------------------------------------------------------------------------ estimators
def estimator_terms(feedback: BanditFeedback, pi_e: np.ndarray, q_hat: np.ndarray | None = None
                    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-round (numerator, denominator) terms: estimator = sum(c * num) / sum(c * den) for row weights c."""
    pi_e = check_probabilities(pi_e, feedback)
    rows = np.arange(len(feedback))
    w = pi_e[rows, feedback.action] / feedback.pscore
    r, one = feedback.reward, np.ones(len(feedback))
    terms = {"IPS": (w * r, one), "SNIPS": (w * r, w)}
    if q_hat is not None:
        q_hat = np.asarray(q_hat, dtype=np.float64)
        if q_hat.shape != pi_e.shape:
            raise ValueError(f"q_hat must be {pi_e.shape}, got {q_hat.shape}")
        direct = (pi_e * q_hat).sum(axis=1)
        terms["DM"] = (direct, one)
        terms["DR"] = (direct + w * (r - q_hat[rows, feedback.action]), one)
    return terms


def estimate(feedback: BanditFeedback, pi_e: np.ndarray, q_hat: np.ndarray | None = None) -> dict[str, float]:
    """Point estimates of the policy value: IPS and SNIPS, plus DM and DR when a reward model ``q_hat`` is given."""
    c = feedback.weights
    return {name: float(c @ num / (c @ den)) for name, (num, den) in estimator_terms(feedback, pi_e, q_hat).items()}


def ips(reward: np.ndarray, w: np.ndarray) -> float:
    """Plain IPS from rewards and importance weights (reference for ``estimate``)."""
    return float(np.mean(np.asarray(w) * np.asarray(reward)))


def snips(reward: np.ndarray, w: np.ndarray) -> float:
    return float(np.sum(np.asarray(w) * np.asarray(reward)) / np.sum(w))


def dr(reward: np.ndarray, w: np.ndarray, q_logged: np.ndarray, q_policy: np.ndarray) -> float:
    """DR from rewards, weights, q of the logged action and the policy's expected q per round."""
    return float(np.mean(np.asarray(q_policy) + np.asarray(w) * (np.asarray(reward) - np.asarray(q_logged))))


def bootstrap_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) multinomial resampling counts: row i drawn counts[b, i] times in resample b."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def evaluate_policy(feedback: BanditFeedback, policy: ActionProbabilityPolicy | np.ndarray,
                    q_hat: np.ndarray | None = None, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
                    chunk: int = 100) -> pd.DataFrame:
    """Every estimator's value with a percentile bootstrap interval.

    Returns:
        One row per estimator: ``estimate``, ``ci_low``, ``ci_high`` (the ``alpha`` two-sided interval over
        ``n_boot`` resamples of the rounds) and ``se`` (bootstrap standard deviation).
    """
    pi_e = policy if isinstance(policy, np.ndarray) else policy.action_probabilities(feedback)
    terms = estimator_terms(feedback, pi_e, q_hat)
    point = estimate(feedback, pi_e, q_hat)
    rng = np.random.default_rng(seed)
    c = feedback.weights
    draws = {name: [] for name in terms}
    for lo in range(0, n_boot, chunk):
        counts = bootstrap_counts(len(feedback), min(chunk, n_boot - lo), rng) * c  # (b, n)
        for name, (num, den) in terms.items():
            draws[name].append(counts @ num / (counts @ den))
    rows = []
    for name in terms:
        d = np.concatenate(draws[name])
        rows.append({"estimator": name, "estimate": point[name], "ci_low": float(np.quantile(d, alpha / 2)),
                     "ci_high": float(np.quantile(d, 1 - alpha / 2)), "se": float(d.std(ddof=1))})
    return pd.DataFrame(rows)


def on_policy_value(reward: np.ndarray, sample_weight: np.ndarray | None = None, n_boot: int = 1000,
                    alpha: float = 0.05, seed: int = 0) -> dict[str, float]:
    """The mean reward of a policy's own log, with a percentile bootstrap interval: the ground truth of OPE."""
    reward = np.asarray(reward, dtype=np.float64)
    c = np.ones(len(reward)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    counts = bootstrap_counts(len(reward), n_boot, np.random.default_rng(seed)) * c
    d = counts @ reward / counts.sum(axis=1)
    return {"value": float(c @ reward / c.sum()), "ci_low": float(np.quantile(d, alpha / 2)),
            "ci_high": float(np.quantile(d, 1 - alpha / 2))}


# ------------------------------------------------------------------------------------------------ reward models
def empirical_ctr(feedback: BanditFeedback, n_positions: int, prior_strength: float = 50.0, folds: int = 2,
                  seed: int = 0) -> np.ndarray:
    """(n, A) q from per-(slot, action) click rates, cross-fitted: each round's q comes from the other folds.

    Each rate shrinks towards its slot's overall rate with ``prior_strength`` pseudo-rounds (most (slot, item)
    cells of a small log hold no click). Cross-fitting keeps DR from collapsing onto DM: with an in-sample table
    the residuals ``r - q`` of every cell sum to zero.
    """
    position = np.zeros(len(feedback), np.int64) if feedback.position is None else feedback.position
    fold = stream(seed, "ope-folds").permutation(len(feedback)) % max(folds, 1)  # balanced random folds
    c = feedback.weights
    q = np.empty((len(feedback), feedback.n_actions))
    for k in range(max(folds, 1)):
        fit = fold != k if folds > 1 else np.ones(len(feedback), bool)  # one fold: in-sample
        cell = position[fit] * feedback.n_actions + feedback.action[fit]
        size = n_positions * feedback.n_actions
        shows = np.bincount(cell, weights=c[fit], minlength=size).reshape(n_positions, -1)
        clicks = np.bincount(cell, weights=(c * feedback.reward)[fit], minlength=size).reshape(n_positions, -1)
        base = clicks.sum(axis=1, keepdims=True) / np.maximum(shows.sum(axis=1, keepdims=True), 1e-12)
        table = (clicks + prior_strength * base) / (shows + prior_strength)
        rows = fold == k
        q[rows] = table[position[rows]]
    return q


def model_q(scorer, request_ids: np.ndarray, positions: np.ndarray, n_actions: int, chunk: int = 256
            ) -> np.ndarray:
    """(n, A) pCTR of every action in each logged round from a bundle's reward model (``RewardScorer``), each
    scored at the round's slot."""
    request_ids, positions = np.asarray(request_ids), np.asarray(positions)
    out = np.empty((len(request_ids), n_actions))
    ads = np.broadcast_to(np.arange(n_actions), (min(chunk, len(request_ids)), n_actions))
    for lo in range(0, len(request_ids), chunk):
        hi = min(lo + chunk, len(request_ids))
        scores = scorer.score(request_ids[lo:hi], ads[: hi - lo], position=positions[lo:hi, None])
        out[lo:hi] = scores.pctr
    return out


# ------------------------------------------------------------------------------------------------ policies
def empirical_position_policy(action: np.ndarray, position: np.ndarray, n_actions: int, n_positions: int,
                              smoothing: float = 1.0) -> PositionPolicy:
    """A logged context-free policy's time-averaged distribution per slot: the action frequencies of its own log,
    with ``smoothing`` pseudo-counts spread uniformly (unbiased for the average of a drifting policy)."""
    counts = np.zeros((n_positions, n_actions))
    np.add.at(counts, (np.asarray(position), np.asarray(action)), 1.0)
    return PositionPolicy((counts + smoothing / n_actions) / (counts.sum(axis=1, keepdims=True) + smoothing))


def thompson_action_dist(alpha: np.ndarray, beta: np.ndarray, n_positions: int, n_sim: int,
                         rng: np.random.Generator) -> np.ndarray:
    """(n_positions, A) probability that Bernoulli Thompson sampling with Beta(alpha, beta) posteriors puts each
    action at each slot: draw every posterior, rank, slot k takes the k-th highest draw (obp's BernoulliTS)."""
    theta = rng.beta(alpha, beta, size=(n_sim, len(alpha)))  # (S, A)
    part = np.argpartition(-theta, n_positions - 1, axis=1)[:, :n_positions]  # (S, P) the top P, unordered
    top = np.take_along_axis(part, np.argsort(-np.take_along_axis(theta, part, 1), axis=1), 1)
    dist = np.zeros((n_positions, len(alpha)))
    for k in range(n_positions):
        dist[k] = np.bincount(top[:, k], minlength=len(alpha)) / n_sim
    return dist


@dataclass
class ThompsonFit:
    policy: PositionPolicy
    alpha: np.ndarray
    beta: np.ndarray
    concentration: float
    log_likelihood: float


def thompson_policy(action: np.ndarray, position: np.ndarray, n_actions: int, n_positions: int,
                    concentrations: tuple[float, ...] = (3.0, 10.0, 30.0, 100.0, 300.0, 1000.0),
                    n_sim: int = 50_000, fit_sim: int = 10_000, iterations: int = 15, seed: int = 0) -> ThompsonFit:
    """Beta posteriors that make simulated Thompson sampling reproduce a logged Thompson-sampling policy.

    The Open Bandit Dataset logs the Bernoulli Thompson-sampling (BTS) policy's probabilities only for the
    actions it took, and its posteriors drifted during the week. This fits one set of posteriors
    ``Beta(kappa m_a, kappa (1 - m_a))``: for each concentration ``kappa`` the means ``m`` are rescaled (``fit_sim``
    draws per step) until each action's simulated share of the top slots matches its share in the log; the
    ``kappa`` whose simulated per-slot distribution (``n_sim`` draws) gives the logged (action, slot) pairs the
    highest likelihood wins. The result is a smooth, Thompson-shaped estimate of the policy's average behaviour.
    """
    action, position = np.asarray(action), np.asarray(position)
    counts = np.zeros((n_positions, n_actions))
    np.add.at(counts, (position, action), 1.0)
    target = (counts.sum(axis=0) + 0.5 / n_actions) / (counts.sum() + 0.5)  # share of top slots per action
    best: ThompsonFit | None = None
    for kappa in concentrations:
        rng = np.random.default_rng(seed)
        m = np.clip(target * n_positions * 0.05, 1e-4, 0.5)
        for _ in range(iterations):
            dist = thompson_action_dist(kappa * m, kappa * (1 - m), n_positions, fit_sim, rng)
            share = np.maximum(dist.sum(axis=0) / n_positions, 0.1 / fit_sim)
            m = np.clip(m * (target / share), 1e-5, 1 - 1e-5)
        dist = thompson_action_dist(kappa * m, kappa * (1 - m), n_positions, n_sim, rng)
        smoothed = (dist * n_sim + 0.5 / n_actions) / (n_sim + 0.5)
        loglik = float((counts * np.log(smoothed)).sum())
        if best is None or loglik > best.log_likelihood:
            best = ThompsonFit(PositionPolicy(smoothed / smoothed.sum(axis=1, keepdims=True)), kappa * m,
                               kappa * (1 - m), kappa, loglik)
    return best
