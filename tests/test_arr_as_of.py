"""A rehearsed (ARR) request reads nothing after its own timestamp: rewriting the logs of its future changes none of
its features, masks or observations. Fitted constants (reward-model priors, SIDs) come from the training days."""

from __future__ import annotations

import numpy as np
import pytest

from adsim.data.bundle import TABLES, Scenario, write_bundle
from adsim.sid.pipeline import bundle_sids
from adsim.simulator.eligibility import Eligibility
from adsim.simulator.requests import RequestStream, take
from envs.observation import ObservationBuilder
from reward_models.features import FeatureBuilder
from reward_models.pipeline import ensure_scenario


@pytest.fixture(scope="module")
def full() -> Scenario:
    return ensure_scenario("tiny", seed=0, progress=False)


def _rewrite_future(scenario: Scenario, t: int, out) -> Scenario:
    """The same bundle with every click, conversion, cost and organic view at or after ``t`` changed."""
    tables = {name: scenario.table(name).copy() for name in TABLES}
    req, imp, organic = tables["requests"], tables["impressions"], tables["organic_events"]
    later = req["ts"].to_numpy()[imp["request_id"].to_numpy()] >= t
    click = imp["click"].to_numpy().copy()
    click[later] = ~click[later]
    conversion = imp["conversion"].to_numpy() & ~later
    imp["click"], imp["conversion"] = click, conversion
    imp.loc[later, "cost"] = imp.loc[later, "cost"] * 3
    views = organic["ts"].to_numpy() >= t
    organic.loc[views, "item_id"] = (organic.loc[views, "item_id"] + 1) % len(tables["organic_items"])
    assert later.sum() > 100 and views.sum() > 100
    arrays = {"ad_embeddings": np.asarray(scenario.ad_embeddings),
              "organic_embeddings": np.asarray(scenario.organic_embeddings)}
    return Scenario(write_bundle(out, tables, arrays, "future-rewritten", progress=False))


@pytest.mark.parametrize("split", ["valid", "test"])
def test_nothing_after_an_arr_requests_timestamp_is_read(full, split, tmp_path):
    synth = RequestStream(full, split, seed=1, arr_pool=400).synthetic
    j = len(synth["ts"]) // 3
    one = take(synth, np.array([j]))
    other = _rewrite_future(full, int(one["ts"][0]), tmp_path / "b")
    sids = bundle_sids(full)
    keys = (one["user_id"], one["day"], one["ts"])
    np.testing.assert_array_equal(Eligibility(full).allowed(*keys), Eligibility(other).allowed(*keys))
    a = ObservationBuilder(full, sids.ad_codes, sids.organic_codes).build(one)
    b = ObservationBuilder(other, sids.ad_codes, sids.organic_codes).build(one)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    ads = np.arange(len(full.table("ads")))[None, :]
    fa, fb = FeatureBuilder(full, sids.ad_codes).build(one, ads), FeatureBuilder(other, sids.ad_codes).build(one, ads)
    for i, name in enumerate(fa.names):
        np.testing.assert_array_equal(fa.values[:, i], fb.values[:, i], err_msg=name)
