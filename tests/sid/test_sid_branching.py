"""SIDs fitted on the training days only, sized so that every level of a personalised trie is a real choice."""

from __future__ import annotations

import numpy as np

from adsim.sid.pipeline import SidConfig, fit_scenario_sids, semantic_codebook_sizes, train_ads
from adsim.simulator.branching import decision_branching
from reward_models.pipeline import ensure_scenario


def test_codebook_sizes_follow_the_inventory():
    assert semantic_codebook_sizes(344) == (4, 8)  # tiny's training ads
    assert semantic_codebook_sizes(7045) == (16, 32)  # small's
    assert semantic_codebook_sizes(10) == (4, 8) and semantic_codebook_sizes(10**9)[0] == 128


def test_sids_fitted_on_train_days_only_ignore_the_later_ads():
    scenario = ensure_scenario("tiny", seed=0, progress=False)
    ads, emb = scenario.table("ads"), np.asarray(scenario.ad_embeddings)
    organic = np.asarray(scenario.organic_embeddings)
    fit = train_ads(scenario)
    assert 0 < fit.sum() < len(fit), "tiny has ads created after its training days"
    config = SidConfig(seed=0, semantic_codebook_sizes=(4, 8), vocab_budget=64, epochs=2, kmeans_iters=10)
    full = fit_scenario_sids(emb, ads, organic, config, fit_ads=fit)
    later = ~fit
    moved = emb.copy()
    moved[later] = np.random.default_rng(1).normal(size=(later.sum(), emb.shape[1]))  # the future looks different
    refit = fit_scenario_sids(moved, ads, organic, config, fit_ads=fit)
    np.testing.assert_array_equal(full.ad_codes[fit], refit.ad_codes[fit])
    np.testing.assert_array_equal(full.organic_codes, refit.organic_codes)


def test_no_level_of_tinys_trie_is_mostly_forced():
    scenario = ensure_scenario("tiny", seed=0, progress=False)
    recorded = scenario.manifest["branching"]
    assert all(share < 0.3 for share in recorded["forced_share"]), recorded
    assert all(m >= 2 for m in recorded["median_legal"]), recorded
    from adsim.sid.pipeline import bundle_sids

    sids = bundle_sids(scenario)
    again = decision_branching(scenario, sids.ad_codes, tuple(sids.tokenizer.codebook_sizes), n_requests=200, seed=3)
    assert all(share < 0.3 for share in again["forced_share"]), again
