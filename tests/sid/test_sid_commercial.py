"""Commercial SID: attribute compression, the entropy-maximising bin allocation, fallbacks, and its purpose."""

import numpy as np
import pandas as pd
import pytest

from adsim.sid import CommercialCoder, CommercialConfig, CommercialSid, RQKMeans, RQKMeansConfig
from adsim.sid.commercial import equi_frequency_edges
from adsim.sid.metrics import bid_dispersion, weighted_entropy
from adsim.sid.synthetic import make_synthetic_ads


def attrs(goal, bid, roi=None, industry_l1=None) -> pd.DataFrame:
    n = len(goal)
    return pd.DataFrame({"goal": goal, "roi_target": np.zeros(n) if roi is None else roi,
                         "industry": np.zeros(n, dtype=int),
                         "industry_l1": np.zeros(n, dtype=int) if industry_l1 is None else industry_l1,
                         "bid": np.asarray(bid, dtype=float)})


def test_equi_frequency_edges_split_evenly_and_merge_ties():
    b = np.arange(1.0, 13.0)
    edges = equi_frequency_edges(b, 4)
    np.testing.assert_array_equal(np.bincount(np.searchsorted(edges, b, side="right")), [3, 3, 3, 3])
    tied = np.sort(np.r_[np.ones(10), 2.0, 3.0])
    assert equi_frequency_edges(tied, 4).size + 1 <= 3  # ties merge bins, none is empty
    assert equi_frequency_edges(np.full(5, 7.0), 3).size == 0


def test_commercial_sid_reduces_within_path_bid_dispersion():
    """UniVA Fig. 3: 2 semantic levels + commercial token vs a pure 3-level semantic SID of the same shape."""
    synth = make_synthetic_ads(n_ads=3000, n_organic=1, dim=16, n_topics=12, seed=0)
    x, ads = synth.ad_embeddings, synth.ads
    semantic3 = RQKMeans(RQKMeansConfig(codebook_sizes=(16, 16, 64), seed=0)).fit(x)
    hybrid = CommercialSid(RQKMeans(RQKMeansConfig(codebook_sizes=(16, 16), seed=0)),
                           CommercialConfig(vocab_budget=64, n_max=8)).fit(x, ads)
    assert hybrid.codebook_sizes[-1] <= 64
    before = bid_dispersion(semantic3.encode(x), ads["bid"])
    after = bid_dispersion(hybrid.encode(x, ads), ads["bid"])
    assert after.std_mean < 0.5 * before.std_mean
    assert after.range_p75 < 0.5 * before.range_p75


def test_tail_values_are_grouped_and_industries_capped():
    goal = ["A"] * 600 + ["B"] * 395 + ["C"] * 3 + ["D"] * 2  # C and D are the last 0.5%: tail
    industry = np.arange(1000) % 12
    coder = CommercialCoder(CommercialConfig(coverage=0.99, n_industries=9, key_attributes=("goal", "industry")))
    coder.fit(attrs(goal, np.linspace(1, 2, 1000), industry_l1=industry))
    assert coder.classes["goal"] == ["A", "B"]
    assert len(coder.classes["industry"]) == 9
    labels = coder.key_labels(attrs(["C", "A"], [1.0, 1.0], industry_l1=np.array([0, 11])))
    assert labels[0].startswith("other|") and labels[1].startswith("A|")
    assert {lab.split("|")[1] for lab in coder.keys} <= {*map(str, coder.classes["industry"]), "other"}


def test_allocation_respects_bounds_and_budget_and_favours_big_keys():
    rng = np.random.default_rng(0)
    goal = ["big"] * 900 + ["small"] * 100
    cfg = CommercialConfig(n_min=2, n_max=16, vocab_budget=24, n_global_bins=4, key_attributes=("goal",))
    coder = CommercialCoder(cfg).fit(attrs(goal, rng.lognormal(size=1000)))
    bins = dict(zip(coder.keys, [e.size + 1 for e in coder.edges], strict=True))
    assert all(cfg.n_min <= n <= cfg.n_max for n in bins.values())
    assert coder.vocab_size <= cfg.vocab_budget
    assert sum(bins.values()) == cfg.vocab_budget - 4  # the budget is spent: every extra bin gains entropy
    assert bins["big"] > bins["small"]


def test_allocation_maximises_weighted_entropy_against_alternatives():
    """Greedy on concave log2(n) gains is optimal: no other split of the same budget scores higher."""
    rng = np.random.default_rng(1)
    goal = ["a"] * 500 + ["b"] * 300 + ["c"] * 200
    bids = rng.lognormal(size=1000)
    cfg = CommercialConfig(n_min=1, n_max=10, vocab_budget=13, n_global_bins=1, key_attributes=("goal",))
    coder = CommercialCoder(cfg).fit(attrs(goal, bids))
    best = coder.entropy_bits
    labels = np.array(goal)
    for n_a in range(1, 11):
        for n_b in range(1, 12 - n_a):
            n_c = 12 - n_a - n_b
            if not 1 <= n_c <= 10:
                continue
            tokens = np.zeros(1000, dtype=int)
            for offset, (key, n) in enumerate([("a", n_a), ("b", n_b), ("c", n_c)]):
                rows = labels == key
                edges = equi_frequency_edges(np.sort(bids[rows]), n)
                tokens[rows] = offset * 100 + np.searchsorted(edges, bids[rows], side="right")
            assert weighted_entropy(labels, tokens) <= best + 1e-9


def test_unseen_keys_fall_back_to_global_bins():
    rng = np.random.default_rng(2)
    cfg = CommercialConfig(n_global_bins=4, vocab_budget=40, key_attributes=("goal",), coverage=1.0)
    coder = CommercialCoder(cfg).fit(attrs(["CPC"] * 200 + ["CPM"] * 200, rng.lognormal(size=400)))
    new = attrs(["oCPA"] * 3, [0.01, 1.0, 100.0])  # goal never seen: its key has no bins
    tokens = coder.encode(new)
    first_fallback = coder.offsets[-1]
    assert (coder.key_index(new) == -1).all()
    np.testing.assert_array_equal(tokens, first_fallback + np.array([0, np.searchsorted(coder.global_edges, 1.0,
                                                                                         side="right"), 3]))
    assert (coder.encode(attrs(["CPC"] * 2, [1.0, 2.0])) < first_fallback).all()


def test_keys_beyond_the_budget_use_the_fallback():
    goal = [f"g{i}" for i in range(30) for _ in range(30 - i)]  # 30 keys, rarer and rarer
    cfg = CommercialConfig(n_min=2, n_max=4, vocab_budget=12, n_global_bins=2, key_attributes=("goal",),
                           coverage=1.0, max_goal_classes=30)
    coder = CommercialCoder(cfg).fit(attrs(goal, np.linspace(1, 5, len(goal))))
    assert coder.vocab_size <= 12
    assert coder.keys[0] == "g0"  # the most frequent keys are served first
    assert (coder.key_index(attrs(["g29"], [1.0])) == -1).all()


def test_direct_binning_has_one_key():
    rng = np.random.default_rng(3)
    coder = CommercialCoder(CommercialConfig(key_attributes=(), vocab_budget=40, n_global_bins=8))
    coder.fit(attrs(["CPC", "CPM"] * 100, rng.lognormal(size=200)))
    assert coder.keys == [""] and coder.vocab_size == 32 + 8


@pytest.mark.parametrize("kwargs", [dict(n_min=0), dict(n_min=5, n_max=4), dict(vocab_budget=10, n_global_bins=10),
                                    dict(coverage=0.0), dict(key_attributes=("bid",))])
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        CommercialConfig(**kwargs)
