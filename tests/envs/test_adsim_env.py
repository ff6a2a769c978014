"""AdSim-v0 behaves as a Gymnasium env should, and its episodes respect the personalised trie."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envs.adsim_env import AdSimEnv
from envs.vector_env import AdSimVectorEnv


def _rollout(env, seed, n_episodes, policy="first"):
    out = []
    obs, info = env.reset(seed=seed)
    for _ in range(n_episodes):
        done, rewards = False, []
        while not done:
            legal = np.flatnonzero(obs["action_mask"])
            action = legal[0] if policy == "first" else env.np_random.choice(legal)
            obs, reward, done, truncated, info = env.step(action)
            rewards.append(reward)
        out.append((info["request_id"], info["ad_id"], tuple(rewards)))
        obs, info = env.reset()
    return out


def test_check_env_passes_without_warnings(env_fixture):
    env = AdSimEnv(**env_fixture.kwargs())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
    assert [str(w.message) for w in caught] == []
    vec = AdSimVectorEnv(4, **env_fixture.kwargs())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(vec.single, skip_render_check=True)
    assert [str(w.message) for w in caught] == []


def test_same_seed_same_episodes_bit_for_bit(env_fixture):
    a = _rollout(AdSimEnv(**env_fixture.kwargs(process_rewards=True)), 5, 30, policy="random")
    b = _rollout(AdSimEnv(**env_fixture.kwargs(process_rewards=True)), 5, 30, policy="random")
    assert a == b
    c = _rollout(AdSimEnv(**env_fixture.kwargs(process_rewards=True)), 6, 30, policy="random")
    assert a != c


def test_set_state_round_trips(env_fixture):
    env = AdSimEnv(**env_fixture.kwargs())
    obs, _ = env.reset(seed=3)
    obs, *_ = env.step(int(np.flatnonzero(obs["action_mask"])[0]))
    state = env.get_state()
    legal = np.flatnonzero(obs["action_mask"])
    first = [env.step(int(legal[-1]))]
    restored = env.set_state(state)
    for key in obs:
        np.testing.assert_array_equal(restored[key], obs[key])
    second = [env.step(int(legal[-1]))]
    assert first[0][1] == second[0][1] and first[0][4] == second[0][4]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), arr_ratio=st.sampled_from([0.0, 0.5, 1.0]), process=st.booleans())
def test_random_legal_policy_is_never_illegal_and_resolves_allowed_ads(env_fixture, seed, arr_ratio, process):
    env = AdSimEnv(**env_fixture.kwargs(arr_ratio=arr_ratio, process_rewards=process))
    sim = env_fixture.context.simulator
    obs, _ = env.reset(seed=seed)
    for _ in range(60):
        done = False
        while not done:
            assert obs["action_mask"].any()
            obs, reward, done, _, info = env.step(env.np_random.choice(np.flatnonzero(obs["action_mask"])))
            assert not info["illegal_action"] and np.isfinite(reward)
        requests = {k: v.copy() for k, v in env.episodes.requests.items()}
        assert info["ad_id"] >= 0 and sim.allowed(requests)[0, info["ad_id"]]
        assert (sim.ad_codes[info["ad_id"]] == obs["prefix"]).all()
        obs, _ = env.reset()


def test_illegal_actions_terminate_or_raise(env_fixture):
    env = AdSimEnv(**env_fixture.kwargs(illegal_penalty=-2.0))
    obs, _ = env.reset(seed=0)
    illegal = int(np.flatnonzero(obs["action_mask"] == 0)[0])
    _, reward, terminated, _, info = env.step(illegal)
    assert terminated and info["illegal_action"] and reward == -2.0
    with pytest.raises(RuntimeError, match="after the episode ended"):
        env.step(0)
    strict = AdSimEnv(**env_fixture.kwargs(illegal_action="raise"))
    obs, _ = strict.reset(seed=0)
    with pytest.raises(ValueError, match="illegal action"):
        strict.step(int(np.flatnonzero(obs["action_mask"] == 0)[0]))
    with pytest.raises(ValueError, match="not an integer"):
        strict.step(10**6)
    with pytest.raises(ValueError, match="not an integer"):
        strict.step(1.5)
    with pytest.raises(ValueError, match="option illegal_action: must be"):
        AdSimEnv(**env_fixture.kwargs(illegal_action="ignore"))


def test_oracle_bounds_every_policy(env_fixture):
    sim = env_fixture.context.simulator
    stream = env_fixture.context.requests
    requests = stream.sample(20, np.random.default_rng(0))
    allowed = sim.allowed(requests)
    sums = sim.trie.allowed_prefix_sums(allowed)
    rng = np.random.default_rng(1)
    paths = np.zeros((20, 8, sim.depth), dtype=np.int64)
    for d in range(sim.depth):  # random legal paths, 8 per request
        for k in range(8):
            mask = sim.trie.legal_mask(paths[:, k, :d], sums)
            paths[:, k, d] = [rng.choice(np.flatnonzero(m)) for m in mask]
    for source in ("model", "truth"):
        best, best_ad = sim.oracle(requests, source)
        ev = sim.evaluate(requests, paths, source)
        assert ev.valid.all()
        assert (best[:, None] >= ev.final_value - 1e-12).all()
        assert allowed[np.arange(20), best_ad].all()


def test_evaluate_rejects_wrong_shapes_and_flags_invalid_paths(env_fixture):
    sim = env_fixture.context.simulator
    requests = env_fixture.context.requests.sample(3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="paths must be"):
        sim.evaluate(requests, np.zeros((3, 2, sim.depth + 1), dtype=np.int64))
    bogus = np.full((3, 1, sim.depth), sim.trie.width - 1)
    ev = sim.evaluate(requests, bogus)
    assert not ev.valid.any() and (ev.ad_id == -1).all() and (ev.final_value == 0).all()
    with pytest.raises(ValueError, match="reward_source"):
        sim.evaluate(requests, bogus, "oracle")


def test_vector_env_matches_autoreset_semantics(env_fixture):
    vec = AdSimVectorEnv(8, **env_fixture.kwargs())
    obs, info = vec.reset(seed=0)
    assert obs["action_mask"].shape == (8, vec.single.width)
    finished = np.zeros(8, dtype=bool)
    for step in range(vec.single.depth):
        actions = np.array([np.flatnonzero(m)[0] for m in obs["action_mask"]])
        obs, reward, terminated, truncated, info = vec.step(actions)
        assert terminated.all() == (step == vec.single.depth - 1)
        finished |= terminated
    assert finished.all() and (info["ad_id"] >= 0).all() and (obs["action_mask"].sum(1) == 0).all()
    # the next step restarts every slot: reward 0, nothing terminates, fresh prefixes
    obs, reward, terminated, _, _ = vec.step(np.zeros(8, dtype=np.int64))
    assert not terminated.any() and (reward == 0).all() and (obs["prefix"] == -1).all()
    with pytest.raises(ValueError, match="shape"):
        vec.step(np.zeros(3, dtype=np.int64))
