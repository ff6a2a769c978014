"""The Taobao sample imports with its behaviour history as organic views and its over-sampled clicks re-weighted.

The bundle tests run on the generated stand-in and on the real sample (``data_root``); the last test checks the real
sample's published facts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fixtures.real_formats import TAOBAO

import envs  # noqa: F401  (registers AdSim-v0)
from adsim import Scenario
from adsim.errors import AdSimError
from adsim.importers.taobao import FILE, HISTORY, PROFILE_COLUMNS, _new_behaviours, click_weight, read_raw
from adsim.ope import BanditFeedback, on_policy_value
from reward_models.pipeline import import_scenario

ROWS = 300


@pytest.fixture(scope="module")
def bundle(data_root, tmp_path_factory):
    return import_scenario("taobao", data_root / TAOBAO, tmp_path_factory.mktemp("taobao") / "bundle", max_rows=ROWS,
                           progress=False)


def _windows(data_root) -> pd.DataFrame:
    """One row per valid behaviour of the first ROWS rows' windows: row, uid, cate, brand (read without the
    importer)."""
    raw = pd.read_csv(data_root / TAOBAO / FILE, header=None, nrows=ROWS).to_numpy()
    cate, brand, mask = (raw[:, k * HISTORY:(k + 1) * HISTORY] for k in (1, 2, 3))
    row, col = np.nonzero(mask > 0)
    return pd.DataFrame({"row": row, "uid": raw[row, 5 * HISTORY + PROFILE_COLUMNS.index("uid")],
                         "cate": cate[row, col], "brand": brand[row, col]})


def test_new_behaviours_removes_the_overlap_of_sliding_windows():
    assert _new_behaviours([1, 2, 3, 4], [3, 4, 5, 6]) == [5, 6]
    assert _new_behaviours([1, 2, 3], [1, 2, 3]) == []
    assert _new_behaviours([1, 2], [7, 8]) == [7, 8]
    assert _new_behaviours([], [1]) == [1]


def test_click_weight_restores_the_natural_ctr():
    w = click_weight(0.42, 0.05)
    assert np.isclose(0.42 * w / (0.42 * w + 0.58), 0.05)
    assert click_weight(0.05, 0.05) == pytest.approx(1.0)


def test_manifest_says_clicks_are_over_sampled(bundle):
    scenario = Scenario(bundle)
    sampling = scenario.manifest["label_sampling"]
    imp = scenario.table("impressions")
    assert sampling["clicks_over_sampled"] and sampling["sample_ctr"] == pytest.approx(imp["click"].mean(), abs=1e-6)
    assert sampling["sample_ctr"] > 0.3
    w = sampling["click_weight"]
    clicks = imp["click"].sum()
    assert w * clicks / (w * clicks + (~imp["click"]).sum()) == pytest.approx(0.05)
    assert scenario.manifest["import"]["clock"].startswith("synthetic")
    with pytest.raises(AdSimError, match="no logged propensities"):  # Taobao logs none
        BanditFeedback.from_scenario(scenario)
    logged = BanditFeedback.from_scenario(scenario, require_propensities=False)
    assert on_policy_value(logged.reward, logged.sample_weight, n_boot=10)["value"] == pytest.approx(0.05)


def test_history_becomes_organic_views_before_each_request(bundle, data_root):
    scenario = Scenario(bundle)
    events, req, items = (scenario.table(t) for t in ("organic_events", "requests", "organic_items"))
    windows = _windows(data_root)
    first_rows = windows.groupby("uid")["row"].transform("min") == windows["row"]
    assert first_rows.sum() <= len(events) <= len(windows)  # each user's first window, then only what is new
    rows = events["request_id"].to_numpy()
    assert (events["ts"].to_numpy() < req["ts"].to_numpy()[rows]).all()
    assert (events["user_id"].to_numpy() == req["user_id"].to_numpy()[rows]).all()
    assert len(items) == scenario.organic_embeddings.shape[0] == len(windows[["cate", "brand"]].drop_duplicates())
    users = scenario.table("users")
    assert set(users["gender"]) <= {0, 1} and users["age_bucket"].between(0, 5).all()
    ads = scenario.table("ads")
    assert (ads["goal"].astype(str) == "CPC").all() and ads["bid"].between(0.5, 1.01).all()


def test_env_runs_on_the_imported_bundle(bundle, checked_env):
    env = checked_env(bundle)
    obs, _ = env.reset(seed=2)
    assert (obs["history_type"] == 2).any()  # organic tokens from the behaviour history


@pytest.mark.real_data(TAOBAO)
def test_the_default_source_is_the_published_sample():
    raw = read_raw(None)
    assert len(raw.events) == 500 and raw.events["click"].sum() == 210  # NOTICE.txt: 210 of 500 rows are clicks
    assert len(raw.users) == 230 and len(raw.ads) == 297
