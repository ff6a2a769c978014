"""The Open Bandit Dataset imports as a full bundle that AdSim-v0 runs on, with its propensities kept.

The bundle tests run on the generated stand-in and on the real sample (``data_root``); the last test checks the real
sample's published facts.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from fixtures.real_formats import OBD

import envs  # noqa: F401  (registers AdSim-v0)
from adsim import Scenario
from adsim.cli import main as adsim_main
from adsim.importers.obd import read_obd
from adsim.ope import BanditFeedback
from reward_models.pipeline import default_steps, import_scenario, import_steps

ROWS = 1500


@pytest.fixture(scope="module")
def bundle(data_root, tmp_path_factory):
    return import_scenario("obd", data_root / OBD, tmp_path_factory.mktemp("obd") / "bundle", max_rows=ROWS,
                           progress=False)


def test_import_steps_use_the_pipeline():
    names = [name for name, _ in import_steps()]
    assert names[0] == "sid" and "reward_models" in names
    assert [name for name, _ in default_steps()][: len(names)] == names


def test_manifest_documents_source_and_defaults(bundle, data_root):
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["source"] == "obd:random" and manifest["has_ground_truth"] is False
    _, items, _ = read_obd(data_root / OBD, "random", max_rows=1)
    assert manifest["rows"]["impressions"] == ROWS and manifest["rows"]["ads"] == len(items)
    notes = manifest["import"]
    assert notes["propensities"].startswith("logged")
    assert notes["defaults"]["ads"]["targeting"].startswith("untargeted")
    log_file = data_root / OBD / "random_all.csv"
    assert notes["files"][0] == {"file": log_file.name, "sha256": hashlib.sha256(log_file.read_bytes()).hexdigest()}
    assert {"sid", "reward_models"} <= set(manifest)


def test_propensities_positions_and_clicks_are_the_logs(bundle, data_root):
    log, items, _ = read_obd(data_root / OBD, "random", max_rows=ROWS)
    scenario = Scenario(bundle)
    imp, req = scenario.table("impressions"), scenario.table("requests")
    np.testing.assert_array_equal(imp["propensity"].to_numpy(), log["propensity_score"].to_numpy())
    np.testing.assert_array_equal(imp["position"].to_numpy(), log["position"].to_numpy() - 1)
    np.testing.assert_array_equal(imp["click"].to_numpy(), log["click"].to_numpy())
    np.testing.assert_array_equal(imp["ad_id"].to_numpy(), log["item_id"].to_numpy())
    assert (req["n_slots"] == 3).all() and not imp["conversion"].any()
    assert (np.diff(req["ts"].to_numpy()) >= 0).all()
    ads = scenario.table("ads")
    assert (ads["goal"].astype(str) == "CPC").all() and (ads["bid"] == 1.0).all()
    feedback = BanditFeedback.from_scenario(scenario)
    assert feedback.n_actions == len(items) and np.allclose(feedback.pscore, 1 / len(items))  # the uniform policy


def test_organic_history_precedes_its_request(bundle):
    scenario = Scenario(bundle)
    events, req = scenario.table("organic_events"), scenario.table("requests")
    assert len(events) > 0
    rows = events["request_id"].to_numpy()
    assert (events["ts"].to_numpy() < req["ts"].to_numpy()[rows]).all()
    assert (events["user_id"].to_numpy() == req["user_id"].to_numpy()[rows]).all()


def test_env_runs_on_the_imported_bundle(bundle, checked_env):
    env = checked_env(bundle)
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        done = False
        while not done:
            obs, reward, done, _, info = env.step(int(np.flatnonzero(obs["action_mask"])[0]))
        assert np.isfinite(reward) and info["ad_id"] >= 0
        obs, _ = env.reset()


def test_cli_subcommand_imports_logs_only(tmp_path, data_root):
    assert adsim_main(["import", str(data_root / OBD), "--format", "obd", "--behavior", "bts", "--out",
                       str(tmp_path / "b"), "--max-rows", "300", "--logs-only", "--quiet"]) == 0
    scenario = Scenario(tmp_path / "b")
    assert scenario.manifest["source"] == "obd:bts" and len(scenario.table("impressions")) == 300
    assert not (tmp_path / "b" / "sid").exists()


@pytest.mark.real_data(OBD)
def test_the_default_source_is_the_published_sample():
    log, items, files = read_obd(None, "random")
    assert files[0]["sha256"] == "7168295b6e0a9eabcf3392320a5dd434e542b68e705d5cd9491499af589812f1"  # NOTICE.txt
    assert len(log) == 10_000 and len(items) == 80 and (log["propensity_score"] == 1 / 80).all()
