"""UniSID: its loss pieces on hand numbers, the tokenizer contract, numpy-vs-torch parity and a known answer (items
of one category share their level-1 code)."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from adsim.errors import AdSimDataError
from adsim.sid import RQKMeans, RQKMeansConfig, load_tokenizer
from adsim.sid._unisid_torch import UniSIDModule, contrastive_keys, info_nce, summary_loss, to_arrays
from adsim.sid.synthetic import make_synthetic_ads
from adsim.sid.unisid import UniSID, UniSIDConfig

COLUMNS = ("industry_l1", "industry")


def tiny(sizes: tuple[int, ...] = (4, 3), seed: int = 0, columns: tuple[str, ...] = COLUMNS) -> UniSID:
    return UniSID(UniSIDConfig(codebook_sizes=sizes, attribute_columns=columns, attribute_dim=4, hidden_dims=(16,),
                               latent_dim=6, proj_dim=8, epochs=3, batch_size=16, kmeans_iters=5, seed=seed))


def ads(n: int = 60, dim: int = 5, seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    synth = make_synthetic_ads(n_ads=n, n_organic=1, dim=dim, n_topics=4, n_industries=6, seed=seed)
    return synth.ad_embeddings, synth.ads


# ----------------------------------------------------------------------------------------------- loss pieces


def test_info_nce_on_hand_numbers():
    eye = torch.eye(2)
    # two anchors, each with one positive: -log(e / (e + 1)) = log(1 + 1/e)
    assert float(info_nce(eye, torch.tensor([0, 1]))) == pytest.approx(math.log(1 + math.exp(-1)))
    # one shared view: every candidate is a positive, nothing to push apart
    assert float(info_nce(eye, torch.tensor([3, 3]))) == pytest.approx(0.0, abs=1e-7)
    # rows 0 and 1 share a category: their positive mass is (e^2 + 1) / (e^2 + 2); row 2's is e^2 / (e^2 + 2)
    logits = 2 * torch.eye(3)
    e2 = math.exp(2)
    expected = (2 * -math.log((e2 + 1) / (e2 + 2)) - math.log(e2 / (e2 + 2))) / 3
    assert float(info_nce(logits, torch.tensor([5, 5, 7]))) == pytest.approx(expected)
    # an unknown key (-1) is neither anchor nor candidate: the same as the 2 x 2 case, and 0 with one row left
    padded = torch.tensor([[1.0, 0.0, 9.0], [0.0, 1.0, 9.0], [9.0, 9.0, 9.0]])
    assert float(info_nce(padded, torch.tensor([0, 1, -1]))) == pytest.approx(math.log(1 + math.exp(-1)))
    assert float(info_nce(eye, torch.tensor([0, -1]))) == 0.0


def test_summary_loss_on_hand_numbers():
    recon, x = torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    # squared L2 per item summed over dims: (1 + 4 + 0 + 1) / 2 = 3
    assert float(summary_loss(recon, x, [], torch.zeros((2, 0), dtype=torch.long))) == pytest.approx(3.0)
    # uniform logits over 3 indices: cross-entropy log 3 for the known value; the unknown one (0) is no target
    logits = [torch.zeros(2, 3)]
    assert float(summary_loss(recon, x, logits, torch.tensor([[2], [0]]))) == pytest.approx(3.0 + math.log(3))
    # two columns: their cross-entropies are averaged; a column with no known value adds nothing
    logits = [torch.zeros(2, 3), torch.tensor([[0.0, 0.0, math.log(2)], [0.0, 0.0, 0.0]])]
    both = summary_loss(recon, x, logits, torch.tensor([[1, 2], [1, 2]]))
    assert float(both) == pytest.approx(3.0 + (math.log(3) + (math.log(2) + math.log(3)) / 2) / 2)
    assert float(summary_loss(recon, x, logits[:1], torch.tensor([[0], [0]]))) == pytest.approx(3.0)


def test_contrastive_keys_follow_the_attribute_prefix_then_the_item():
    idx = np.array([[1, 1], [1, 2], [2, 1], [0, 1], [1, 1]])
    keys = contrastive_keys(idx, n_levels=3)
    level1, level2, level3 = keys.T
    assert level1[0] == level1[1] == level1[4] != level1[2] and level1[3] == -1
    assert level2[0] == level2[4] and len({level2[0], level2[1], level2[2]}) == 3 and level2[3] == -1
    np.testing.assert_array_equal(level3, np.arange(5))
    no_attributes = contrastive_keys(np.zeros((3, 0), dtype=np.int64), 2)
    np.testing.assert_array_equal(no_attributes, [[0, 0], [1, 1], [2, 2]])


# ----------------------------------------------------------------------------------------------- contract


@given(seed=st.integers(0, 2**16), n=st.integers(24, 50), sizes=st.lists(st.integers(2, 5), min_size=1, max_size=3))
@settings(max_examples=8, deadline=None)
def test_codes_within_codebooks_and_encode_deterministic(seed, n, sizes):
    x, attrs = ads(n, seed=seed)
    tok = tiny(tuple(sizes), seed).fit(x, attrs)
    codes = tok.encode(x, attrs)
    assert codes.shape == (n, tok.num_levels) and codes.dtype == np.int64
    assert (codes >= 0).all() and (codes < np.asarray(tok.codebook_sizes)).all()
    np.testing.assert_array_equal(codes, tok.encode(x, attrs))
    np.testing.assert_array_equal(codes[5:9], tok.encode(x[5:9], attrs.iloc[5:9]))  # no batch effects
    assert tok.decode(codes).shape == x.shape


def test_seeded_fit_is_reproducible_and_leaves_torch_rng_alone():
    x, attrs = ads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = tiny(seed=4).fit(x, attrs)
    torch.testing.assert_close(torch.rand(3), expected)
    b, other = tiny(seed=4).fit(x, attrs), tiny(seed=5).fit(x, attrs)
    assert a.arrays.keys() == b.arrays.keys()
    for name in a.arrays:
        np.testing.assert_array_equal(a.arrays[name], b.arrays[name], err_msg=name)
    assert a.history == b.history
    assert not np.array_equal(a.arrays["encoder_w0"], other.arrays["encoder_w0"])


def test_save_load_round_trip_is_bit_exact(tmp_path):
    x, attrs = ads()
    tok = tiny().fit(x, attrs)
    loaded = load_tokenizer(tok.save(tmp_path / "tok"))
    assert type(loaded) is UniSID and loaded.config == tok.config and loaded.vocabularies == tok.vocabularies
    for name, array in tok.arrays.items():
        np.testing.assert_array_equal(loaded.arrays[name], array)
        assert loaded.arrays[name].dtype == array.dtype
    np.testing.assert_array_equal(loaded.encode(x, attrs), tok.encode(x, attrs))


def test_numpy_latent_matches_torch():
    x, attrs = ads()
    tok = tiny()
    tok.vocabularies = [sorted({str(v) for v in attrs[c]}) for c in COLUMNS]
    torch.manual_seed(0)
    module = UniSIDModule(x.shape[1], tuple(map(len, tok.vocabularies)), tok.config)
    tok.arrays = to_arrays(module)
    idx = tok.attribute_indices(attrs, len(x))
    with torch.no_grad():
        expected = module.latent(module.inputs(torch.from_numpy(x).float(), torch.from_numpy(idx))[0]).numpy()
    np.testing.assert_allclose(tok.latent(x, attrs), expected, rtol=1e-4, atol=1e-5)


def test_missing_empty_and_unseen_values_are_unknown_and_still_encode():
    x, attrs = ads()
    tok = tiny().fit(x, attrs)
    odd = attrs.copy()
    odd["industry_l1"] = odd["industry_l1"].astype(object)
    odd.loc[0, "industry_l1"], odd.loc[1, "industry_l1"], odd.loc[2, "industry_l1"] = None, "", "never seen"
    idx = tok.attribute_indices(odd, len(x))
    np.testing.assert_array_equal(idx[:3, 0], 0)
    assert (idx[3:] > 0).all()
    assert tok.encode(x, odd).shape == (len(x), 2)


def test_configured_attributes_are_required():
    x, attrs = ads()
    with pytest.raises(ValueError, match="DataFrame"):
        tiny().fit(x)
    with pytest.raises(AdSimDataError, match="lacks"):
        tiny().fit(x, attrs.drop(columns="industry"))
    with pytest.raises(AdSimDataError, match="rows"):
        tiny().fit(x, attrs.iloc[:10])
    embedding_only = tiny(columns=()).fit(x)  # no attributes configured: attrs is not needed
    assert embedding_only.encode(x).shape == (len(x), 2)
    with pytest.raises(ValueError, match="temperature"):
        UniSIDConfig(temperature=0.0)


# ----------------------------------------------------------------------------------------------- known answer


def test_items_of_one_category_share_their_level1_code():
    """Four categories, each a noisy cluster, four level-1 codes: two items of one category almost always share
    their level-1 code, far above the chance rate sum_k p_k^2 of two random items, and more often than under
    RQ-Kmeans, which sees the embedding alone."""
    rng = np.random.default_rng(0)
    n, dim, n_categories = 320, 8, 4
    category = rng.integers(n_categories, size=n)
    centers = rng.standard_normal((n_categories, dim))
    x = centers[category] + 0.5 * rng.standard_normal((n, dim))
    attrs = pd.DataFrame({"category": category})
    tok = UniSID(UniSIDConfig(codebook_sizes=(4, 8), attribute_columns=("category",), hidden_dims=(32,),
                              latent_dim=8, epochs=15, batch_size=64, seed=0)).fit(x, attrs)
    same_category = (category[:, None] == category[None, :]) & ~np.eye(n, dtype=bool)

    def shared_within_category(level1: np.ndarray) -> float:
        return float((level1[:, None] == level1[None, :])[same_category].mean())

    level1 = tok.encode(x, attrs)[:, 0]
    chance = ((np.bincount(level1) / n) ** 2).sum()
    rq_kmeans = RQKMeans(RQKMeansConfig(codebook_sizes=(4, 8), seed=0)).fit(x).encode(x)[:, 0]
    assert shared_within_category(level1) > 0.95 and chance < 0.3
    assert shared_within_category(level1) > shared_within_category(rq_kmeans)
