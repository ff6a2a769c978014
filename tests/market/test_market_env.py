"""AdSimMarket-v0: Gymnasium's checker, options named in errors, same seed and day give the same ledger, greedy eCPM
spends a small budget early and the ad leaves the trie, the env and the baselines' replay agree, and no ad is
billed beyond its budget over many seeded days."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import adsim  # noqa: F401  (registers the envs)
from adsim.errors import AdSimOptionError
from adsim.simulator.market import Market, MarketConfig, requests_of_day
from agents.market import GREEDY, MarketBaseline, greedy_ecpm, market_baselines, replay_day
from envs.market_env import AdSimMarketEnv

DAY = 2


def make(env_fixture, **options) -> AdSimMarketEnv:
    return gym.make("AdSimMarket-v0", **env_fixture.kwargs(day=DAY, **options)).unwrapped


def greedy_action(env: AdSimMarketEnv) -> int:
    """The code, at the current level, of the allowed ad with the highest model eCPM (greedy eCPM in the env)."""
    allowed = env.episodes.allowed[0]
    ad = int(np.argmax(np.where(allowed, env.book.ecpm[0], -np.inf)))
    return int(env.ctx.simulator.ad_codes[ad, int(env.episodes.level[0])])


def play_day(env: AdSimMarketEnv, seed: int, policy) -> list[dict]:
    """One episode (a day); the info of every request that ended."""
    obs, _ = env.reset(seed=seed)
    ended, done = [], False
    while not done:
        obs, _, done, _, info = env.step(policy(env, obs))
        if "revenue_today" in info:
            ended.append(info)
    return ended


def random_legal(rng: np.random.Generator):
    return lambda env, obs: int(rng.choice(np.flatnonzero(obs["action_mask"])))


def test_check_env_passes_without_warnings(env_fixture):
    env = gym.make("AdSimMarket-v0", **env_fixture.kwargs(max_requests=40))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, skip_render_check=True)
    assert [str(w.message) for w in caught] == []
    obs, _ = env.reset(seed=0)
    assert obs["budget_share"].shape == obs["action_mask"].shape
    assert (obs["budget_share"][obs["action_mask"] == 1] == 1.0).all()  # nothing spent yet
    assert (obs["budget_share"][obs["action_mask"] == 0] == 0.0).all()


@pytest.mark.parametrize(("option", "value"), [("billing", "oracle"), ("budget_scale", -1.0), ("day", 99),
                                               ("day", -1), ("max_requests", 0), ("reserve_ecpm", float("nan")),
                                               ("arr_ratio", 0.5), ("backend", "gpu"), ("reward", "revenue")])
def test_bad_options_fail_at_construction_naming_the_option(env_fixture, option, value):
    with pytest.raises(AdSimOptionError, match=f"option {option}:") as caught:
        AdSimMarketEnv(**env_fixture.kwargs(**{option: value}))
    assert caught.value.option == option
    with pytest.raises(TypeError, match="unexpected keyword argument 'budget'"):
        AdSimMarketEnv(**env_fixture.kwargs(budget=3))


def test_same_seed_same_day_gives_the_same_ledger(env_fixture):
    env = make(env_fixture, max_requests=80, budget_scale=0.05)
    runs = [play_day(env, seed, random_legal(np.random.default_rng(0))) for seed in (5, 5, 6)]
    first, again, other = (r[-1]["market_summary"] for r in runs)
    for key in ("spend", "budget", "shown", "exhausted_at"):
        np.testing.assert_array_equal(first[key], again[key])
    assert [i["charge"] for i in runs[0] if "charge" in i] == [i["charge"] for i in runs[1] if "charge" in i]
    assert first["requests"] == 80 and first["revenue"] == pytest.approx(first["spend"].sum())
    assert [i["click"] for i in runs[0] if "click" in i] != [i["click"] for i in runs[2] if "click" in i]


def test_greedy_spends_a_small_budget_early_and_the_ad_leaves_the_trie(env_fixture):
    env = make(env_fixture, budget_scale=0.02)
    obs, _ = env.reset(seed=0)
    trie, codes = env.ctx.simulator.trie, env.ctx.simulator.ad_codes
    n, done, request, gone, masked_out, checked = len(env.day), False, 0, None, 0, 0
    while not done:
        if gone is not None and env.episodes.level[0] == 0 and env.book.eligible[0, gone]:
            # the spent ad may be seen by targeting and liveness, but the trie no longer leads to it
            assert not env.episodes.allowed[0, gone]
            checked += 1
            level_mask = obs["action_mask"]
            path = codes[gone]
            for level in range(trie.depth):
                if not level_mask[path[level]]:
                    masked_out += 1
                    break
                level_mask = trie.legal_mask(path[None, : level + 1], env.episodes.sums[:1])[0] \
                    if level + 1 < trie.depth else None
        obs, _, done, _, info = env.step(greedy_action(env))
        if "revenue_today" not in info:
            continue
        request = env.day.position
        assert info["ad_id"] != gone, "an exhausted ad was shown again"
        if info.get("exhausted") and gone is None:
            gone = info["ad_id"]
            assert request < n // 4, f"the first budget ran out at request {request} of {n}"
            assert info["ad_spend"] == info["ad_budget"]
    summary = info["market_summary"]
    assert gone is not None and summary["spend"][gone] == summary["budget"][gone]
    assert summary["exhausted_at"][gone] < n // 4 and checked > 0 and masked_out > 0
    assert (summary["spend"] <= summary["budget"]).all()


def test_the_env_and_the_replay_give_the_same_ledger_and_backends_agree(env_fixture):
    """Greedy eCPM decoded in the env is greedy eCPM replayed by agents.market: one definition of the market."""
    ledgers = []
    for backend in ("compiled", "reference"):
        env = make(env_fixture, max_requests=150, budget_scale=0.02, backend=backend)
        ledgers.append(play_day(env, 3, lambda env, obs: greedy_action(env))[-1]["market_summary"])
    market = Market(env.ctx.simulator, MarketConfig(budget_scale=0.02))
    requests = requests_of_day(env.ctx.requests.logged, DAY, 150)
    replayed = replay_day(market, requests, [MarketBaseline(GREEDY, greedy_ecpm)], 3, pairs_per_book=5_000)
    ledgers.append(replayed[GREEDY].summary())
    for other in ledgers[1:]:
        for key in ("spend", "shown", "exhausted_at"):
            np.testing.assert_array_equal(ledgers[0][key], other[key])
    assert ledgers[0]["exhausted_ads"] > 0


def test_no_ad_is_billed_beyond_its_budget_over_many_seeded_days(env_fixture):
    env = make(env_fixture)
    market = Market(env.ctx.simulator, MarketConfig(budget_scale=0.01))
    baselines = market_baselines(env.ctx.scenario)
    for day in np.unique(env.ctx.requests.logged["day"]):
        requests = requests_of_day(env.ctx.requests.logged, int(day))
        for seed in range(4):
            for name, replayed in replay_day(market, requests, baselines, [seed, int(day)]).items():
                s = replayed.summary()
                if replayed.budgets == "market":
                    assert (s["spend"] <= s["budget"]).all(), name
                    assert s["overspend"] == 0.0 and s["exhausted_ads"] == (s["exhausted_at"] >= 0).sum()
                else:
                    assert (s["exhausted_at"] == -1).all() and s["constrained_requests"] == 0


def test_get_state_set_state_round_trip_within_a_day(env_fixture):
    from adsim.errors import AdSimStateError

    env = make(env_fixture, max_requests=60, budget_scale=0.02)
    env.reset(seed=1)
    for _ in range(40):  # mid-day, mid-request
        env.step(greedy_action(env))
    state = env.get_state()

    def rest(policy) -> tuple[list, dict]:
        out, done, info = [], False, {}
        while not done:
            obs, reward, done, _, info = env.step(policy(env, None))
            out.append((reward, info.get("charge"), info.get("request_id")))
        return out, info["market_summary"]

    first, ledger = rest(lambda env, obs: greedy_action(env))
    obs = env.set_state(state)
    assert obs["action_mask"].tolist() == env.episodes.mask[0].astype(np.int8).tolist()
    again, ledger_again = rest(lambda env, obs: greedy_action(env))
    assert first == again
    for key in ("spend", "shown", "exhausted_at"):
        np.testing.assert_array_equal(ledger[key], ledger_again[key])
    assert ledger["exhausted_ads"] > 0
    end = env.get_state()  # a snapshot at the day's end round-trips too
    env.set_state(state)
    env.set_state(end)
    assert env.day.over and env.episodes.done[0] and env.day.summary()["revenue"] == ledger["revenue"]
    for bad, key in (({**state, "market": {**state["market"], "request": 3}}, "market.request"),
                     ({**state, "market": {**state["market"], "day": 99}}, "market.day")):
        with pytest.raises(AdSimStateError) as caught:
            env.set_state(bad)
        assert caught.value.key == key
    ledger_state = state["market"]["ledger"]
    spent = {**state["market"], "ledger": {**ledger_state, "spend": ledger_state["budget"] * 2}}
    with pytest.raises(AdSimStateError, match="beyond its budget"):
        env.set_state({**state, "market": spent})
    assert env.get_state()["market"]["request"] == end["market"]["request"]  # left as it was


def test_an_illegal_action_passes_the_request_and_the_day_goes_on(env_fixture):
    env = make(env_fixture, max_requests=20)
    obs, info = env.reset(seed=0)
    illegal = int(np.flatnonzero(obs["action_mask"] == 0)[0])
    _, _, done, _, after = env.step(illegal)
    assert after["illegal_action"] and not done and "charge" not in after
    assert env.day.position >= 1 and env._request_info()["request_id"] != info["request_id"]
