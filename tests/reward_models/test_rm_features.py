"""The feature pipeline: as-of indexes against brute force, the fast build against a plain per-row reference,
no leakage from the future, and clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adsim import AdSimDataError, Scenario
from adsim.sid.pipeline import SidArtifacts
from adsim.simulator.history import EventIndex
from reward_models.features import DayTable, FeatureBuilder


@pytest.fixture(scope="module")
def scenario(tiny_sid_bundle) -> Scenario:
    return Scenario(tiny_sid_bundle)


@pytest.fixture(scope="module")
def sid_codes(scenario) -> np.ndarray:
    return SidArtifacts.load(scenario.path / "sid").ad_codes


@pytest.fixture(scope="module")
def builder(scenario, sid_codes) -> FeatureBuilder:
    return FeatureBuilder(scenario, sid_codes)


# --------------------------------------------------------------------------------------------- indexes
events = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 40), st.integers(0, 1)), max_size=60)
queries = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 50)), min_size=1, max_size=20)


@settings(max_examples=60, deadline=None)
@given(events=events, queries=queries, size=st.integers(1, 5))
def test_timeline_counts_and_windows_match_brute_force(events, queries, size):
    group, ts, flag = (np.array([e[i] for e in events], dtype=np.int64) for i in range(3))
    counts = np.stack([np.ones(len(events)), flag], axis=1)
    line = EventIndex(group, ts, {"item": np.arange(len(events))}, counts=counts, shift=6)
    q_group, q_ts = (np.array([q[i] for q in queries], dtype=np.int64) for i in range(2))
    got = line.counts_before(q_group, q_ts)
    idx, valid = line.window(q_group, line.last_before(q_group, q_ts), size)
    for g, t, c, i, v in zip(q_group, q_ts, got, idx, valid, strict=True):
        before = np.flatnonzero((group == g) & (ts < t))
        np.testing.assert_array_equal(c, counts[before].sum(axis=0))
        newest = before[np.lexsort((before, ts[before]))][::-1][:size]  # time order, ties in input order
        np.testing.assert_array_equal(line.payload["item"][i[v]], newest)


def test_day_table_sums_strictly_earlier_days():
    rng = np.random.default_rng(1)
    entity, day = rng.integers(0, 4, 100), rng.integers(0, 5, 100)
    counts = rng.random((100, 3))
    table = DayTable.build(entity, day, counts, n_entities=4, n_days=5)
    for e in range(4):
        for d in range(7):  # days past the end see everything
            expected = counts[(entity == e) & (day < d)].sum(axis=0)
            np.testing.assert_allclose(table.before(np.array([e]), np.array([d]))[0], expected, rtol=1e-5)


# ------------------------------------------------------------------------------------- reference parity
def _reference_row(scenario: Scenario, builder: FeatureBuilder, sid_codes: np.ndarray, request_id: int, ad: int):
    """Selected features of one (request, ad) pair, computed directly from the tables with plain loops."""
    req = scenario.table("requests").set_index("request_id").loc[request_id]
    user, ts, day = int(req["user_id"]), int(req["ts"]), int(req["day"])
    imp = scenario.table("impressions")
    requests = scenario.table("requests")
    imp = imp.assign(user=requests["user_id"].to_numpy()[imp["request_id"]],
                     ts=requests["ts"].to_numpy()[imp["request_id"]], day=requests["day"].to_numpy()[imp["request_id"]])
    mine = imp[(imp["user"] == user) & (imp["ts"] < ts)]
    ad_rows = imp[(imp["ad_id"] == ad) & (imp["day"] < day)]
    same_prefix = (sid_codes[mine["ad_id"].to_numpy(), 0] == sid_codes[ad, 0])
    strength = builder.config.prior_strength
    emb = builder.ad_emb[ad]

    organic = scenario.table("organic_events")
    seen = organic[(organic["user_id"] == user) & (organic["ts"] < ts)].sort_values("ts", kind="stable")
    org_emb = builder.organic_emb[seen["item_id"].to_numpy()]
    recent = org_emb[-builder.config.recent_window:]
    long = org_emb[-builder.config.long_window:]
    clicked = mine[mine["click"]].sort_values("ts", kind="stable")["ad_id"].to_numpy()[-builder.config.click_window:]
    return {
        "user_impressions": len(mine),
        "user_clicks": int(mine["click"].sum()),
        "ad_impressions": len(ad_rows),
        "ad_ctr": (ad_rows["click"].sum() + strength * builder.prior_ctr) / (len(ad_rows) + strength),
        "user_sid1_impressions": int(same_prefix.sum()),
        "user_sid1_clicks": int((same_prefix & mine["click"].to_numpy()).sum()),
        "ad_age_days": day - int(scenario.table("ads")["created_day"].iloc[ad]),
        "organic_cos_max": (recent @ emb).max() if len(recent) else np.nan,
        "organic_cos_mean": (long @ emb).mean() if len(long) else np.nan,
        "click_cos_max": (builder.ad_emb[clicked] @ emb).max() if len(clicked) else np.nan,
    }


def test_fast_build_matches_plain_reference(scenario, builder, sid_codes):
    rng = np.random.default_rng(2)
    requests = rng.choice(len(scenario.table("requests")), size=25, replace=False)
    ads = rng.integers(0, len(scenario.table("ads")), size=(25, 2))
    x = builder.build(requests, ads).to_frame()
    for row, (r, ad) in enumerate((r, ad) for r, pair in zip(requests, ads, strict=True) for ad in pair):
        for name, expected in _reference_row(scenario, builder, sid_codes, int(r), int(ad)).items():
            np.testing.assert_allclose(x[name].iloc[row], expected, rtol=1e-4, atol=1e-5, equal_nan=True,
                                       err_msg=f"{name} of request {r}, ad {ad}")


class _LogsBefore:
    """The same scenario with every impression and organic event at or after ``cutoff`` removed."""

    def __init__(self, scenario: Scenario, cutoff: int):
        self.scenario, self.cutoff = scenario, cutoff
        self.ad_embeddings, self.organic_embeddings = scenario.ad_embeddings, scenario.organic_embeddings

    def table(self, name: str) -> pd.DataFrame:
        df = self.scenario.table(name)
        if name == "impressions":
            return df[self.scenario.table("requests")["ts"].to_numpy()[df["request_id"]] < self.cutoff]
        if name == "organic_events":
            return df[df["ts"] < self.cutoff]
        return df


def test_features_do_not_see_the_future(scenario, sid_codes):
    requests = scenario.table("requests")
    cutoff = int(requests.loc[requests["split"].astype(str) == "valid", "ts"].min())
    early = np.flatnonzero(requests["ts"].to_numpy() < cutoff)[::5]
    ads = np.random.default_rng(3).integers(0, len(scenario.table("ads")), size=(len(early), 3))
    full = FeatureBuilder(scenario, sid_codes).build(early, ads, position=1)
    truncated = FeatureBuilder(_LogsBefore(scenario, cutoff), sid_codes).build(early, ads, position=1)
    np.testing.assert_array_equal(full.values, truncated.values)


def test_batch_layout_equals_row_by_row(builder, scenario):
    rng = np.random.default_rng(4)
    requests = rng.choice(len(scenario.table("requests")), size=6)
    ads = rng.integers(0, len(scenario.table("ads")), size=(6, 5))
    batch = builder.build(requests, ads, position=2).values
    rows = builder.build_rows(np.repeat(requests, 5), ads.ravel(), 2, chunk_size=7).values
    np.testing.assert_array_equal(batch, rows)  # cosines are exact (reward_models.exact): no layout can move them


def test_request_rows_equal_request_ids(builder, scenario):
    ids = np.array([3, 10, 10, 42])
    rows = scenario.table("requests").iloc[ids]
    ads = np.array([[1, 2], [3, 4], [3, 4], [5, 6]])
    np.testing.assert_array_equal(builder.build(ids, ads).values, builder.build(rows, ads).values)


def test_requests_after_the_logs_see_the_whole_history(builder, scenario):
    requests = scenario.table("requests")
    last = requests.iloc[[-1]].copy()
    last["ts"] += 10 * 86_400
    x = builder.build(last, np.array([[0]])).to_frame()
    user_imps = (requests["user_id"].to_numpy()[scenario.table("impressions")["request_id"]] == last["user_id"].iloc[0])
    assert x["user_impressions"].iloc[0] == user_imps.sum()
    assert np.isfinite(x.drop(columns=[s.name for s in builder.specs if s.nullable]).to_numpy()).all()


# ----------------------------------------------------------------------------------------- SIDs optional
def test_sid_features_are_optional(scenario, builder):
    plain = FeatureBuilder(scenario)
    assert not any(name.startswith("sid") or "_sid" in name for name in plain.feature_names)
    assert {"sid1_code", "sid2_code", "sid1_ctr", "user_sid1_clicks"} <= set(builder.feature_names)
    assert plain.build(np.array([0]), np.array([[0, 1]])).values.shape == (2, len(plain.specs))


def test_bad_sid_codes_are_rejected(scenario, sid_codes):
    with pytest.raises(AdSimDataError, match="n_ads"):
        FeatureBuilder(scenario, sid_codes[:-1])
    with pytest.raises(AdSimDataError, match="negative"):
        FeatureBuilder(scenario, np.where(np.arange(len(sid_codes))[:, None] == 3, -1, sid_codes))


# ------------------------------------------------------------------------------------------ bad inputs
def test_bad_ids_and_missing_request_columns(builder, scenario):
    n_ads = len(scenario.table("ads"))
    with pytest.raises(AdSimDataError, match="ids outside") as err:
        builder.build(np.array([0, 1]), np.array([[0], [n_ads]]))
    assert "ad_id" in str(err.value)
    with pytest.raises(AdSimDataError, match="request_id"):
        builder.build(np.array([-1]), np.array([[0]]))
    with pytest.raises(AdSimDataError, match="lack column"):
        builder.build({"user_id": np.array([0]), "ts": np.array([5])}, np.array([[0]]))
    with pytest.raises(AdSimDataError, match=r"\(n_requests=2, K\)"):
        builder.build(np.array([0, 1]), np.array([0, 1]))
