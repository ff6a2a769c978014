"""Anyone's logs: a CSV plus the documented example mapping (docs/csv_mapping_example.yaml) imports as a bundle."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from fixtures.real_formats import OBD

import envs  # noqa: F401  (registers AdSim-v0)
from adsim import Scenario
from adsim.importers.obd import read_obd
from adsim.paths import PROJECT_ROOT
from reward_models.pipeline import import_scenario

EXAMPLE = PROJECT_ROOT / "docs" / "csv_mapping_example.yaml"
ROWS = 1200


def write_own_logs(directory, obd_root, rows: int = ROWS) -> None:
    """OBD rows (generated or real) rewritten as somebody's own impression and page-view files, in the example's
    column names."""
    log, items, _ = read_obd(obd_root, "random", max_rows=rows)
    item = items.set_index("item_id").loc[log["item_id"]].reset_index()
    user = log[[f"user_feature_{i}" for i in range(4)]].astype(str).agg("-".join, axis=1)
    pd.DataFrame({
        "event_time": log["timestamp"].astype(str), "user_id": user, "ad_id": "item" + log["item_id"].astype(str),
        "clicked": log["click"].astype(int), "page_view_id": np.arange(len(log)), "slot": log["position"] - 1,
        "pscore": log["propensity_score"], "converted": 0, "cost": log["click"].astype(float),
        "advertiser": item["item_feature_1"], "category": item["item_feature_2"], "bid": 1.0,
        "age_bucket": pd.factorize(log["user_feature_0"])[0], "gender": 0, "price": item["item_feature_0"],
        "brand": item["item_feature_3"],
    }).to_csv(directory / "impressions.csv", index=False)
    affinity = log.filter(like="user-item_affinity_").to_numpy()
    r, k = np.nonzero(affinity > 0)
    pd.DataFrame({
        "user_id": user.to_numpy()[r], "item_id": "item" + pd.Series(k).astype(str),
        "view_time": (log["timestamp"].iloc[r] - pd.Timedelta(seconds=1)).astype(str).to_numpy(),
        "category": items.set_index("item_id").loc[k, "item_feature_2"].to_numpy(),
    }).to_csv(directory / "views.csv", index=False)


@pytest.fixture(scope="module")
def own_logs(data_root, tmp_path_factory):
    directory = tmp_path_factory.mktemp("own")
    write_own_logs(directory, data_root / OBD)
    shutil.copy(EXAMPLE, directory / "mapping.yaml")
    return directory


@pytest.fixture(scope="module")
def bundle(own_logs):
    return import_scenario("csv", own_logs / "impressions.csv", own_logs / "bundle", mapping=own_logs / "mapping.yaml",
                       progress=False)


def test_example_mapping_maps_every_column(bundle, own_logs):
    scenario = Scenario(bundle)
    assert scenario.manifest["source"] == "my_shop_logs" and scenario.manifest["import"]["format"] == "csv"
    src = pd.read_csv(own_logs / "impressions.csv")
    imp = scenario.table("impressions")
    assert len(imp) == ROWS and len(scenario.table("ads")) == src["ad_id"].nunique()
    np.testing.assert_array_equal(imp["propensity"].to_numpy(), src["pscore"].to_numpy())
    np.testing.assert_array_equal(imp["position"].to_numpy(), src["slot"].to_numpy())
    np.testing.assert_array_equal(imp["click"].to_numpy(), src["clicked"].astype(bool).to_numpy())
    assert scenario.table("requests")["placement"].eq(0).all()  # from `constants`
    assert len(scenario.table("organic_events")) > 0


def test_env_runs_on_the_imported_bundle(bundle, checked_env):
    checked_env(bundle)


def test_json_mapping_tab_separated_unix_times(tmp_path):
    log = pd.DataFrame({"t": [1_700_000_000 + 60 * i for i in range(40)], "u": [f"u{i % 7}" for i in range(40)],
                        "a": [f"a{i % 5}" for i in range(40)], "c": [i % 3 == 0 for i in range(40)],
                        "cat": [f"c{i % 2}" for i in range(40)]})
    log.to_csv(tmp_path / "logs.tsv", sep="\t", index=False)
    mapping = {"separator": "\t", "timestamp": {"column": "t", "unit": "s"},
               "columns": {"user": "u", "ad": "a", "click": "c"}, "ads": {"industry": "cat"},
               "constants": {"goal": "CPM", "bid": 2.5}, "ad_features": {"categorical": ["cat"]}}
    (tmp_path / "mapping.json").write_text(json.dumps(mapping))
    path = import_scenario("csv", tmp_path / "logs.tsv", tmp_path / "b", mapping=tmp_path / "mapping.json", steps=[],
                       progress=False)
    scenario = Scenario(path)
    ads, imp = scenario.table("ads"), scenario.table("impressions")
    assert len(ads) == 5 and (ads["goal"].astype(str) == "CPM").all()
    np.testing.assert_allclose(imp["cost"], 2.5 / 1000)  # CPM default cost: bid per mille
    assert imp["click"].sum() == log["c"].sum()
    assert len(scenario.table("organic_items")) == 0  # no organic section: empty tables still validate
