"""The compiled backend is the numpy reference, exactly: same observations, masks, rewards, terminations and info.

Seeded episodes run through both backends side by side (single env and native vector env; ARR on, process rewards
on; model and truth rewards; random legal actions with some illegal ones), and every value is compared for exact
equality (dtypes included). The simulator entry points with a ``backend`` are compared on random batches.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers AdSim-v0)
from adsim.simulator import kernels
from adsim.simulator.simulator import zscore
from envs.adsim_env import AdSimEnv
from envs.vector_env import AdSimVectorEnv

SETTINGS = [
    pytest.param({"arr_ratio": 0.3, "process_rewards": True}, id="arr-process"),
    pytest.param({"arr_ratio": 0.3, "process_rewards": True, "reward_source": "truth", "reward": "ecpm"},
                 id="arr-process-truth"),
    pytest.param({"arr_ratio": 0.0, "process_alphas": (0.0, 0.5), "process_rewards": True}, id="alpha0"),
]


def assert_same(a, b, where=""):
    """Exact equality of nested observations / info: same keys, types, dtypes, shapes and values."""
    assert type(a) is type(b), f"{where}: {type(a)} vs {type(b)}"
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def _actions(rng, mask, illegal_rate=0.03):
    """A random legal action (a random integer indexed into the legal set), sometimes an illegal one."""
    legal = np.flatnonzero(mask)
    if rng.random() < illegal_rate or len(legal) == 0:
        return int(rng.integers(len(mask)))
    return int(legal[rng.integers(len(legal))])


def _single_env_trace(env, seed, n_episodes):
    rng = np.random.default_rng(seed)
    trace = [env.reset(seed=seed)]
    obs = trace[0][0]
    for _ in range(n_episodes):
        done = False
        while not done:
            out = env.step(_actions(rng, obs["action_mask"]))
            trace.append(out)
            obs, done = out[0], out[2]
        trace.append(env.reset())
        obs = trace[-1][0]
    return trace


@pytest.mark.parametrize("settings", SETTINGS)
def test_single_env_episodes_are_identical(env_fixture, settings):
    for seed in (0, 1):
        ref = _single_env_trace(AdSimEnv(**env_fixture.kwargs(backend="reference", **settings)), seed, 400)
        fast = _single_env_trace(AdSimEnv(**env_fixture.kwargs(backend="compiled", **settings)), seed, 400)
        assert len(ref) == len(fast)
        for i, (a, b) in enumerate(zip(ref, fast, strict=True)):
            assert_same(a, b, f"seed {seed} call {i}")
    rewards = [out[1] for out in fast if len(out) == 5]
    assert any(r > 0 for r in rewards) and any(r == -1.0 for r in rewards)  # episodes scored, some illegal


@pytest.mark.parametrize("settings", SETTINGS[:2])
def test_vector_env_steps_are_identical(env_fixture, settings):
    vecs = [AdSimVectorEnv(16, **env_fixture.kwargs(backend=b, **settings)) for b in ("reference", "compiled")]
    outs = [vec.reset(seed=3) for vec in vecs]
    assert_same(*outs, "reset")
    rng = np.random.default_rng(3)
    for step in range(120):
        mask = outs[0][0]["action_mask"]
        actions = np.array([_actions(rng, m) for m in mask], dtype=np.int64)
        outs = [vec.step(actions) for vec in vecs]
        assert_same(*outs, f"step {step}")
    assert outs[0][2].dtype == bool


def test_gym_make_on_a_built_bundle_with_lightgbm_rewards(tiny_full_env):
    """The tiny preset through ``gym.make``: its LightGBM reward models and its world truth, both backends."""
    for source in ("model", "truth"):
        traces = [_single_env_trace(gym.make("AdSim-v0", scenario="tiny", backend=b, arr_ratio=0.3,
                                             process_rewards=True, reward_source=source), 7, 150)
                  for b in ("reference", "compiled")]
        for i, (a, b) in enumerate(zip(*traces, strict=True)):
            assert_same(a, b, f"{source} call {i}")


@pytest.fixture(scope="module")
def tiny_full_env():
    from reward_models.pipeline import ensure_scenario

    return ensure_scenario("tiny", seed=0, progress=False)


def test_state_round_trips_on_the_compiled_backend(env_fixture):
    env = AdSimEnv(**env_fixture.kwargs(backend="compiled", arr_ratio=1.0))
    obs, _ = env.reset(seed=2)
    obs, *_ = env.step(int(np.flatnonzero(obs["action_mask"])[0]))
    state = env.get_state()
    first = env.step(int(np.flatnonzero(obs["action_mask"])[-1]))
    assert_same(env.set_state(state), obs)
    assert_same(env.step(int(np.flatnonzero(obs["action_mask"])[-1])), first)


def test_backend_is_validated(env_fixture):
    with pytest.raises(ValueError, match=r"backend.*'reference'.*'compiled'.*'numba'"):
        AdSimEnv(**env_fixture.kwargs(backend="numba"))
    with pytest.raises(ValueError, match=r"backend.*'fast'"):
        AdSimVectorEnv(2, **env_fixture.kwargs(backend="fast"))
    with pytest.raises(ValueError, match=r"backend.*'numba'"):
        kernels.check_backend("numba")


# ---------------------------------------------------------------------------------------------- entry points
@pytest.fixture(scope="module")
def batch(env_fixture):
    ctx = env_fixture.context
    sim = ctx.simulator
    requests = ctx.requests.sample(64, np.random.default_rng(5), arr_ratio=0.3)
    allowed = sim.allowed(requests)
    rng = np.random.default_rng(6)
    sums = sim.trie.allowed_prefix_sums(allowed)
    paths = np.zeros((64, 6, sim.depth), dtype=np.int64)
    for d in range(sim.depth):  # random legal paths, then a few broken ones
        for k in range(6):
            mask = sim.trie.legal_mask(paths[:, k, :d], sums)
            paths[:, k, d] = [rng.choice(np.flatnonzero(m)) if m.any() else 0 for m in mask]
    paths[::7, 1, -1] = sim.trie.width - 1
    paths[::5, 2, 0] = -1
    return requests, allowed, paths


def test_evaluate_and_process_rewards_match_the_reference(env_fixture, batch, monkeypatch):
    sim = env_fixture.context.simulator
    requests, allowed, paths = batch
    for given in (None, allowed, allowed & (np.arange(allowed.shape[1]) % 3 > 0)):
        ref = sim.evaluate(requests, paths, allowed=given)
        assert_same(ref, sim.evaluate(requests, paths, allowed=given, backend="compiled"))
        pr = sim.process_rewards(requests, paths, allowed=given)
        assert_same(pr, sim.process_rewards(requests, paths, allowed=given, backend="compiled"))
        assert (pr > 0).any()
    # imported RTB logs carry market prices: lost auctions pay 0
    monkeypatch.setattr(sim, "market_price", np.random.default_rng(0).random(50) * np.median(ref.ecpm))
    ref = sim.evaluate(requests, paths)
    assert ref.won is not None and ref.won.any() and not ref.won[ref.valid].all()
    assert_same(ref, sim.evaluate(requests, paths, backend="compiled"))


def test_observations_and_eligibility_match_the_reference(env_fixture, batch):
    ctx = env_fixture.context
    requests, allowed, _ = batch
    assert_same(ctx.observations.build(requests), ctx.observations.build(requests, backend="compiled"))
    assert_same(allowed, ctx.simulator.allowed(requests, backend="compiled"))


def test_zscore_and_pairwise_sum_follow_numpy():
    rng = np.random.default_rng(0)
    for n in [*range(0, 300), 1000, 4099]:
        a = rng.normal(size=n) * (rng.random(n) < 0.7)
        assert kernels.pairwise_sum(a, 0, n) == a.sum()
    for k in (1, 2, 7, 9, 130, 300):
        values = rng.normal(size=(5, k)) * 1e3
        valid = rng.random((5, k)) < 0.6
        valid[0] = False
        values[1] = 4.0
        got = np.zeros(5 * k)
        kernels.zscore_rows(values.ravel(), valid.ravel(), 5, k, got)
        np.testing.assert_array_equal(got.reshape(5, k), zscore(values, valid))
