"""Post-training objectives as pure functions: HEPO's advantages and losses, GRPO's, Sibling-GRPO's (V-STAR), DPO's,
and preference pairs.

Shapes: N candidate paths (flattened requests x K), L SID levels. Level indices here are 0-based: level l
chooses z_{l+1} in the paper's 1-based notation. ``values[:, l]`` is the critic's V(s, z_{1:l}), the value of the
state *before* choosing level l (so ``values[:, 0]`` is V(s)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from adsim.simulator.simulator import zscore


def group_zscore(values: np.ndarray, valid: np.ndarray | None = None, eps: float = 1e-6) -> np.ndarray:
    """(B, K) -> (B, K): (R - mu_K) / (sigma_K + eps) over each request's K (valid) candidates; 0 where invalid.

    The simulator's ``zscore`` with GPR's eps, so an advantage and ``Evaluation.zscore`` never disagree on the rule.
    """
    return zscore(values, valid, eps)


def level_rewards(process: np.ndarray, terminal: np.ndarray) -> np.ndarray:
    """(N, L-1) process rewards and (N,) terminal rewards -> (N, L) per-level rewards r_l (HEPO eq. r_l)."""
    return np.concatenate([np.asarray(process, dtype=np.float64), np.asarray(terminal, dtype=np.float64)[:, None]],
                          axis=1)


def returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """(N, L) -> (N, L): G_l = sum_k gamma^k r_{l+k}, the value loss's targets."""
    out = np.zeros_like(rewards, dtype=np.float64)
    running = np.zeros(len(rewards))
    for level in range(rewards.shape[1] - 1, -1, -1):
        running = rewards[:, level] + gamma * running
        out[:, level] = running
    return out


def gae_over_levels(rewards: np.ndarray, values: np.ndarray, gamma: float, lam: float) -> np.ndarray:
    """(N, L) rewards and (N, L) values V(s, z_{1:l}) -> (N, L-1) GAE advantages of the coarse levels.

    delta_l = r_l + gamma V(s, z_{1:l+1}) - V(s, z_{1:l}) and A_l = sum_{k=0}^{L-l-2} (gamma lam)^k delta_{l+k}
    for l < L-1 (GPR: the coarse-level sum stops before the terminal level, whose advantage is z-scored).
    """
    rewards, values = np.asarray(rewards, dtype=np.float64), np.asarray(values, dtype=np.float64)
    depth = rewards.shape[1]
    delta = rewards[:, : depth - 1] + gamma * values[:, 1:depth] - values[:, : depth - 1]
    adv = np.zeros_like(delta)
    running = np.zeros(len(delta))
    for level in range(depth - 2, -1, -1):
        running = delta[:, level] + gamma * lam * running
        adv[:, level] = running
    return adv


@dataclass(frozen=True)
class Advantages:
    advantages: np.ndarray  # (N, L)
    returns: np.ndarray  # (N, L) value targets


def hepo_advantages(process: np.ndarray, terminal: np.ndarray, terminal_zscore: np.ndarray, values: np.ndarray,
                    gamma: float, lam: float, use_process: bool = True) -> Advantages:
    """HEPO: GAE over process rewards at coarse levels, the group z-score of final_value at the last level."""
    process = np.asarray(process, dtype=np.float64) if use_process else np.zeros_like(process, dtype=np.float64)
    rewards = level_rewards(process, terminal)
    adv = np.concatenate([gae_over_levels(rewards, values, gamma, lam), np.asarray(terminal_zscore)[:, None]], axis=1)
    return Advantages(adv, returns(rewards, gamma))


