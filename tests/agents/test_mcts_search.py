"""MCTS over SID trees: known answers (full enumeration finds the oracle), budget growth, legality, determinism,
the MCTS-PPO PriorValueFn hook, and the evaluation helpers every baseline is scored with. No Ray here."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adsim.simulator.requests import take
from agents.mcts import (
    MCTS,
    Evaluator,
    MCTSConfig,
    RequestTries,
    candidate_trajectories,
    greedy_ecpm_ads,
    held_out_requests,
    logged_ads,
)
from agents.mcts.paths import observations, random_legal_paths, sample_masked
from envs.adsim_env import AdSimEnv


@pytest.fixture(scope="module")
def ctx(env_fixture):
    return env_fixture.context


@pytest.fixture(scope="module")
def evaluator(ctx):
    return Evaluator(ctx.simulator, held_out_requests(ctx, "test", 60, seed=1), seed=0)


def _search(ctx, requests, **config):
    return MCTS(ctx.simulator, MCTSConfig(**config)).search(requests)


def _assert_legal(ctx, tries, paths):
    ev = ctx.simulator.evaluate(tries.requests, paths[:, None, :], allowed=tries.allowed)
    assert ev.valid.all()
    assert tries.allowed[np.arange(len(paths)), ev.ad_id[:, 0]].all()
    return ev


def test_enough_simulations_reach_95_percent_of_the_oracle(ctx, evaluator):
    result = _search(ctx, evaluator.requests, num_simulations=256)
    values = evaluator.path_values(result.path)["model"]
    assert values.mean() >= 0.95 * evaluator.oracle["model"].mean()
    assert evaluator.summary({"model": values})["normalised_model"] >= 0.95


def test_full_enumeration_finds_every_requests_oracle(ctx, evaluator):
    result = _search(ctx, evaluator.requests, num_simulations=100_000)  # stops once every tree is exhausted
    values = evaluator.path_values(result.path)["model"]
    np.testing.assert_allclose(values, evaluator.oracle["model"])
    legal_leaves = [len(np.unique(ctx.simulator.ad_codes[np.flatnonzero(row)], axis=0))
                    for row in evaluator.tries.allowed]
    np.testing.assert_array_equal(result.n_scored, legal_leaves)


def test_score_grows_with_budget(ctx, evaluator):
    means = [evaluator.path_values(_search(ctx, evaluator.requests, num_simulations=n).path)["model"].mean()
             for n in (4, 16, 64, 256)]
    assert means == sorted(means) and means[-1] > means[0]


def test_result_is_consistent_with_the_simulator(ctx, evaluator):
    scale = 0.5
    search = MCTS(ctx.simulator, MCTSConfig(num_simulations=32, top_k=5), value_scale=scale)
    result = search.search(evaluator.requests)
    b, depth, width = len(evaluator), ctx.simulator.depth, ctx.simulator.trie.width
    ev = _assert_legal(ctx, evaluator.tries, result.path)
    np.testing.assert_allclose(result.value, ev.final_value[:, 0] * scale)
    np.testing.assert_array_equal(result.ad_id, ev.ad_id[:, 0])
    # the best scored path is returned, and it heads the top-K list, which is sorted and distinct
    np.testing.assert_array_equal(result.paths[:, 0], result.path)
    assert result.paths.shape == (b, 5, depth) and result.path_values.shape == (b, 5)
    assert (np.diff(np.nan_to_num(result.path_values, nan=-np.inf), axis=1) <= 0).all()
    for row in result.paths:
        kept = row[row[:, 0] >= 0]
        assert len(np.unique(kept, axis=0)) == len(kept)
    z = result.normalised_path_rewards()
    np.testing.assert_allclose(np.nanmean(z, axis=1), 0.0, atol=1e-6)
    # MCTS-PPO trajectories: every candidate is a legal token sequence with its eq. 17 reward
    traj = candidate_trajectories(result, evaluator.tries)
    n = int((result.paths[..., 0] >= 0).sum())
    assert traj["path"].shape == (n, depth) and traj["mask"].shape == (n, depth, width)
    assert traj["mask"][np.arange(n)[:, None], np.arange(depth), traj["path"]].all()
    np.testing.assert_allclose(traj["reward"], z[~np.isnan(z)])
    # visit-count policies: a distribution over legal codes at every level of the chosen path
    assert result.policy.shape == (b, depth, width)
    np.testing.assert_allclose(result.policy[:, 0].sum(axis=1), 1.0)
    root_mask = evaluator.tries.legal_mask(np.zeros((b, 0), dtype=np.int64))
    assert (result.policy[:, 0][~root_mask] == 0).all()
    assert np.isfinite(result.q[:, 0]).all() and np.isfinite(result.root_value).all()


def test_same_seed_same_search_other_seed_other_search(ctx, evaluator):
    a = _search(ctx, evaluator.requests, num_simulations=8, seed=3)
    b = _search(ctx, evaluator.requests, num_simulations=8, seed=3)
    c = _search(ctx, evaluator.requests, num_simulations=8, seed=4)
    for x, y in zip(a[:-1], b[:-1], strict=True):  # every field but the wall time
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.path, c.path)


@pytest.mark.parametrize("config", [dict(backup="max"), dict(final="visits"), dict(unvisited="fpu"),
                                    dict(rule="puct"), dict(exploration=0.0), dict(batch_size=7)])
def test_every_variant_returns_legal_paths_and_beats_random(ctx, evaluator, config):
    result = _search(ctx, evaluator.requests, num_simulations=64, **config)
    _assert_legal(ctx, evaluator.tries, result.path)
    assert evaluator.summary(evaluator.path_values(result.path))["normalised_model"] > 0.3


class OracleGuide:
    """A PriorValueFn that knows each request's best ad: all prior mass on its codes, its value everywhere."""

    def __init__(self, ctx, requests):
        sim = ctx.simulator
        self.sim, self.ids = sim, requests["request_id"]
        self.best_value, best_ad = sim.oracle(requests)
        self.best_codes = sim.ad_codes[best_ad]
        self.calls = []

    def __call__(self, requests, prefixes):
        self.calls.append(prefixes.copy())
        rows = np.searchsorted(self.ids, requests["request_id"])
        level = (prefixes >= 0).sum(axis=1)
        priors = np.full((len(rows), self.sim.trie.width), 1e-3)
        priors[np.arange(len(rows)), self.best_codes[rows, level]] = 1.0
        return priors, self.best_value[rows]


