"""Post-training objectives against numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adsim.simulator.simulator import zscore
from agents.posttrain.objectives import (
    clipped_policy_loss,
    dpo_loss,
    explained_variance,
    gae_over_levels,
    group_zscore,
    grpo_advantages,
    hepo_advantages,
    level_diagnostics,
    normalise_levels,
    preference_pairs,
    returns,
)


def test_gae_over_levels_by_hand():
    # L = 3: rewards r0, r1 (process) and r2 (terminal); values V(s), V(s,z1), V(s,z1,z2)
    rewards = np.array([[0.1, 0.2, 5.0]])
    values = np.array([[1.0, 2.0, 3.0]])
    gamma, lam = 0.9, 0.8
    d0 = 0.1 + 0.9 * 2.0 - 1.0  # 0.9
    d1 = 0.2 + 0.9 * 3.0 - 2.0  # 0.9
    expected = [d0 + gamma * lam * d1, d1]
    np.testing.assert_allclose(gae_over_levels(rewards, values, gamma, lam), [expected])
    np.testing.assert_allclose(returns(rewards, gamma), [[0.1 + 0.9 * 0.2 + 0.81 * 5.0, 0.2 + 0.9 * 5.0, 5.0]])


def test_group_zscore_by_hand_and_invalid_candidates():
    z = group_zscore(np.array([[1.0, 2.0, 3.0, 100.0]]), np.array([[True, True, True, False]]), eps=0.0)
    std = np.sqrt(2.0 / 3.0)
    np.testing.assert_allclose(z, [[-1 / std, 0.0, 1 / std, 0.0]])
    assert np.all(group_zscore(np.array([[4.0, 4.0]])) == 0)


def test_group_zscore_is_the_simulators_with_eps():
    values = np.array([[1.0, 2.0, 3.0, 100.0], [5.0, 5.0, 5.0, 7.0], [2.0, 2.0, 0.0, 0.0]])
    valid = np.array([[True, True, True, False], [True, True, True, True], [True, True, False, False]])
    np.testing.assert_array_equal(group_zscore(values, valid, eps=0.0), zscore(values, valid))
    std = np.array([[np.sqrt(2.0 / 3.0)], [np.sqrt(0.75)], [1.0]])  # the last row has no spread: z = 0 either way
    np.testing.assert_allclose(group_zscore(values, valid, eps=0.5), zscore(values, valid) * std / (std + 0.5))


def test_hepo_terminal_level_is_the_zscore_and_process_rewards_switch_off():
    adv = hepo_advantages(np.array([[0.5, 0.5]]), np.array([2.0]), np.array([1.3]), np.zeros((1, 3)), 1.0, 1.0)
    assert adv.advantages[0, 2] == 1.3
    np.testing.assert_allclose(adv.advantages[0, :2], [1.0, 0.5])
    off = hepo_advantages(np.array([[0.5, 0.5]]), np.array([2.0]), np.array([1.3]), np.zeros((1, 3)), 1.0, 1.0,
                          use_process=False)
    np.testing.assert_allclose(off.advantages[0, :2], [0.0, 0.0])
    np.testing.assert_allclose(grpo_advantages(np.array([0.7, -0.7]), 3).advantages, [[0.7] * 3, [-0.7] * 3])


def test_clipped_loss_by_hand():
    logp_old = torch.log(torch.tensor([[0.5, 0.5]]))
    logp = torch.log(torch.tensor([[0.75, 0.25]]))  # ratios 1.5 and 0.5
    adv = torch.tensor([[2.0, -1.0]])
    coef = torch.tensor([1.0, 0.5])
    # level 0: min(1.5*2, 1.2*2) = 2.4; level 1: min(0.5*-1, 0.8*-1) = -0.8 -> weighted 2.4 - 0.4 = 2.0
    loss = clipped_policy_loss(logp, logp_old, adv, coef, clip_eps=0.2)
    assert loss.item() == pytest.approx(-2.0)


def test_dpo_loss_by_hand():
    loss = dpo_loss(torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-1.5]), torch.tensor([-1.5]), beta=0.5)
    # margin = 0.5 - (-0.5) = 1.0 -> -log sigmoid(0.5)
    assert loss.item() == pytest.approx(-np.log(1 / (1 + np.exp(-0.5))))


def test_preference_pairs_follow_the_documented_rule():
    values = np.array([[10.0, 9.8, 5.0, 1.0], [3.0, 3.0, 3.0, 3.0]])
    valid = np.array([[True, True, True, False], [True] * 4])
    pairs = preference_pairs(values, valid, margin=0.05, max_pairs=4)
    # request 0: best is 0; 9.8 is within 5% (no pair); 5.0 qualifies; the invalid one always qualifies (first)
    assert pairs.tolist() == [[0, 0, 3], [0, 0, 2]]
    assert len(preference_pairs(values[1:], valid[1:])) == 0


def test_ranking_metrics_by_hand():
    from adsim.metrics import normalised_score
    from agents.posttrain.metrics import ndcg, opr

    valid = np.ones((1, 3), dtype=bool)
    assert ndcg(np.array([[3.0, 2.0, 1.0]]), valid) == pytest.approx(1.0)
    assert opr(np.array([[3.0, 2.0, 1.0]]), valid) == 1.0
    assert opr(np.array([[1.0, 2.0, 3.0]]), valid) == 0.0
    # order (mid, top, bottom): rel = (0.5, 1, 0); DCG = (2^.5 - 1) + 1/log2(3); IDCG = 1 + (2^.5 - 1)/log2(3)
    expected = ((2**0.5 - 1) + 1 / np.log2(3)) / (1 + (2**0.5 - 1) / np.log2(3))
    assert ndcg(np.array([[2.0, 3.0, 1.0]]), valid) == pytest.approx(expected)
    assert opr(np.array([[2.0, 3.0, 1.0]]), valid) == pytest.approx(2 / 3)
    assert normalised_score(np.array([3.0]), np.array([1.0]), np.array([5.0])) == 0.5


def test_normalise_levels_by_hand_leaves_the_last_level_alone():
    adv = np.array([[0.1, 1.0, 2.0], [0.3, 1.0, -2.0], [0.2, 1.0, 0.5]])
    out = normalise_levels(adv, eps=0.0)
    std = np.sqrt(((0.1 - 0.2) ** 2 + (0.3 - 0.2) ** 2) / 3)  # population std of (0.1, 0.3, 0.2)
    np.testing.assert_allclose(out[:, 0], [-0.1 / std, 0.1 / std, 0.0], atol=1e-12)
    np.testing.assert_array_equal(out[:, 1], [0.0, 0.0, 0.0])  # no spread: centred, not divided by 0
    np.testing.assert_array_equal(out[:, 2], adv[:, 2])  # the terminal z-score is untouched
    np.testing.assert_array_equal(adv[:, 0], [0.1, 0.3, 0.2])  # input not modified
    np.testing.assert_allclose(normalise_levels(adv, levels=slice(2, 3), eps=0.0)[:, 2],
                               (adv[:, 2] - adv[:, 2].mean()) / adv[:, 2].std())


def test_level_diagnostics_by_hand():
    logp_old = torch.log(torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    logp = torch.log(torch.tensor([[0.75, 0.5], [0.5, 0.55]]))  # ratios (1.5, 1.0) and (1.0, 1.1)
    d = level_diagnostics(logp, logp_old, clip_eps=0.2)
    k3 = lambda r: (r - 1) - np.log(r)  # noqa: E731
    np.testing.assert_allclose(d["approx_kl"], [(k3(1.5) + 0) / 2, (0 + k3(1.1)) / 2], rtol=1e-5)
    np.testing.assert_allclose(d["clipfrac"], [0.5, 0.0])  # only the 1.5 ratio is outside [0.8, 1.2]


def test_explained_variance_by_hand():
    target = np.array([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(target, target) == 1.0
    assert explained_variance(np.full(4, 2.5), target) == pytest.approx(0.0)  # the mean explains nothing
    # residuals (0.5, -0.5, 0.5, -0.5): var 0.25 against var(target) 1.25 -> 0.8
    assert explained_variance(target + np.array([0.5, -0.5, 0.5, -0.5]), target) == pytest.approx(0.8)
    per_level = explained_variance(np.stack([target, np.zeros(4)], 1), np.stack([target, np.ones(4)], 1))
    assert per_level[0] == 1.0 and np.isnan(per_level[1])  # a constant target has no variance to explain
