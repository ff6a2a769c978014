"""fit_scenario_sids: shapes, the organic/ad level contract, save/load, and the speed promise."""

import time

import numpy as np
import pytest

from adsim.errors import AdSimDataError
from adsim.sid import CommercialSid, SidArtifacts, SidConfig, fit_scenario_sids
from adsim.sid.synthetic import make_synthetic_ads

FAST = dict(semantic_codebook_sizes=(8, 8), vocab_budget=48, epochs=2, kmeans_iters=10, hidden_dims=(16,))


@pytest.fixture(scope="module")
def synth():
    return make_synthetic_ads(n_ads=400, n_organic=900, dim=8, n_topics=6, seed=0)


@pytest.fixture(scope="module")
def artifacts(synth):
    return fit_scenario_sids(synth.ad_embeddings, synth.ads, synth.organic_embeddings,
                             SidConfig(max_fit_items=1000, **FAST))


def test_default_config_is_rq_kmeans_plus_with_commercial_level():
    cfg = SidConfig()
    assert cfg.tokenizer == "rq_kmeans_plus" and cfg.commercial


def test_shapes_levels_and_index(artifacts, synth):
    assert isinstance(artifacts.tokenizer, CommercialSid)
    assert artifacts.ad_codes.shape == (400, 3)
    assert artifacts.organic_codes.shape == (900, 2)
    assert (artifacts.ad_codes < np.asarray(artifacts.tokenizer.codebook_sizes)).all()
    assert artifacts.ad_codes[:, 2].max() < 48
    for ad in (0, 17, 399):
        assert ad in artifacts.ad_index.lookup(artifacts.ad_codes[ad])
    assert artifacts.ad_index.items.size == 400
    summary = artifacts.summary()
    assert summary["ad_paths"] == artifacts.ad_index.num_paths
    assert summary["ad_collision_rate"] == pytest.approx(1 - summary["ad_paths"] / 400)
    assert len(summary["ad_code_usage"]) == 3


def test_organic_items_get_the_semantic_levels_of_the_same_content(artifacts, synth):
    """An organic item with an ad's embedding gets that ad's semantic prefix."""
    codes = artifacts.semantic.encode(synth.ad_embeddings[:50])
    np.testing.assert_array_equal(codes, artifacts.ad_codes[:50, :2])
    np.testing.assert_array_equal(artifacts.organic_codes, artifacts.semantic.encode(synth.organic_embeddings))


def test_save_load_round_trip(artifacts, synth, tmp_path):
    loaded = SidArtifacts.load(artifacts.save(tmp_path / "sid"))
    assert loaded.config == artifacts.config
    np.testing.assert_array_equal(loaded.ad_codes, artifacts.ad_codes)
    np.testing.assert_array_equal(loaded.organic_codes, artifacts.organic_codes)
    np.testing.assert_array_equal(loaded.ad_index.items, artifacts.ad_index.items)
    np.testing.assert_array_equal(loaded.tokenizer.encode(synth.ad_embeddings, synth.ads), artifacts.ad_codes)


@pytest.mark.parametrize("tokenizer", ["rq_kmeans", "rq_vae"])
def test_semantic_only_configs(synth, tokenizer):
    art = fit_scenario_sids(synth.ad_embeddings, synth.ads, synth.organic_embeddings,
                            SidConfig(tokenizer=tokenizer, commercial=False, **FAST))
    assert art.ad_codes.shape == (400, 2) and art.organic_codes.shape == (900, 2)
    assert art.semantic is art.tokenizer


def test_same_seed_same_artifacts(synth, artifacts):
    again = fit_scenario_sids(synth.ad_embeddings, synth.ads, synth.organic_embeddings,
                              SidConfig(max_fit_items=1000, **FAST))
    np.testing.assert_array_equal(again.ad_codes, artifacts.ad_codes)
    np.testing.assert_array_equal(again.organic_codes, artifacts.organic_codes)


def test_bad_scenario_inputs(synth):
    x, ads, org = synth.ad_embeddings, synth.ads, synth.organic_embeddings
    with pytest.raises(AdSimDataError, match="organic_embeddings have 5 dimensions, expected 8"):
        fit_scenario_sids(x, ads, org[:, :5], SidConfig(**FAST))
    with pytest.raises(AdSimDataError, match="ad_id"):
        fit_scenario_sids(x, ads.assign(ad_id=ads["ad_id"] + 1), org, SidConfig(**FAST))
    with pytest.raises(AdSimDataError, match="'industry_l1'"):
        fit_scenario_sids(x, ads.drop(columns="industry_l1"), org, SidConfig(**FAST))
    with pytest.raises(ValueError, match="tokenizer must be one of"):
        SidConfig(tokenizer="kmeans")


@pytest.mark.expensive
def test_default_fit_on_a_small_scenario_is_fast():
    """The promise to the scenario builder: 8,000 ads x 32 dims + 30,000 organic items well under a minute."""
    synth = make_synthetic_ads(n_ads=8000, n_organic=30000, dim=32, seed=0)
    start = time.perf_counter()
    art = fit_scenario_sids(synth.ad_embeddings, synth.ads, synth.organic_embeddings)
    assert time.perf_counter() - start < 45
    assert art.ad_codes.shape == (8000, 3)
