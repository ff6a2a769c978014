"""The synthetic world keeps its promises, checked with numbers on the logs and on the truth."""

from __future__ import annotations

import numpy as np
import pytest

from adsim import Scenario, World
from adsim.world import preset


@pytest.fixture(scope="module")
def small(small_logs) -> Scenario:
    return Scenario(small_logs)


def test_response_rates_are_realistic(small):
    imp = small.table("impressions")
    ctr = imp["click"].mean()
    cvr = imp.loc[imp["click"], "conversion"].mean()
    assert 0.01 <= ctr <= 0.05, ctr
    assert 0.05 <= cvr <= 0.20, cvr
    by_position = imp.groupby("position")["click"].mean().to_numpy()
    assert np.all(np.diff(by_position) < 0), "lower slots must click less"


def test_bids_are_heavy_tailed_per_goal(small):
    ads = small.table("ads")
    for goal, bids in ads.groupby("goal", observed=True)["bid"]:
        if len(bids) < 300:
            continue
        assert bids.max() / bids.median() > 8, goal
        assert bids.quantile(0.99) / bids.median() > 4, goal
        assert bids.mean() > bids.median(), goal  # right skew
    medians = ads.groupby("goal", observed=True)["bid"].median()
    assert medians["CPM"] > 5 * medians["CPC"] and medians["oCPA"] > 5 * medians["CPC"], "bids on per-goal scales"


def test_users_have_several_interests(small):
    weights = small.world.users.interest_weights[0]
    n_interests = (weights > 0).sum(axis=1)
    assert n_interests.min() >= 1 and n_interests.max() <= small.config.max_interests
    assert (n_interests >= 2).mean() > 0.6
    assert (n_interests >= 3).mean() > 0.25


def test_interests_drift_and_the_drift_is_visible_in_logs(small):
    world = small.world
    first, last = world.users.interests[0], world.users.interests[-1]
    cos = np.einsum("ukd,ukd->uk", first, last)[world.users.interest_weights[0] > 0]
    assert 0.5 < np.median(cos) < 0.97, "interests move, but stay recognisable"

    # observable: a user's organic consumption early vs late is less alike than two halves of the early period
    events = small.table("organic_events")
    emb = np.asarray(small.organic_embeddings)
    day = events["ts"].to_numpy() // 86_400
    n_days = small.config.n_days
    early, late = day < 4, day >= n_days - 4
    users = events["user_id"].to_numpy()
    heavy = np.flatnonzero(np.bincount(users[early], minlength=small.config.n_users) >= 20)
    heavy = heavy[np.bincount(users[late], minlength=small.config.n_users)[heavy] >= 20]
    assert len(heavy) > 100

    def mean_vec(mask):
        sel = mask & np.isin(users, heavy)
        sums = np.zeros((small.config.n_users, emb.shape[1]))
        np.add.at(sums, users[sel], emb[events["item_id"].to_numpy()[sel]])
        v = sums[heavy]
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    parity = np.arange(len(day)) % 2 == 0
    within = np.einsum("ud,ud->u", mean_vec(early & parity), mean_vec(early & ~parity))
    across = np.einsum("ud,ud->u", mean_vec(early & parity), mean_vec(late & ~parity))
    assert np.mean(across) < np.mean(within) - 0.02, (np.mean(across), np.mean(within))


def test_new_ads_keep_arriving_and_get_shown(small):
    ads = small.table("ads")
    created = ads["created_day"].to_numpy()
    per_day = np.bincount(created, minlength=small.config.n_days)
    assert np.all(per_day[1:] > 0), "new ads arrive every day"
    assert 0.2 < (created > 0).mean() < 0.6
    imp = small.table("impressions")
    new_share = (created[imp["ad_id"].to_numpy()] > 0).mean()
    assert new_share > 0.05


def test_logging_policy_exposes_less_than_half_the_inventory(small):
    shown = small.table("impressions")["ad_id"].nunique()
    assert shown / len(small.table("ads")) < 0.5


@pytest.mark.parametrize("fixture", ["tiny_logs", "small_logs"])
def test_targeting_budget_and_liveness_respected_in_every_impression(fixture, request):
    scenario = Scenario(request.getfixturevalue(fixture))
    imp, req = scenario.table("impressions"), scenario.table("requests")
    users, ads = scenario.table("users").set_index("user_id"), scenario.table("ads").set_index("ad_id")
    r = req.set_index("request_id").loc[imp["request_id"]]
    u = users.loc[r["user_id"]]
    a = ads.loc[imp["ad_id"]]
    assert np.all((a["target_age_mask"].to_numpy().astype(np.int64) >> u["age_bucket"].to_numpy()) & 1)
    assert np.all((a["target_gender_mask"].to_numpy().astype(np.int64) >> u["gender"].to_numpy()) & 1)
    assert np.all((a["target_region_mask"].to_numpy() >> u["region"].to_numpy().astype(np.int64)) & 1)
    assert np.all(a["created_day"].to_numpy() <= r["day"].to_numpy())
    assert np.all(imp["position"].to_numpy() < r["n_slots"].to_numpy())
    # budgets are checked between chunks of requests, so an ad overspends by at most a chunk's (few) charges
    spend = imp.assign(day=r["day"].to_numpy()).groupby(["day", "ad_id"])["cost"].sum()
    budget = ads["daily_budget"].reindex(spend.index.get_level_values("ad_id")).to_numpy()
    assert np.mean(spend.to_numpy() <= budget * 1.5) > 0.97
    assert np.mean(spend.to_numpy() <= budget) > 0.9


def test_splits_are_time_based(small):
    req = small.table("requests")
    days = req.groupby("split", observed=True)["day"].agg(["min", "max"])
    assert days.loc["train", "max"] < days.loc["valid", "min"]
    assert days.loc["valid", "max"] < days.loc["test", "min"]


def test_truth_api_is_vectorised_and_consistent():
    world = World(preset("tiny"), seed=3)
    users = np.array([0, 1, 2, 3])
    ads = np.array([5, 6, 7, 8])
    ctr = world.true_pctr(users, ads, day=2, hour=20, device=0, placement=0, position=0)
    lower = world.true_pctr(users, ads, day=2, hour=20, device=0, placement=0, position=2)
    assert ctr.shape == (4,) and np.all((ctr > 0) & (ctr < 1)) and np.all(lower < ctr)
    grid = world.true_pctr(users[:, None], ads[None, :], 2, 20, 0, 0, 0)
    assert grid.shape == (4, 4)
    np.testing.assert_allclose(np.diag(grid), ctr)
    cvr = world.true_pcvr(users, ads, day=2)
    assert np.all((cvr > 0) & (cvr < 1))
    # a user's best-matching ad clicks more than a random one
    match = world.interest_match(np.zeros(400, int), np.arange(400), 0)
    best = world.true_pctr(0, int(match.argmax()), 0, 12, 0, 0, 0)
    assert best > np.median(world.true_pctr(0, np.arange(400), 0, 12, 0, 0, 0))
