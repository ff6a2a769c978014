"""A tiny bundle with SIDs, and a scorer built from the world's truth (a stand-in for the reward models)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from adsim import Scenario, build_scenario
from adsim.pipeline import sid_step
from adsim.simulator.loading import open_context
from adsim.simulator.simulator import Scores
from adsim.world.cascade import estimated_ecpm
from envs.adsim_env import EnvOptions


class TruthLikeScorer:
    """pCTR/pCVR from the world's truth at the top slot; final_value = eCPM. Enough to exercise the env."""

    def __init__(self, scenario: Scenario):
        ads = scenario.table("ads")
        self.world = scenario.world
        self.goal = ads["goal"].cat.codes.to_numpy().astype(np.int64)
        self.bid = ads["bid"].to_numpy()

    def score(self, requests, ad_ids):
        col = {c: np.asarray(requests[c])[:, None] for c in ("user_id", "day", "hour", "device", "placement")}
        pctr = self.world.true_pctr(col["user_id"], ad_ids, col["day"], col["hour"], col["device"],
                                    col["placement"], 0)
        pcvr = self.world.true_pcvr(col["user_id"], ad_ids, col["day"], col["device"])
        ecpm = estimated_ecpm(self.goal[ad_ids], self.bid[ad_ids], pctr, pcvr)
        return Scores(pctr, pcvr, ecpm, ecpm)


@dataclass
class EnvFixture:
    path: str
    context: object

    def kwargs(self, **overrides):
        return {"scenario": self.path, "context": self.context, **overrides}


@pytest.fixture(scope="session")
def tiny_sid_bundle(tmp_path_factory):
    return build_scenario(tmp_path_factory.mktemp("tiny_sid") / "bundle", "tiny", seed=11, progress=False,
                          steps=[("sid", sid_step)])


@pytest.fixture(scope="session")
def env_fixture(tiny_sid_bundle) -> EnvFixture:
    scenario = Scenario(tiny_sid_bundle)
    scorer = TruthLikeScorer(scenario)
    options = EnvOptions(scenario=str(tiny_sid_bundle))
    return EnvFixture(str(tiny_sid_bundle), open_context(options, scorer=scorer, truth=scorer))
