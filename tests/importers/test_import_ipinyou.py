"""iPinYou RTB logs import as a bundle whose simulator holds an auction against the logged market prices.

The bundle tests run on the generated stand-in and on the real sample (``data_root``); the last test checks the real
sample's known facts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fixtures.real_formats import IPINYOU

import envs  # noqa: F401  (registers AdSim-v0)
from adsim import Scenario
from adsim.errors import AdSimError
from adsim.importers.ipinyou import COLUMNS, ipinyou_files, read_raw
from adsim.ope import BanditFeedback
from adsim.sid.pipeline import SidArtifacts
from adsim.simulator.requests import as_batch
from adsim.simulator.simulator import Simulator
from reward_models.pipeline import import_scenario

ROWS = 1000  # per file: the train file's first click is row 399


@pytest.fixture(scope="module")
def bundle(data_root, tmp_path_factory):
    return import_scenario("ipinyou", data_root / IPINYOU, tmp_path_factory.mktemp("ipinyou") / "bundle",
                           max_rows=ROWS, progress=False)


def _source(data_root) -> pd.DataFrame:
    """The first ROWS rows of each log file, read independently of the importer."""
    return pd.concat([pd.read_csv(path, sep="\t", header=None, nrows=ROWS, usecols=range(len(COLUMNS)),
                                  names=COLUMNS) for path in ipinyou_files(data_root / IPINYOU)], ignore_index=True)


def test_splits_costs_and_market_prices_follow_the_logs(bundle, data_root):
    scenario = Scenario(bundle)
    req, imp = scenario.table("requests"), scenario.table("impressions")
    source = _source(data_root)
    assert len(req) == len(imp) == len(source)
    assert set(req["split"].astype(str)) == {"train", "valid", "test"}
    market = np.asarray(scenario.array("request_market_price"))
    assert market.shape == (len(req),)
    # each request's market price is its logged payprice, and the cost is that price per impression (CPM)
    np.testing.assert_allclose(imp["cost"].to_numpy(), market[imp["request_id"].to_numpy()] / 1000.0, rtol=1e-6)
    np.testing.assert_array_equal(np.sort(market), np.sort(source["payprice"].to_numpy()))
    assert (imp["ranking_ecpm"].to_numpy() >= market[imp["request_id"].to_numpy()]).all()  # every row was won
    ads = scenario.table("ads")
    assert (ads["goal"].astype(str) == "CPM").all()
    np.testing.assert_array_equal(np.sort(ads["bid"]), np.sort(source.groupby("creative")["bidprice"].median()))
    assert scenario.manifest["auction"]["rule"].startswith("an ad wins")
    with pytest.raises(AdSimError, match="no logged propensities"):
        BanditFeedback.from_scenario(scenario)


def test_a_lost_auction_is_valid_and_pays_nothing(bundle):
    from reward_models.scorer import RewardScorer

    scenario = Scenario(bundle)
    sids = SidArtifacts.load(bundle / "sid")
    sim = Simulator(scenario, sids.ad_codes, tuple(sids.tokenizer.codebook_sizes), RewardScorer.load(bundle))
    requests = as_batch(scenario.table("requests").iloc[:50])
    paths = np.broadcast_to(sids.ad_codes[:, None, :], (len(sids.ad_codes), 1, sids.ad_codes.shape[1]))
    paths = np.ascontiguousarray(np.tile(paths[:1], (50, 1, 1)))  # ad 0's path for every request
    ev = sim.evaluate(requests, paths)
    assert ev.valid.all()
    price = sim.market_price[requests["request_id"]]
    np.testing.assert_array_equal(ev.won[:, 0], ev.ecpm[:, 0] >= price)
    assert (ev.final_value[~ev.won] == 0).all() and (ev.final_value[ev.won] > 0).all()

    sim.market_price = np.full_like(sim.market_price, 1e9)  # a market no bid reaches
    lost = sim.evaluate(requests, paths)
    assert lost.valid.all() and not lost.won.any() and (lost.final_value == 0).all()
    sim.market_price = np.zeros_like(sim.market_price)  # every bid wins
    won = sim.evaluate(requests, paths)
    assert won.won.all() and (won.final_value > 0).all()
    np.testing.assert_array_equal(won.pctr, lost.pctr)


def test_env_runs_on_the_imported_bundle(bundle, checked_env):
    env = checked_env(bundle)
    obs, _ = env.reset(seed=1)
    done = False
    while not done:
        obs, reward, done, _, info = env.step(int(np.flatnonzero(obs["action_mask"])[-1]))
    assert np.isfinite(reward) and info["ad_id"] >= 0


@pytest.mark.real_data(IPINYOU)
def test_the_default_source_is_the_advertiser_2259_sample():
    raw = read_raw(None)
    assert len(raw.events) == 12_526 and raw.events["click"].sum() == 5 and raw.notes["duplicate_bidids"] == 1
    assert set(raw.ads["bid"]) == {277.0, 294.0}
