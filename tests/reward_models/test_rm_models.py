"""Every reward model implementation passes the one contract check; bad inputs fail with clear errors;
metrics give known answers."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures.real_formats import OBD

from adsim import AdSimDataError, Scenario
from reward_models.bundle import CLICK, CONVERSION, CTCVR, LoggedData
from reward_models.features import FeatureBuilder
from reward_models.lightgbm_model import LightGBMConfig, LightGBMRewardModel
from reward_models.metrics import auc, auc_standard_error, calibration_table, ece, log_loss, truth_errors
from reward_models.open_bandit import CLICK as OBD_CLICK
from reward_models.open_bandit import OpenBanditConfig, load_open_bandit, open_bandit_features
from reward_models.protocol import FeatureMatrix, FeatureSpec, RewardModel, check_reward_model


@dataclass
class Case:
    """Training data of one implementation: features, labels, label definition, config."""

    train: FeatureMatrix
    y: np.ndarray
    label: object
    config: LightGBMConfig
    valid: tuple[FeatureMatrix, np.ndarray] | None = None

    def fit(self, seed: int) -> LightGBMRewardModel:
        return LightGBMRewardModel.fit(self.train, self.y, self.label, self.config.with_seed(seed), self.valid)


@pytest.fixture(scope="module")
def logged(tiny_sid_bundle) -> LoggedData:
    scenario = Scenario(tiny_sid_bundle)
    return LoggedData.from_scenario(scenario, FeatureBuilder(scenario))


def _case(logged: LoggedData, kind: str) -> Case:
    label, y, clicked = {"pctr": (CLICK, logged.click, False), "pcvr": (CONVERSION, logged.conversion, True),
                         "ctcvr": (CTCVR, logged.conversion, False)}[kind]
    train, valid = logged.rows("train", clicked), logged.rows("valid", clicked)
    return Case(logged.features.take(train), y[train], label, LightGBMConfig(),
                (logged.features.take(valid), y[valid]))


@pytest.mark.parametrize("kind", ["pctr", "pcvr", "ctcvr"])
def test_contract(logged, kind):
    case = _case(logged, kind)
    check_reward_model(case.fit, LightGBMRewardModel.load, case.train)


def test_contract_on_open_bandit(data_root):
    log, items = load_open_bandit(root=data_root / OBD)
    vocab = {c: pd.Index(pd.unique(log[c])) for c in log.columns if c.startswith("user_feature_")}
    vocab.update({c: pd.Index(pd.unique(items[c])) for c in ("item_feature_1", "item_feature_2", "item_feature_3")})
    case = Case(open_bandit_features(log, items, vocab), log["click"].to_numpy(), OBD_CLICK,
                OpenBanditConfig().lightgbm)
    check_reward_model(case.fit, LightGBMRewardModel.load, case.train)


@pytest.fixture(scope="module")
def pctr(logged) -> tuple[LightGBMRewardModel, FeatureMatrix]:
    case = _case(logged, "pctr")
    return case.fit(0), case.train


def test_is_a_reward_model_and_saves_its_metadata(pctr, tmp_path):
    model, _ = pctr
    assert isinstance(model, RewardModel)
    meta = json.loads((model.save(tmp_path) / "meta.json").read_text())
    assert [f["name"] for f in meta["features"]] == list(model.feature_names)
    assert meta["label"]["name"] == "click" and len(meta["train_checksum"]) == 64
    assert meta["config"]["params"]["deterministic"] and meta["config"]["params"]["force_row_wise"]


# ------------------------------------------------------------------------------------------ bad inputs
def test_missing_feature_columns(pctr):
    model, x = pctr
    frame = x.to_frame().drop(columns=["ad_bid", "hour"])
    with pytest.raises(AdSimDataError, match=r"missing feature column\(s\) \['hour', 'ad_bid'\]"):
        model.predict(frame)
    # the same columns in another order are fine
    np.testing.assert_array_equal(model.predict(x.to_frame()[list(reversed(x.names))]), model.predict(x))


def test_nan_where_not_allowed(pctr):
    model, x = pctr
    values = x.values.copy()
    values[3, x.names.index("ad_bid")] = np.nan
    with pytest.raises(AdSimDataError, match="NaN") as err:
        model.predict(FeatureMatrix(values, x.specs))
    assert "'ad_bid'" in str(err.value) and "[3]" in str(err.value)
    values = x.values.copy()
    values[:, x.names.index("click_cos_max")] = np.nan  # nullable: "no clicks yet"
    assert np.isfinite(model.predict(FeatureMatrix(values, x.specs))).all()


def test_unseen_categorical_level_scores_as_missing():
    rng = np.random.default_rng(0)
    level = rng.integers(0, 4, 4000)
    x = FeatureMatrix(np.column_stack([level, rng.random(4000)]).astype(np.float32),
                      (FeatureSpec("level", categorical=True), FeatureSpec("noise")))
    y = rng.random(4000) < np.array([0.05, 0.4, 0.1, 0.6])[level]
    model = LightGBMRewardModel.fit(x, y, CLICK, LightGBMConfig(num_boost_round=20))

    def probe(code: float) -> float:
        return model.predict(FeatureMatrix(np.array([[code, 0.5]], dtype=np.float32), x.specs))[0]

    assert len({probe(code) for code in range(4)}) == 4  # the level is used
    assert np.isfinite(probe(10**6)) and probe(10**6) == probe(7) == probe(-1)  # unseen = LightGBM's "missing"


@pytest.mark.parametrize("bad", [np.array([0, 1, 2]), np.array([0.0, 0.5, 1.0]), np.array([0, np.nan, 1])])
def test_labels_other_than_0_1(pctr, bad):
    _, x = pctr
    y = np.zeros(len(x))
    y[:3] = bad
    with pytest.raises(AdSimDataError, match="labels must be 0 or 1") as err:
        LightGBMRewardModel.fit(x, y, CLICK)
    assert "'click'" in str(err.value)


def test_too_few_positive_labels(pctr):
    _, x = pctr
    y = np.zeros(len(x))
    y[:3] = 1
    with pytest.raises(AdSimDataError, match=r"3 positive and \d+ negative.*at least 20 positive"):
        LightGBMRewardModel.fit(x, y, CLICK)


def test_model_file_whose_feature_list_does_not_match(pctr, tmp_path):
    model, x = pctr
    model.save(tmp_path / "ok")
    with pytest.raises(AdSimDataError, match=r"missing \['not_a_feature'\], unexpected \['hour'\]"):
        LightGBMRewardModel.load(tmp_path / "ok", ("not_a_feature",) + x.names[1:])
    shutil.copytree(tmp_path / "ok", tmp_path / "bad")
    meta = json.loads((tmp_path / "bad" / "meta.json").read_text())
    meta["features"][0]["name"] = "renamed"
    (tmp_path / "bad" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(AdSimDataError, match="model.txt and meta.json list different features"):
        LightGBMRewardModel.load(tmp_path / "bad")
    with pytest.raises(AdSimDataError, match="missing"):
        LightGBMRewardModel.load(Path(tmp_path / "nowhere"))


# --------------------------------------------------------------------------------------------- metrics
def test_metrics_known_answers():
    y = np.array([0, 0, 1, 1])
    assert auc(y, np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert np.isnan(auc(np.zeros(3), np.arange(3.0)))
    assert log_loss(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(np.log(2))
    p = np.repeat([0.1, 0.3], 50)
    yy = np.r_[np.zeros(45), np.ones(5), np.zeros(35), np.ones(15)]
    assert ece(yy, p, n_bins=2) == pytest.approx(0.0)
    table = calibration_table(yy, p, n_bins=2)
    np.testing.assert_allclose(table["ratio"], [1.0, 1.0])
    assert ece(yy, p + 0.02, n_bins=2) == pytest.approx(0.02)
    assert 0 < auc_standard_error(0.7, 10, 1000) < 0.1
    errors = truth_errors(np.array([0.02, 0.04]), np.array([0.01, 0.02]))
    assert errors["predicted_over_true"] == pytest.approx(2.0) and errors["mae"] == pytest.approx(0.015)