def normalise_levels(advantages: np.ndarray, levels: slice | None = None, eps: float = 1e-8) -> np.ndarray:
    """(N, L) -> (N, L): each level in ``levels`` (default: the coarse ones, all but the last) standardised over
    the N samples, (A_l - mean_l) / (std_l + eps), the PPO-style batch normalisation applied per level.

    Why per level: the terminal level's advantage is already a group z-score (std ~1) while GAE over process
    rewards and critic errors gives the coarse levels a std of ~0.1, so under one lr the coarse decisions would
    move several times less than the last one. A level with no spread (std 0) is left centred at 0.
    """
    adv = np.array(advantages, dtype=np.float64, copy=True)
    levels = slice(0, adv.shape[1] - 1) if levels is None else levels
    part = adv[:, levels]
    if len(part):
        std = part.std(axis=0, keepdims=True)
        centred = part - part.mean(axis=0, keepdims=True)
        adv[:, levels] = np.where(std > 0, centred / (np.where(std > 0, std, 1.0) + eps), 0.0)
    return adv


def grpo_advantages(terminal_zscore: np.ndarray, depth: int) -> Advantages:
    """GRPO: every level gets its path's group z-scored final_value; no critic (returns are unused zeros)."""
    z = np.asarray(terminal_zscore, dtype=np.float64)
    return Advantages(np.repeat(z[:, None], depth, axis=1), np.zeros((len(z), depth)))


def univa_advantages(terminal_zscore: np.ndarray, values: np.ndarray, gamma: float, lam: float) -> Advantages:
    """UniVA eq. 17-18: GAE over the levels with the within-request z-scored reward at the last level only.

    ``values`` (N, L) are v_l = o_value^(l)[a_l], the value head's estimate after choosing a_l (zeros without a
    value head). delta_l = gamma v_{l+1} - v_l for l < L, delta_L = R_bar - v_L; A_l = sum_k (gamma lam)^k
    delta_{l+k}; the value targets are G_l = A_l + v_l (eq. 18). The baseline depends on the chosen code, as the
    paper defines it, so A_l is the value head's error, not an unbiased advantage of the code.
    """
    v = np.asarray(values, dtype=np.float64)
    n, depth = v.shape
    nxt = np.concatenate([v[:, 1:], np.zeros((n, 1))], axis=1)
    rewards = np.zeros((n, depth))
    rewards[:, -1] = np.asarray(terminal_zscore, dtype=np.float64)
    delta = rewards + gamma * nxt - v
    adv, running = np.zeros_like(delta), np.zeros(n)
    for level in range(depth - 1, -1, -1):
        running = delta[:, level] + gamma * lam * running
        adv[:, level] = running
    return Advantages(adv, adv + v)


