"""Eligibility, request streams (replay + ARR) and history gathering, checked against direct computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from adsim import Scenario
from adsim.simulator.eligibility import Eligibility
from adsim.simulator.history import EventIndex, ad_index, organic_index
from adsim.simulator.requests import RequestStream, logged_requests


@pytest.fixture(scope="module")
def tiny(tiny_logs) -> Scenario:
    return Scenario(tiny_logs)


def test_logged_impressions_were_eligible(tiny):
    imp, req = tiny.table("impressions"), tiny.table("requests").set_index("request_id")
    r = req.loc[imp["request_id"]]
    eligibility = Eligibility(tiny)
    allowed = eligibility.allowed(r["user_id"].to_numpy(), r["day"].to_numpy(), r["ts"].to_numpy())
    shown = allowed[np.arange(len(imp)), imp["ad_id"].to_numpy()]
    # the logging policy checks budgets between chunks of requests, so a few impressions land after exhaustion
    after = r["ts"].to_numpy() > eligibility.exhausted_at[r["day"].to_numpy(), imp["ad_id"].to_numpy()]
    assert shown[~after].all()
    assert after.mean() < 0.05
    assert 0 < allowed.mean() < 1
    # the compiled kernel, in ad order and in a shuffled one (the trie's, in the simulator)
    args = r["user_id"].to_numpy(), r["day"].to_numpy(), r["ts"].to_numpy()
    np.testing.assert_array_equal(eligibility.allowed(*args, backend="compiled"), allowed)
    shuffled = eligibility.tables(np.random.default_rng(0).permutation(eligibility.n_ads))
    np.testing.assert_array_equal(eligibility.allowed(*args, backend="compiled", tables=shuffled), allowed)


def test_ineligible_ads_are_excluded(tiny):
    ads = tiny.table("ads")
    user = tiny.table("users").iloc[0]
    allowed = Eligibility(tiny).allowed(np.array([0]), np.array([0]), np.array([0]))[0]
    late = ads["created_day"].to_numpy() > 0
    assert not allowed[late].any()
    wrong_gender = ((ads["target_gender_mask"].to_numpy().astype(int) >> int(user["gender"])) & 1) == 0
    assert not allowed[wrong_gender].any()


def test_request_stream_is_seeded_and_mixes_arr(tiny):
    a = RequestStream(tiny, "train", seed=4).sample(500, np.random.default_rng(1), arr_ratio=0.3)
    b = RequestStream(tiny, "train", seed=4).sample(500, np.random.default_rng(1), arr_ratio=0.3)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    share = a["is_synthetic"].mean()
    assert 0.2 < share < 0.4
    synth = pd.DataFrame(a)[a["is_synthetic"]]
    assert (synth["request_id"] < 0).all()
    assert not RequestStream(tiny, "test", seed=4).sample(50, np.random.default_rng(1))["is_synthetic"].any()


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_arr_never_looks_ahead_of_its_split_or_its_time(tiny, split):
    synth = pd.DataFrame(RequestStream(tiny, split, seed=3, arr_pool=2000).synthetic)
    logged = logged_requests(tiny, split)
    days = set(logged["day"].tolist())
    assert set(synth["day"].tolist()) <= days, "a synthetic request of a split lies inside the split's days"
    assert (synth["day"].to_numpy() == synth["ts"].to_numpy() // 86_400).all()
    assert (synth["hour"].to_numpy() == synth["ts"].to_numpy() % 86_400 // 3600).all(), "its hour is its own time's"
    everything = tiny.table("requests")
    for row in synth.iloc[::50].itertuples():
        # the user was seen in the split before the synthetic time, and the device/placement come from the
        # user's own requests known by then
        mine = everything[(everything["user_id"] == row.user_id) & (everything["ts"] < row.ts)]
        assert ((logged["user_id"] == row.user_id) & (logged["ts"] < row.ts)).any()
        assert ((mine["device"] == row.device) & (mine["placement"] == row.placement)).any()
    assert synth["user_id"].nunique() > 20


def test_empty_or_unknown_split_is_a_clear_error(tiny):
    with pytest.raises(ValueError, match="split must be"):
        logged_requests(tiny, "holdout")


def test_history_returns_the_last_events_strictly_before(tiny):
    index = organic_index(tiny)
    events = tiny.table("organic_events")
    req = tiny.table("requests").iloc[::97]
    rows, valid = index.last(req["user_id"].to_numpy(), req["ts"].to_numpy(), 5)
    for b, (user, ts) in enumerate(zip(req["user_id"], req["ts"], strict=True)):
        mine = events[(events["user_id"] == user) & (events["ts"] < ts)].sort_values(["ts"], kind="stable")
        expected = mine["ts"].to_numpy()[-5:]
        got = index.ts[rows[b][valid[b]]]
        np.testing.assert_array_equal(got, expected)
    fast = index.last(req["user_id"].to_numpy(), req["ts"].to_numpy(), 5, backend="compiled")
    np.testing.assert_array_equal(fast[0], rows)
    np.testing.assert_array_equal(fast[1], valid)
    ads = ad_index(tiny)
    assert ads.payload["action"][0] == 0 and set(np.unique(ads.payload["action"][1:])) == {1, 2, 3}  # 0: sentinel


def test_event_index_pads_on_the_left():
    index = EventIndex(np.array([1, 1, 2]), np.array([10, 20, 5]), {"x": np.array([7, 8, 9])})
    rows, valid = index.last(np.array([1, 2, 3]), np.array([25, 5, 100]), 3)
    assert valid.tolist() == [[False, True, True], [False, False, False], [False, False, False]]
    assert index.payload["x"][rows[0, 1:]].tolist() == [7, 8]
    for got, want in zip(index.last(np.array([1, 2, 3]), np.array([25, 5, 100]), 3, backend="compiled"),
                         (rows, valid), strict=True):
        np.testing.assert_array_equal(got, want)


def test_budgets_none_keeps_targeting_and_liveness_and_the_default_tables(tiny):
    from adsim.errors import AdSimOptionError

    logged, free = Eligibility(tiny), Eligibility(tiny, budgets="none")
    assert np.isinf(free.exhausted_at).all() and free.exhausted_at.shape == logged.exhausted_at.shape
    assert np.isfinite(logged.exhausted_at).any()  # tiny's budgets run out in the logs
    req = tiny.table("requests")
    keys = req["user_id"].to_numpy(), req["day"].to_numpy(), req["ts"].to_numpy()
    a, b = logged.allowed(*keys), free.allowed(*keys)
    assert (b >= a).all() and (b > a).any()  # only budgets differ
    np.testing.assert_array_equal(free.allowed(*keys, backend="compiled"), b)
    # the default's compiled tables are those of the logged budgets, unchanged by the option
    for x, y in zip(logged.tables(np.arange(logged.n_ads)), Eligibility(tiny, "logged").tables(np.arange(logged.n_ads)),
                    strict=True):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(AdSimOptionError, match="option budgets:"):
        Eligibility(tiny, budgets="market")
