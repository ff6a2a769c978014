"""The simulator's two scoring rules, checked against a direct computation in both backends.

* Process rewards read GPR's per-token popularity under the path's parent, P_l(t | z_<l); the unconditional
  P_l(t) stays as ``popularity="unconditional"``.
* One ad-resolution rule: a path shows the eligible ad the reward models rank first on its leaf, whatever source
  scores it; ``reward_source="truth"`` scores that same ad with the world's truth (it never picks another).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from conftest import TruthLikeScorer

import envs  # noqa: F401  (registers AdSim-v0)
from adsim import Scenario
from adsim.sid.pipeline import bundle_sids
from adsim.simulator.requests import take
from adsim.simulator.scoring import Scores
from adsim.simulator.simulator import ProcessRewardConfig, Simulator
from envs.context import SimulatorContext
from envs.observation import ObservationBuilder


class NoisyModel:
    """The truth's pCTR times a fixed per-ad factor: a reward model that ranks a leaf's ads differently."""

    def __init__(self, truth: TruthLikeScorer, n_ads: int):
        self.truth = truth
        self.factor = np.random.default_rng(3).lognormal(0.0, 0.8, n_ads)

    def score(self, requests, ad_ids):
        s = self.truth.score(requests, ad_ids)
        f = self.factor[ad_ids]
        return Scores(s.pctr * f, s.pcvr, s.ecpm * f, s.final_value * f)


def _simulator(bundle, popularity="prefix") -> tuple[Simulator, Scenario]:
    scenario = Scenario(bundle)
    sids = bundle_sids(scenario)
    truth = TruthLikeScorer(scenario)
    model = NoisyModel(truth, len(sids.ad_codes))
    sim = Simulator(scenario, sids.ad_codes, tuple(sids.tokenizer.codebook_sizes), model, truth,
                    ProcessRewardConfig(alphas=(0.2, 0.1), popularity=popularity), sids.ad_index)
    return sim, scenario


@pytest.fixture(scope="module")
def two_sources(tiny_sid_bundle):
    sim, scenario = _simulator(tiny_sid_bundle)
    ctx = SimulatorContext(scenario, sim, ObservationBuilder(scenario, bundle_sids(scenario).ad_codes,
                                                             bundle_sids(scenario).organic_codes), "train")
    requests = ctx.requests.sample(96, np.random.default_rng(1), arr_ratio=0.3)
    allowed = sim.allowed(requests)
    sums = sim.trie.allowed_prefix_sums(allowed)
    rng = np.random.default_rng(2)
    paths = np.zeros((96, 8, sim.depth), dtype=np.int64)
    for d in range(sim.depth):
        for k in range(8):
            mask = sim.trie.legal_mask(paths[:, k, :d], sums)
            paths[:, k, d] = [rng.choice(np.flatnonzero(m)) if m.any() else 0 for m in mask]
    return sim, ctx, requests, allowed, paths


# ---------------------------------------------------------------------------------------------- popularity
def _direct_process_rewards(sim: Simulator, requests, paths, allowed, conditional: bool) -> np.ndarray:
    """r_l = alpha_l * max(0, P(z_l) - mean of P over the legal codes), one request and path at a time."""
    imp, req = sim.scenario.table("impressions"), sim.scenario.table("requests").set_index("request_id")
    succ = imp[imp["click"].to_numpy()].join(req[["user_id", "ts"]], on="request_id")
    by_user = {u: g.sort_values("ts", kind="stable") for u, g in succ.groupby("user_id")}
    sums = sim.trie.allowed_prefix_sums(allowed)
    b, k, depth = paths.shape
    out = np.zeros((b, k, depth - 1))
    for i in range(b):
        g = by_user.get(int(requests["user_id"][i]))
        ads = np.zeros(0, dtype=np.int64) if g is None else g["ad_id"].to_numpy()[g["ts"].to_numpy() <
                                                                                 requests["ts"][i]]
        codes = sim.ad_codes[ads[-sim.process.history:]]
        for j in range(k):
            for level in range(depth - 1):
                shares = (codes[:, :level] == paths[i, j, :level]).all(axis=1) if conditional else np.ones(
                    len(codes), dtype=bool)
                p = np.bincount(codes[shares, level], minlength=sim.trie.width) / max(shares.sum(), 1)
                legal = sim.trie.legal_mask(paths[i:i + 1, j, :level], sums[i:i + 1])[0]
                mean = p[legal].sum() / max(legal.sum(), 1)
                out[i, j, level] = sim.process.alphas[level] * max(0.0, p[paths[i, j, level]] - mean)
    return out


def test_process_rewards_read_popularity_under_the_prefix(tiny_sid_bundle, two_sources):
    sim, _, requests, allowed, paths = two_sources
    flat, _ = _simulator(tiny_sid_bundle, popularity="unconditional")
    conditional = sim.process_rewards(requests, paths, allowed=allowed)
    unconditional = flat.process_rewards(requests, paths, allowed=allowed)
    np.testing.assert_allclose(conditional, _direct_process_rewards(sim, requests, paths, allowed, True),
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(unconditional, _direct_process_rewards(flat, requests, paths, allowed, False),
                               rtol=1e-12, atol=1e-15)
    # the first level has no parent; below it the parent changes the rewards
    np.testing.assert_array_equal(conditional[:, :, 0], unconditional[:, :, 0])
    assert (conditional[:, :, 1] != unconditional[:, :, 1]).mean() > 0.05
    for s in (sim, flat):
        ref = s.process_rewards(requests, paths, allowed=allowed)
        np.testing.assert_array_equal(ref, s.process_rewards(requests, paths, allowed=allowed, backend="compiled"))
        np.testing.assert_array_equal(ref, s.process_rewards(requests, paths, backend="compiled"))


def test_popularity_option_is_checked():
    with pytest.raises(ValueError, match="popularity.*'parent'"):
        ProcessRewardConfig(popularity="parent")
    from adsim.errors import AdSimOptionError
    from envs.options import EnvOptions

    with pytest.raises(AdSimOptionError, match="process_popularity"):
        EnvOptions(process_popularity="parent")


# ---------------------------------------------------------------------------------------------- resolution
@pytest.mark.parametrize("backend", ["reference", "compiled"])
def test_truth_scores_the_ad_the_reward_models_resolve(two_sources, backend):
    sim, _, requests, allowed, paths = two_sources
    model = sim.evaluate(requests, paths, "model", allowed=allowed, backend=backend)
    truth = sim.evaluate(requests, paths, "truth", allowed=allowed, backend=backend)
    np.testing.assert_array_equal(truth.ad_id, model.ad_id)
    np.testing.assert_array_equal(truth.valid, model.valid)
    rows, cols = np.nonzero(model.valid)
    direct = sim.scorer("truth").score(take(requests, rows), model.ad_id[rows, cols][:, None])
    np.testing.assert_array_equal(truth.final_value[rows, cols], direct.final_value[:, 0])
    np.testing.assert_array_equal(truth.pctr[rows, cols], direct.pctr[:, 0])
    # on leaves of several ads the truth's own favourite is sometimes another ad: that is not what is shown
    best_truth = np.full(model.ad_id.shape, -1)
    node, start, end = sim.trie.leaf_ranges(paths.reshape(-1, sim.depth))
    for c, (lo, hi) in enumerate(zip(start, end, strict=True)):
        b = c // paths.shape[1]
        ads = [a for a in sim.trie.order[lo:hi] if allowed[b, a]] if node[c] >= 0 else []
        if ads:
            values = sim.scorer("truth").score(take(requests, np.full(len(ads), b)), np.array(ads)[:, None]).ecpm
            best_truth.flat[c] = ads[int(np.argmax(values[:, 0]))]
    assert (best_truth[model.valid] != model.ad_id[model.valid]).any()


def test_both_backends_agree_under_truth_with_market_prices(two_sources, monkeypatch):
    sim, _, requests, allowed, paths = two_sources
    ref = sim.evaluate(requests, paths, "truth", allowed=allowed)
    monkeypatch.setattr(sim, "market_price", np.random.default_rng(0).random(40) * np.median(ref.ecpm))
    ref = sim.evaluate(requests, paths, "truth")
    fast = sim.evaluate(requests, paths, "truth", backend="compiled")
    for name in ref._fields:
        np.testing.assert_array_equal(getattr(ref, name), getattr(fast, name), err_msg=name)
    # the auction sees the served model's bid: a won slot is one whose model eCPM met the price
    model = sim.evaluate(requests, paths, "model")
    np.testing.assert_array_equal(ref.won, model.won)
    assert ref.won.any() and not ref.won[ref.valid].all()


@pytest.mark.parametrize("backend", ["reference", "compiled"])
def test_env_under_truth_shows_the_models_ad(two_sources, backend):
    _, ctx, *_ = two_sources
    ads = {}
    for source in ("model", "truth"):
        env = gym.make("AdSim-v0", scenario=str(ctx.scenario.path), context=ctx, reward_source=source,
                       backend=backend)
        rng = np.random.default_rng(0)
        obs, _ = env.reset(seed=4)
        shown = []
        for _ in range(40):
            done = False
            while not done:
                legal = np.flatnonzero(obs["action_mask"])
                obs, _, done, _, info = env.step(int(legal[rng.integers(len(legal))]))
            shown.append(info["ad_id"])
            obs, _ = env.reset()
        ads[source] = shown
    assert ads["truth"] == ads["model"]
