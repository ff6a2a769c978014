"""The compiled scoring path against the reference, exactly: the same float32 features and the same Scores, on
synthetic and imported bundles; and a pair's numbers do not depend on the other pairs of its batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures.real_formats import write_ipinyou, write_obd

from adsim import AdSimDataError, Scenario, build_scenario
from adsim.sid.pipeline import SidArtifacts, sid_step
from reward_models import RewardScorer, bundle_step
from reward_models.compiled import CompiledFeatures
from reward_models.exact import GRID, on_grid
from reward_models.features import FeatureBuilder
from reward_models.pipeline import import_scenario


@pytest.fixture(scope="module")
def scenario(tiny_sid_bundle) -> Scenario:
    return Scenario(tiny_sid_bundle)


@pytest.fixture(scope="module")
def builder(scenario) -> FeatureBuilder:
    return FeatureBuilder(scenario, SidArtifacts.load(scenario.path / "sid").ad_codes)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return build_scenario(tmp_path_factory.mktemp("compiled") / "bundle", "tiny", seed=5, progress=False,
                          steps=[("sid", sid_step), ("reward_models", bundle_step)])


@pytest.fixture(scope="module", params=["obd", "ipinyou"])
def imported(request, tmp_path_factory) -> Path:
    """A bundle imported from generated real-format logs (OBD: no conversions, iPinYou: market prices)."""
    root = tmp_path_factory.mktemp(request.param)
    src = (write_obd if request.param == "obd" else write_ipinyou)(root / "src")
    return import_scenario(request.param, src, root / "bundle", progress=False)


def _pairs(n_requests: int, n_ads: int, b: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_requests, b), rng.integers(0, n_ads, (b, k))


def _assert_same_features(reference: FeatureBuilder, requests, ads, position=0) -> np.ndarray:
    want = reference.build(requests, ads, position).values
    got = CompiledFeatures(reference).build(requests, ads, position).values
    np.testing.assert_array_equal(got, want)  # NaN == NaN here; every other value bit for bit
    return want


def _assert_same_scores(a, b) -> None:
    for name, x, y in zip(a._fields, a, b, strict=True):
        np.testing.assert_array_equal(x, y, err_msg=name)


# ----------------------------------------------------------------------------------------------- features
@pytest.mark.parametrize("shape", [(1, 1), (1, 40), (7, 13), (128, 32), (600, 1)])
def test_features_are_the_references_bit_for_bit(builder, shape):
    requests, ads = _pairs(builder.request_matrix.shape[1], builder.n_ads, *shape, seed=shape[1])
    x = _assert_same_features(builder, requests, ads, position=np.arange(shape[1]) % 3)
    assert np.isnan(x).any() and np.isfinite(x).any()  # users without history and users with some


def test_features_of_request_rows_positions_and_no_sids(builder, scenario):
    rows = scenario.table("requests").iloc[[5, 5, 9, 40]].copy()
    rows.loc[rows.index[-1], "ts"] += 30 * 86_400  # after the logs (days beyond the day tables)
    ads = np.arange(8).reshape(4, 2)
    _assert_same_features(builder, rows, ads)
    _assert_same_features(builder, {c: rows[c].to_numpy() for c in rows.columns}, ads, position=2)
    _assert_same_features(builder, np.array([3, 3, 8, 1]), ads, position=np.array([[0], [1], [2], [1]]))
    _assert_same_features(FeatureBuilder(scenario), np.array([3, 3, 8, 1]), ads)


def test_features_on_imported_bundles(imported):
    scorer = RewardScorer.load(imported, Scenario(imported), backend="reference")
    requests, ads = _pairs(scorer.features.request_matrix.shape[1], scorer.features.n_ads, 64, 5, seed=1)
    _assert_same_features(scorer.features, requests, ads)


def test_bad_input_raises_the_references_errors(builder):
    compiled = CompiledFeatures(builder)
    with pytest.raises(AdSimDataError, match="ids outside") as err:
        compiled.build(np.array([0, 1]), np.array([[0], [builder.n_ads]]))
    assert "ad_id" in str(err.value)
    with pytest.raises(AdSimDataError, match="request_id"):
        compiled.build(np.array([-1]), np.array([[0]]))
    with pytest.raises(AdSimDataError, match="lack column"):
        compiled.build({"user_id": np.array([0]), "ts": np.array([5])}, np.array([[0]]))
    with pytest.raises(AdSimDataError, match=r"\(n_requests=2, K\)"):
        compiled.build(np.array([0, 1]), np.array([0, 1]))


# ---------------------------------------------------------------------------------------------- batching
def test_a_pairs_features_do_not_depend_on_its_batch(builder):
    """4096 pairs as 128 requests x 32 ads, as 4096 request rows x 1 (evaluate's layout), 40 at a time and one at a
    time: identical rows, on both paths."""
    requests, ads = _pairs(builder.request_matrix.shape[1], builder.n_ads, 128, 32, seed=3)
    rows, flat = np.repeat(requests, 32), ads.reshape(-1, 1)
    for build in (builder.build, CompiledFeatures(builder).build):
        batch = build(requests, ads).values
        np.testing.assert_array_equal(build(rows, flat).values, batch)
        forties = np.concatenate([build(rows[lo:lo + 40], flat[lo:lo + 40]).values for lo in range(0, 4096, 40)])
        np.testing.assert_array_equal(forties, batch)
        for i in (0, 77 * 32 + 31, 4095):
            np.testing.assert_array_equal(build(rows[i:i + 1], flat[i:i + 1]).values[0], batch[i])


def test_history_vectors_are_on_the_grid(builder):
    assert np.array_equal(on_grid(builder.ad_emb), builder.ad_emb)
    assert np.array_equal(on_grid(builder.organic_emb), builder.organic_emb)
    history, _ = builder._user_history(np.array([1, 2, 3]), np.array([10**9] * 3))
    for name in ("long_mean", "clicked_mean", "topic_mean"):
        v = history[name][np.isfinite(history[name])]
        assert np.array_equal(np.round(v / GRID) * GRID, v) and np.abs(v).max() <= 1.0


# ------------------------------------------------------------------------------------------------ scores
@pytest.mark.parametrize("shape", [(1, 1), (3, 40), (128, 32)])
def test_scores_are_the_references_exactly(bundle, shape):
    reference, compiled = (RewardScorer.load(bundle, backend=b) for b in ("reference", "compiled"))
    requests, ads = _pairs(reference.features.request_matrix.shape[1], reference.features.n_ads, *shape, seed=7)
    x = reference.features.build(requests, ads, position=1)
    pctr, pcvr = (model.predict(x, "compiled").reshape(shape) for model in (reference.pctr, reference.pcvr))
    want = reference.features.prices.scores(ads, pctr, pcvr, reference.value_config)
    got = compiled.score(requests, ads, position=1)
    _assert_same_scores(got, want)
    for a, b in zip(reference.score(requests, ads, position=1), got, strict=True):  # Booster.predict's sigmoid
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-15)
    batch = compiled.score(requests, ads)
    for i, j in ((0, 0), (shape[0] - 1, shape[1] - 1)):  # one pair alone scores as it does in its batch
        one = compiled.score(requests[i:i + 1], ads[i:i + 1, j:j + 1])
        assert [part[0, 0] for part in one] == [part[i, j] for part in batch]


def test_scores_on_imported_bundles(imported):
    scenario = Scenario(imported)
    reference = RewardScorer.load(imported, scenario, backend="reference")
    compiled = RewardScorer(reference.features, reference.pctr, reference.pcvr, reference.value_config,
                            reference.cvr_target)
    requests, ads = _pairs(reference.features.request_matrix.shape[1], reference.features.n_ads, 16, 6, seed=2)
    x = reference.features.build(requests, ads)
    pctr, pcvr = (model.predict(x, "compiled").reshape(ads.shape) for model in (reference.pctr, reference.pcvr))
    if reference.cvr_target == "ctcvr":
        pcvr = np.minimum(pcvr / np.maximum(pctr, 1e-12), 1.0)
    _assert_same_scores(compiled.score(requests, ads), reference.features.prices.scores(ads, pctr, pcvr,
                                                                                        reference.value_config))