def sibling_advantages(paths: np.ndarray, rewards: np.ndarray, valid: np.ndarray | None = None,
                        eps: float = 1e-6) -> np.ndarray:
    """Sibling-GRPO (V-STAR): (B, K, L) paths, (B, K) rewards -> (B, K, L) sibling-relative advantages.

    Spec (our reading of V-STAR): a request's valid candidates form a prefix tree. Candidate k's decision at level l
    (0-based, choosing z_{l+1}) leads from its parent node p = z_{1:l} to the child node n = z_{1:l+1}. With Q(n) the
    mean reward of the valid candidates whose paths pass through n, and the siblings of n the distinct children of
    p that some valid candidate reaches (n included),

        A[k, l] = (Q(n) - mean over siblings s of Q(s)) / (sigma + eps),

    the sibling mean unweighted (each sibling node counts once, however many candidates pass through it) and
    sigma the std of the request's valid rewards (GRPO's group scale, so A is in the same units as the group
    z-score). A node without siblings gets A = 0: only branching decisions learn, and a prefix shared by all
    candidates no longer receives their (correlated) mean as its advantage. Invalid candidates are outside the tree
    and get 0; so does every candidate of a request with fewer than two valid ones. Identical paths count twice in
    every Q they pass through.
    """
    paths, rewards = np.asarray(paths), np.asarray(rewards, dtype=np.float64)
    valid = np.ones(rewards.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    b_size, _, depth = paths.shape
    out = np.zeros(paths.shape, dtype=np.float64)
    for b in range(b_size):
        rows = np.flatnonzero(valid[b])
        if len(rows) < 2:
            continue
        r = rewards[b, rows]
        scale = r.std() + eps
        parent = np.zeros(len(rows), dtype=np.int64)  # level 0: every candidate's parent is the root
        for level in range(depth):
            node = np.unique(paths[b, rows, : level + 1], axis=0, return_inverse=True)[1].reshape(-1)
            q = np.bincount(node, r) / np.bincount(node)  # (n_nodes,) Q(n)
            node_parent = np.zeros(len(q), dtype=np.int64)
            node_parent[node] = parent
            sibling_mean = np.bincount(node_parent, q) / np.bincount(node_parent)  # (n_parents,)
            out[b, rows, level] = (q[node] - sibling_mean[parent]) / scale
            parent = node
    return out


def clipped_policy_loss(logp: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor,
                        level_coef: torch.Tensor, clip_eps: float) -> torch.Tensor:
    """-E[sum_l c_l min(rho_l A_l, clip(rho_l, 1-eps, 1+eps) A_l)], rho_l = pi(z_l) / pi_old(z_l). (N, L) inputs."""
    ratio = torch.exp(logp - logp_old)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    return -(torch.minimum(unclipped, clipped) * level_coef).sum(dim=1).mean()


def level_diagnostics(logp: torch.Tensor, logp_old: torch.Tensor, clip_eps: float) -> dict[str, np.ndarray]:
    """CleanRL's PPO diagnostics per level from (N, L) log-probs: ``approx_kl`` = mean((rho - 1) - log rho) (the
    low-variance k3 estimator, >= 0) and ``clipfrac`` = share of samples with |rho - 1| > eps. Returns (L,) arrays."""
    with torch.no_grad():
        log_ratio = logp - logp_old
        ratio = log_ratio.exp()
        kl = ((ratio - 1.0) - log_ratio).mean(dim=0)
        clipfrac = ((ratio - 1.0).abs() > clip_eps).float().mean(dim=0)
    return {"approx_kl": kl.double().numpy(), "clipfrac": clipfrac.double().numpy()}


def explained_variance(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """1 - Var(target - pred) / Var(target) per column of (N, L) arrays (CleanRL's, per level): 1 is a perfect
    critic, 0 one no better than the mean, negative worse; NaN where the target has no variance."""
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if pred.ndim == 1:
        return explained_variance(pred[:, None], target[:, None])[0]
    var = target.var(axis=0)
    resid = (target - pred).var(axis=0)
    return np.where(var > 0, 1.0 - resid / np.where(var > 0, var, 1.0), np.nan)


def value_loss(values: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """E[sum_l (V(s, z_{1:l}) - G_l)^2] over (N, L)."""
    return ((values - targets) ** 2).sum(dim=1).mean()


def dpo_loss(logp_chosen: torch.Tensor, logp_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """-E[log sigmoid(beta ((log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))))] over (P,) path log-probs."""
    margin = (logp_chosen - ref_chosen) - (logp_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin).mean()


def preference_pairs(values: np.ndarray, valid: np.ndarray, margin: float = 0.05, max_pairs: int = 4
                     ) -> np.ndarray:
    """(P, 3) rows (request, chosen k, rejected k) from (B, K) candidate values.

    Rule: each request's best valid candidate is preferred over up to ``max_pairs`` others, taken from the
    bottom, whose value is below ``(1 - margin)`` times the best (invalid candidates always qualify, at the
    bottom). Ties and near-ties make no pair, so DPO never learns from noise-level differences; requests whose
    candidates are all within the margin contribute nothing.
    """
    values, valid = np.asarray(values, dtype=np.float64), np.asarray(valid, dtype=bool)
    rows = []
    for b in range(len(values)):
        if not valid[b].any():
            continue
        score = np.where(valid[b], values[b], -np.inf)
        best = int(np.argmax(score))
        threshold = values[b, best] * (1.0 - margin) if values[b, best] > 0 else values[b, best] - margin
        losers = np.flatnonzero(~valid[b] | (score < threshold))
        losers = losers[np.argsort(score[losers], kind="stable")][:max_pairs]
        rows.extend((b, best, int(k)) for k in losers)
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)