def test_puct_follows_good_priors_to_the_oracle_with_few_simulations(ctx, evaluator):
    requests = take(evaluator.requests, np.argsort(evaluator.requests["request_id"]))
    guide = OracleGuide(ctx, requests)
    search = MCTS(ctx.simulator, MCTSConfig(num_simulations=8, exploration=0.5), prior_value=guide)
    assert search.puct
    result = search.search(requests)
    np.testing.assert_allclose(result.value, guide.best_value)
    for prefixes in guide.calls:  # the protocol: (B, L) prefixes, -1 on open levels, at least one open
        assert prefixes.shape[1] == ctx.simulator.depth
        level = (prefixes >= 0).sum(axis=1)
        assert (level < ctx.simulator.depth).all()
        assert all((p[:k] >= 0).all() and (p[k:] == -1).all() for p, k in zip(prefixes, level, strict=True))


def test_value_head_only_search_still_returns_a_scored_path(ctx, evaluator):
    def flat(requests, prefixes):
        return np.ones((len(prefixes), ctx.simulator.trie.width)), np.zeros(len(prefixes))

    result = MCTS(ctx.simulator, MCTSConfig(num_simulations=3), prior_value=flat).search(evaluator.requests)
    _assert_legal(ctx, evaluator.tries, result.path)
    assert (result.n_scored >= 1).all()


def test_a_request_without_eligible_ads_gets_no_path(ctx, evaluator):
    allowed = evaluator.tries.allowed[:3].copy()
    allowed[1] = False
    result = MCTS(ctx.simulator, MCTSConfig(num_simulations=16)).search(take(evaluator.requests, np.arange(3)),
                                                                        allowed)
    assert (result.path[1] == -1).all() and result.value[1] == 0 and result.ad_id[1] == -1
    assert (result.policy[1] == 0).all() and result.n_scored[1] == 0
    assert (result.path[[0, 2]] >= 0).all()


# ---------------------------------------------------------------------------------------------- helpers
@settings(max_examples=25, deadline=None)
@given(weights=st.lists(st.lists(st.sampled_from([0.0, 0.0, 0.5, 1.0, 3.0]), min_size=5, max_size=5),
                        min_size=1, max_size=8), seed=st.integers(0, 2**32 - 1))
def test_sample_masked_never_picks_a_zero_weight(weights, seed):
    w = np.array(weights)
    choice = sample_masked(w, np.random.default_rng(seed))
    empty = w.sum(axis=1) == 0
    assert (choice[empty] == -1).all()
    assert (w[~empty, choice[~empty]] > 0).all()


def test_random_legal_paths_and_observations_match_the_env(ctx, env_fixture, evaluator):
    tries = evaluator.tries
    paths = random_legal_paths(tries, np.random.default_rng(0), k=4)
    for k in range(4):
        _assert_legal(ctx, tries, paths[:, k])
    # observations() of a prefix equal what the env shows after playing it
    env = AdSimEnv(**env_fixture.kwargs())
    obs, _ = env.reset(seed=5)
    one = RequestTries(ctx.simulator, env.episodes.requests)  # the request in flight (either backend)
    prefix = np.full((1, ctx.simulator.depth), -1)
    for d in range(ctx.simulator.depth):
        mine = observations(ctx, one, prefix)
        for key in obs:
            np.testing.assert_array_equal(mine[key][0], obs[key], err_msg=key)
        prefix[0, d] = np.flatnonzero(obs["action_mask"])[-1]
        obs, *_ = env.step(int(prefix[0, d]))


def test_evaluator_references_bound_every_baseline(ctx, evaluator):
    summary = {row["policy"]: row for row in evaluator.reference_rows()}
    assert summary["random legal"]["normalised_model"] == 0 and summary["oracle"]["normalised_model"] == 1
    oracle = evaluator.oracle["model"]
    for ads in (greedy_ecpm_ads(ctx.simulator, evaluator.tries), logged_ads(ctx, evaluator.requests)):
        values = evaluator.ad_values(ads)["model"]
        assert (values <= oracle + 1e-9).all() and (values >= 0).all()
    # the stand-in scorer's final_value is its eCPM, so greedy eCPM is the oracle here
    greedy = evaluator.ad_values(greedy_ecpm_ads(ctx.simulator, evaluator.tries))["model"]
    np.testing.assert_allclose(greedy, oracle)
