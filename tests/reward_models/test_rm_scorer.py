"""The bundle step, the scorer the simulator calls, final_value, and the evaluation, on tiny bundles."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import numpy as np
import pytest

from adsim import AdSimDataError, Scenario, build_scenario
from adsim.sid.pipeline import sid_step
from adsim.world.config import GOALS
from reward_models import (
    RewardModelsConfig,
    RewardScorer,
    TruthScorer,
    ValueConfig,
    bundle_step,
    evaluate_rewards,
    train_reward_models,
)

STEPS = [("sid", sid_step), ("reward_models", bundle_step)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return build_scenario(tmp_path_factory.mktemp("rm") / "a", "tiny", seed=5, progress=False, steps=STEPS)


@pytest.fixture(scope="module")
def scorer(bundle) -> RewardScorer:
    return RewardScorer.load(bundle)


def test_two_builds_with_the_same_seed_give_identical_model_files(bundle, tmp_path):
    again = build_scenario(tmp_path / "b", "tiny", seed=5, progress=False, steps=STEPS)
    files = sorted(p.relative_to(bundle).as_posix() for p in (bundle / "reward_models").rglob("*") if p.is_file())
    assert {"reward_models/pctr/model.txt", "reward_models/pcvr/meta.json", "reward_models/scorer.json",
            "reward_models/sid_codes.npy"} <= set(files)
    for rel in files:
        assert filecmp.cmp(bundle / rel, again / rel, shallow=False), f"{rel} differs between same-seed builds"


def test_manifest_carries_the_summary(bundle):
    summary = json.loads((bundle / "manifest.json").read_text())["reward_models"]
    assert summary["sid_levels"] == 3 and summary["cvr_target"] == "cvr"
    for model in ("pctr", "pcvr"):
        assert summary[model]["best_iteration"] >= 1
        assert set(summary[model]["test"]) >= {"auc", "log_loss", "ece", "predicted_over_observed"}
    assert set(summary["value"]["scales"]) == {"pctr", "pcvr"}


def test_scores_shapes_and_reward_formula(scorer, bundle):
    scenario = Scenario(bundle)
    ads = scenario.table("ads")
    rng = np.random.default_rng(0)
    requests = rng.choice(len(scenario.table("requests")), size=16, replace=False)
    ad_ids = rng.integers(0, len(ads), size=(16, 40))
    s = scorer.score(requests, ad_ids)
    for part in s:
        assert part.shape == (16, 40) and part.dtype == np.float64 and np.isfinite(part).all()
    assert ((s.pctr > 0) & (s.pctr < 1) & (s.pcvr > 0) & (s.pcvr < 1)).all()

    goal = np.asarray(GOALS)[ads["goal"].cat.codes.to_numpy()][ad_ids]
    bid = ads["bid"].to_numpy()[ad_ids]
    expected = np.select([goal == "CPM", goal == "CPC"],
                         [bid, bid * s.pctr * 1000], bid * s.pctr * s.pcvr * 1000)
    np.testing.assert_allclose(s.ecpm, expected)
    value = scorer.value_config
    per_impression = {"pctr": s.pctr, "pcvr": s.pctr * s.pcvr}  # the conversion bonus counts clicks too
    bonus = sum(value.alphas[t] * value.scales[t] * per_impression[t] for t in ("pctr", "pcvr"))
    np.testing.assert_allclose(s.final_value, s.ecpm + bonus / 2)


def test_request_ids_rows_and_chunks_agree(scorer, bundle):
    table = Scenario(bundle).table("requests")
    ids = np.array([0, 7, 7, 30])
    ad_ids = np.arange(20).reshape(4, 5)
    by_id = scorer.score(ids, ad_ids, position=1)
    by_frame = scorer.score(table.iloc[ids], ad_ids, position=1)
    by_dict = scorer.score({c: table[c].to_numpy()[ids] for c in table.columns}, ad_ids, position=1)
    chunked = RewardScorer(scorer.features, scorer.pctr, scorer.pcvr, scorer.value_config, max_pairs=3)
    for other in (by_frame, by_dict, chunked.score(ids, ad_ids, position=1)):
        for a, b in zip(by_id, other, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12)


def test_synthetic_request_after_the_logs(scorer, bundle):
    row = Scenario(bundle).table("requests").iloc[[-1]].copy()
    row["ts"] += 3 * 86_400
    s = scorer.score(row, np.array([[1, 2, 3]]))
    assert all(np.isfinite(part).all() for part in s)


def test_truth_scorer_prices_the_world_truth(scorer, bundle):
    scenario = Scenario(bundle)
    truth = TruthScorer(scenario, scorer.value_config)
    req = scenario.table("requests").iloc[:3]
    ad_ids = np.array([[0, 1], [2, 3], [4, 5]])
    s = truth.score(np.arange(3), ad_ids)
    expected = scenario.world.true_pctr(req["user_id"].to_numpy()[:, None], ad_ids, req["day"].to_numpy()[:, None],
                                        req["hour"].to_numpy()[:, None], req["device"].to_numpy()[:, None],
                                        req["placement"].to_numpy()[:, None], 0)
    np.testing.assert_allclose(s.pctr, expected)
    assert s.final_value.shape == (3, 2) and (s.final_value >= s.ecpm).all()


def test_scorer_rejects_bad_input(scorer, tmp_path):
    with pytest.raises(AdSimDataError, match=r"\(n_requests=2, K\)"):
        scorer.score(np.array([0, 1]), np.array([[0], [1], [2]]))
    with pytest.raises(AdSimDataError, match="request ids outside|ids outside"):
        scorer.score(np.array([10**9]), np.array([[0]]))
    with pytest.raises(AdSimDataError, match="scorer.json is missing"):
        RewardScorer.load(tmp_path)


def test_ctcvr_option(bundle, tmp_path):
    scenario = Scenario(bundle)
    config = RewardModelsConfig(cvr_target="ctcvr", value=ValueConfig({"pctr": 1.0, "gmv_rate": 0.5}))
    summary = train_reward_models(scenario, tmp_path / "ctcvr", config)
    assert summary["sid_levels"] == 0 and summary["cvr_target"] == "ctcvr"
    scorer = RewardScorer.load(tmp_path / "ctcvr", scenario)
    assert scorer.pcvr.label.rows == "impressions"
    s = scorer.score(np.arange(5), np.arange(15).reshape(5, 3))
    assert ((s.pcvr >= 0) & (s.pcvr <= 1)).all() and np.isfinite(s.final_value).all()


# ------------------------------------------------------------------------------------------------ value
def test_final_value_known_answer():
    value = ValueConfig({"pctr": 1.0, "pcvr": 0.5}).calibrated(np.array([10.0, 30.0]),
                                                               {"pctr": np.array([0.01, 0.03]),
                                                                "pcvr": np.array([0.1, 0.3])})
    assert value.scales == pytest.approx({"pctr": 1000.0, "pcvr": 100.0})
    got = value.final_value(np.array([20.0]), {"pctr": np.array([0.02]), "pcvr": np.array([0.2])})
    assert got == pytest.approx([20.0 + (1.0 * 20.0 + 0.5 * 20.0) / 2])
    assert ValueConfig.from_dict(value.to_dict()) == value
    assert ValueConfig({}).final_value(np.array([3.0]), {}) == pytest.approx([3.0])


def test_value_config_errors():
    with pytest.raises(ValueError, match="unknown final_value target"):
        ValueConfig({"ctr": 1.0})
    with pytest.raises(ValueError, match="calibrated"):
        ValueConfig().final_value(np.ones(1), {"pctr": np.ones(1), "pcvr": np.ones(1)})


# ------------------------------------------------------------------------------------------- evaluation
def test_evaluate_rewards_reports_logged_and_never_shown(bundle, tmp_path):
    results = evaluate_rewards(bundle, tmp_path / "eval", max_requests=300)
    metrics, truth = results["metrics"], results["truth"]
    assert list(metrics["target"]) == ["pctr", "pcvr"] and metrics["ece"].notna().all()
    assert set(truth["sample"]) == {"logged", "uniform eligible", "uniform, never shown in the logs"}
    assert {"all", "UG1", "UG5", "new ads (first 2 days live)"} <= set(truth["group"])
    top = truth[(truth["group"] == "all") & (truth["target"] == "pctr")]
    assert (top["n"] > 0).all() and top["mae"].notna().all()
    assert len(results["calibration"]) == 20
    for name in ("metrics.csv", "truth.csv", "calibration.csv", "report.md", "reliability.png"):
        assert (tmp_path / "eval" / name).stat().st_size > 0
