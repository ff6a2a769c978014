"""Reward models fit their data, and a quality gate refuses the ones that learned nothing."""

from __future__ import annotations

import numpy as np
import pytest

from adsim import AdSimDataError
from reward_models.bundle import QualityGate, sized_to_data
from reward_models.lightgbm_model import LightGBMConfig
from reward_models.pipeline import ensure_scenario


def test_leaf_sizes_scale_with_the_training_rows_within_the_defaults():
    config = LightGBMConfig()
    assert sized_to_data(config, 242).params["min_data_in_leaf"] == 12  # tiny's pCVR: 242 clicks
    assert sized_to_data(config, 242).params["min_data_per_group"] == 24
    assert sized_to_data(config, 40).params["min_data_in_leaf"] == 5
    big = sized_to_data(config, 1_000_000).params
    assert (big["min_data_in_leaf"], big["min_data_per_group"]) == (200, 500)  # small and up: unchanged


def test_a_constant_model_fails_the_gate_with_the_model_named():
    y = np.r_[np.ones(30), np.zeros(300)]
    with pytest.raises(AdSimDataError, match=r"pcvr reward model fails the quality gate: its predictions are constant"):
        QualityGate().check("pcvr", y, np.full(len(y), 0.1))


def test_a_model_ranking_below_the_floor_beyond_noise_fails_but_noise_alone_does_not():
    rng = np.random.default_rng(0)
    y = rng.random(20_000) < 0.1
    inverted = np.where(y, 0.05, 0.15) + rng.normal(0, 0.05, len(y))  # ranks positives last: AUC far below 0.5
    with pytest.raises(AdSimDataError, match="below the floor"):
        QualityGate().check("pctr", y, inverted)
    few = y[:60]  # a handful of positives: an AUC near 0.5 is noise, not evidence
    assert QualityGate().check("pctr", few, rng.random(len(few)))["passed"]


def test_allow_failure_records_the_failed_gate_instead_of_raising():
    y = np.r_[np.ones(30), np.zeros(300)]
    result = QualityGate(allow_failure=True).check("pcvr", y, np.full(len(y), 0.1))
    assert result["passed"] is False and result["relative_spread"] == 0


def test_tiny_reward_models_pass_their_gate_and_pcvr_is_not_constant():
    scenario = ensure_scenario("tiny", seed=0, progress=False)
    models = scenario.manifest["reward_models"]
    for name in ("pctr", "pcvr"):
        assert models[name]["gate"]["passed"], models[name]["gate"]
    assert models["pcvr"]["gate"]["relative_spread"] > 0.01
    assert models["pcvr"]["best_iteration"] > 1  # before sizing to the data: a single leaf, best_iteration 1
