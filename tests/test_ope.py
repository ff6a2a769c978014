"""Off-policy estimators: hand-computed values, unbiasedness on a known bandit, bootstrap intervals, the Thompson
sampling fit, and the OBD benchmark end to end (on the generated stand-in and on the real sample)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from adsim import ope
from adsim.errors import AdSimDataError
from adsim.paths import PROJECT_ROOT


def _tiny() -> tuple[ope.BanditFeedback, np.ndarray, np.ndarray]:
    """Three rounds, two actions, by hand."""
    feedback = ope.BanditFeedback(action=[0, 1, 0], reward=[1.0, 0.0, 0.0], pscore=[0.5, 0.25, 0.5], n_actions=2)
    pi_e = np.array([[0.8, 0.2], [0.5, 0.5], [0.1, 0.9]])
    q = np.array([[0.6, 0.2], [0.3, 0.1], [0.4, 0.4]])
    return feedback, pi_e, q


def test_estimators_match_hand_computed_values():
    feedback, pi_e, q = _tiny()
    w = np.array([0.8 / 0.5, 0.5 / 0.25, 0.1 / 0.5])  # 1.6, 2.0, 0.2
    got = ope.estimate(feedback, pi_e, q)
    assert got["IPS"] == pytest.approx((1.6 * 1) / 3)
    assert got["SNIPS"] == pytest.approx(1.6 / (1.6 + 2.0 + 0.2))
    direct = np.array([0.8 * 0.6 + 0.2 * 0.2, 0.5 * 0.3 + 0.5 * 0.1, 0.1 * 0.4 + 0.9 * 0.4])
    assert got["DM"] == pytest.approx(direct.mean())
    assert got["DR"] == pytest.approx(np.mean(direct + w * (np.array([1.0, 0, 0]) - np.array([0.6, 0.1, 0.4]))))
    # the reference one-liners agree
    assert ope.ips(feedback.reward, w) == pytest.approx(got["IPS"])
    assert ope.snips(feedback.reward, w) == pytest.approx(got["SNIPS"])
    assert ope.dr(feedback.reward, w, q[[0, 1, 2], [0, 1, 0]], direct) == pytest.approx(got["DR"])


def test_dr_with_zero_model_is_ips_and_on_policy_snips_is_the_mean():
    feedback, pi_e, q = _tiny()
    got = ope.estimate(feedback, pi_e, np.zeros_like(q))
    assert got["DR"] == pytest.approx(got["IPS"]) and got["DM"] == 0
    behaviour = np.array([[0.5, 0.5], [0.75, 0.25], [0.5, 0.5]])
    assert ope.estimate(feedback, behaviour)["SNIPS"] == pytest.approx(feedback.reward.mean())


def test_sample_weights_equal_duplicated_rows():
    feedback, pi_e, q = _tiny()
    weighted = ope.BanditFeedback(feedback.action, feedback.reward, feedback.pscore, 2, sample_weight=[3, 1, 2])
    rows = np.repeat(np.arange(3), [3, 1, 2])
    duplicated = ope.BanditFeedback(feedback.action[rows], feedback.reward[rows], feedback.pscore[rows], 2)
    a, b = ope.estimate(weighted, pi_e, q), ope.estimate(duplicated, pi_e[rows], q[rows])
    assert a == pytest.approx(b)


def test_unbiased_on_a_known_bandit():
    rng = np.random.default_rng(0)
    n, n_actions = 60_000, 4
    ctr = np.array([0.02, 0.05, 0.10, 0.20])
    logging = np.array([0.4, 0.3, 0.2, 0.1])
    target = np.array([0.05, 0.05, 0.3, 0.6])
    action = rng.choice(n_actions, size=n, p=logging)
    feedback = ope.BanditFeedback(action, rng.random(n) < ctr[action], logging[action], n_actions)
    pi_e = np.broadcast_to(target, (n, n_actions))
    truth = float(target @ ctr)
    biased_q = np.broadcast_to(ctr * 0.5, (n, n_actions))
    table = ope.evaluate_policy(feedback, np.ascontiguousarray(pi_e), biased_q, n_boot=200, seed=1).set_index(
        "estimator")
    for name in ("IPS", "SNIPS", "DR"):
        assert table.loc[name, "estimate"] == pytest.approx(truth, rel=0.05)
        assert table.loc[name, "ci_low"] <= truth <= table.loc[name, "ci_high"]
    assert table.loc["DM", "estimate"] == pytest.approx(truth * 0.5)  # DM inherits the model's bias
    assert table.loc["DR", "se"] < table.loc["IPS", "se"]  # a reward model, even a biased one, cuts variance


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    feedback, pi_e, q = _tiny()
    a = ope.evaluate_policy(feedback, pi_e, q, n_boot=50, seed=3)
    b = ope.evaluate_policy(feedback, pi_e, q, n_boot=50, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert (a["ci_low"] <= a["estimate"] + 1e-12).all() and (a["estimate"] <= a["ci_high"] + 1e-12).all()
    truth = ope.on_policy_value(np.r_[np.ones(10), np.zeros(90)], n_boot=200)
    assert truth["value"] == pytest.approx(0.1) and truth["ci_low"] < 0.1 < truth["ci_high"]


def test_malformed_inputs_are_refused():
    feedback, pi_e, _ = _tiny()
    with pytest.raises(AdSimDataError, match="sum to 1"):
        ope.estimate(feedback, pi_e * 2)
    with pytest.raises(ValueError, match=r"\(n=3, A=2\)"):
        ope.estimate(feedback, pi_e[:2])
    with pytest.raises(AdSimDataError, match="propensities"):
        ope.BanditFeedback([0], [1.0], [0.0], 2)
    with pytest.raises(AdSimDataError, match="actions outside"):
        ope.BanditFeedback([2], [1.0], [0.5], 2)


def test_empirical_ctr_is_cross_fitted():
    rng = np.random.default_rng(5)
    n = 4000
    action, position = rng.integers(0, 5, n), rng.integers(0, 2, n)
    reward = rng.random(n) < 0.05 + 0.05 * action
    feedback = ope.BanditFeedback(action, reward, np.full(n, 0.1), 5, position=position)
    q = ope.empirical_ctr(feedback, 2, folds=2)
    assert q.shape == (n, 5) and ((q > 0) & (q < 1)).all()
    assert np.corrcoef(q.mean(axis=0), 0.05 + 0.05 * np.arange(5))[0, 1] > 0.9
    in_sample = ope.empirical_ctr(feedback, 2, folds=1)
    assert len(np.unique(in_sample[position == 0], axis=0)) == 1  # one table per slot without cross-fitting
    assert len(np.unique(q[position == 0], axis=0)) == 2  # one per fold with it


def test_thompson_simulation_and_fit():
    rng = np.random.default_rng(0)
    sure = ope.thompson_action_dist(np.array([1e5, 9e5, 5e5]), np.array([9e5, 1e5, 5e5]), 2, 500, rng)
    np.testing.assert_array_equal(sure, [[0, 1, 0], [0, 0, 1]])  # near-certain posteriors rank deterministically
    mean = np.array([0.05, 0.12, 0.02, 0.2, 0.08])
    alpha, beta = 40 * mean, 40 * (1 - mean)  # one concentration, as the fit assumes
    dist = ope.thompson_action_dist(alpha, beta, 2, 200_000, rng)
    assert np.allclose(dist.sum(axis=1), 1)
    position = rng.integers(0, 2, 20_000)
    action = np.array([rng.choice(5, p=dist[p]) for p in position])
    fit = ope.thompson_policy(action, position, 5, 2, concentrations=(10.0, 40.0, 160.0), n_sim=50_000, seed=0)
    assert np.abs(fit.policy.table - dist).max() < 0.03
    empirical = ope.empirical_position_policy(action, position, 5, 2)
    assert np.abs(empirical.table - dist).max() < 0.03
    fb = ope.BanditFeedback(action, np.zeros(len(action)), np.full(len(action), 0.2), 5, position=position)
    np.testing.assert_array_equal(fit.policy.action_probabilities(fb), fit.policy.table[position])


def test_ope_obd_benchmark_quick(tmp_path, data_env):
    done = subprocess.run([sys.executable, "-m", "benchmarks.ope_obd", "--quick", "--out", str(tmp_path)],
                          cwd=PROJECT_ROOT, env=data_env, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(tmp_path / "ope_obd.csv")
    assert {"IPS", "SNIPS", "DM", "DR"} <= set(table["estimator"])
    assert table["relative_error"].notna().all() and (table["on_policy_ctr"] > 0).all()
    assert set(table["reward_model"]) >= {"empirical CTR (2-fold)", "LightGBM reward model"}
    assert "Command: `python -m benchmarks.ope_obd --quick" in (tmp_path / "ope_obd.md").read_text()
