"""Contract every tokenizer must keep (hypothesis), plus RQ-VAE / RQ-Kmeans+ specifics."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adsim.sid import (
    RQVAE,
    CommercialConfig,
    CommercialSid,
    RQKMeans,
    RQKMeansConfig,
    RQKMeansPlus,
    RQVAEConfig,
    load_tokenizer,
)
from adsim.sid.synthetic import make_synthetic_ads

KINDS = ("rq_kmeans", "rq_kmeans_balanced", "rq_vae", "rq_kmeans_plus", "commercial_sid")


def make_tokenizer(kind: str, sizes: tuple[int, ...], seed: int):
    """Tiny, fast configurations of every tokenizer."""
    if kind in ("rq_kmeans", "rq_kmeans_balanced"):
        return RQKMeans(RQKMeansConfig(codebook_sizes=sizes, n_iter=10, seed=seed,
                                       balanced=kind == "rq_kmeans_balanced"))
    if kind == "rq_vae":
        return RQVAE(RQVAEConfig(codebook_sizes=sizes, hidden_dims=(8,), latent_dim=3, epochs=2, batch_size=16,
                                 seed=seed))
    if kind == "rq_kmeans_plus":
        return RQKMeansPlus(RQVAEConfig(codebook_sizes=sizes, hidden_dims=(8,), latent_dim=None, residual=True,
                                        kmeans_init=True, epochs=2, batch_size=16, kmeans_iters=5, seed=seed))
    return CommercialSid(make_tokenizer("rq_kmeans", sizes, seed),
                         CommercialConfig(n_max=4, vocab_budget=24, n_global_bins=3))


def data(n: int, dim: int, seed: int) -> tuple[np.ndarray, pd.DataFrame]:
    synth = make_synthetic_ads(n_ads=n, n_organic=1, dim=dim, n_topics=4, n_industries=6, seed=seed)
    return synth.ad_embeddings, synth.ads


CASES = dict(
    kind=st.sampled_from(KINDS),
    seed=st.integers(0, 2**16),
    n=st.integers(24, 60),
    dim=st.integers(2, 6),
    sizes=st.lists(st.integers(2, 6), min_size=1, max_size=3).map(tuple),
)
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@given(**CASES)
@SETTINGS
def test_codes_within_codebooks_and_encode_deterministic(kind, seed, n, dim, sizes):
    x, attrs = data(n, dim, seed)
    tok = make_tokenizer(kind, sizes, seed).fit(x, attrs)
    codes = tok.encode(x, attrs)
    assert codes.shape == (n, tok.num_levels) and codes.dtype == np.int64
    assert (codes >= 0).all() and (codes < np.asarray(tok.codebook_sizes)).all()
    np.testing.assert_array_equal(codes, tok.encode(x, attrs))
    # encoding a subset gives the same rows: no batch effects
    np.testing.assert_array_equal(codes[5:9], tok.encode(x[5:9], attrs.iloc[5:9]))


@given(**CASES)
@SETTINGS
def test_save_load_round_trip_is_bit_exact(kind, seed, n, dim, sizes, tmp_path_factory):
    x, attrs = data(n, dim, seed)
    tok = make_tokenizer(kind, sizes, seed).fit(x, attrs)
    directory = tok.save(tmp_path_factory.mktemp("tok"))
    loaded = load_tokenizer(directory)
    assert type(loaded) is type(tok) and loaded.codebook_sizes == tok.codebook_sizes
    _, _, before = tok._get_state()
    _, _, after = loaded._get_state()
    assert before.keys() == after.keys()
    for name in before:
        np.testing.assert_array_equal(before[name], after[name])
        assert before[name].dtype == after[name].dtype
    np.testing.assert_array_equal(loaded.encode(x, attrs), tok.encode(x, attrs))


@given(**CASES)
@settings(max_examples=15, deadline=None)
def test_seeded_fit_is_reproducible(kind, seed, n, dim, sizes):
    x, attrs = data(n, dim, seed)
    a = make_tokenizer(kind, sizes, seed).fit(x, attrs)
    b = make_tokenizer(kind, sizes, seed).fit(x, attrs)
    for (name, arr_a), arr_b in zip(a._get_state()[2].items(), b._get_state()[2].values(), strict=True):
        np.testing.assert_array_equal(arr_a, arr_b, err_msg=name)
    np.testing.assert_array_equal(a.encode(x, attrs), b.encode(x, attrs))


@pytest.mark.parametrize("kind", ["rq_vae", "rq_kmeans_plus"])
def test_different_seeds_give_different_models(kind):
    x, attrs = data(60, 4, seed=7)
    a = make_tokenizer(kind, (4, 3), seed=1).fit(x, attrs)
    b = make_tokenizer(kind, (4, 3), seed=2).fit(x, attrs)
    assert not np.array_equal(a.arrays["encoder_w0"], b.arrays["encoder_w0"])


def test_fit_leaves_global_torch_rng_alone():
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    make_tokenizer("rq_vae", (4,), seed=0).fit(*data(30, 3, 0))
    torch.testing.assert_close(torch.rand(3), expected)


def clustered(seed: int, n: int = 300, dim: int = 8, n_centers: int = 10) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_centers, dim))
    return centers[rng.integers(n_centers, size=n)] + 0.3 * rng.standard_normal((n, dim))


@pytest.mark.parametrize("seed", [0, 1])
def test_rq_kmeans_plus_reconstructs_better_than_rq_kmeans(seed):
    x = clustered(seed)
    sizes = (4, 4, 4)

    def error(tok) -> float:
        return float(((tok.decode(tok.encode(x)) - x) ** 2).mean())

    rqk = RQKMeans(RQKMeansConfig(codebook_sizes=sizes, seed=seed)).fit(x)
    plus = RQKMeansPlus(RQVAEConfig(codebook_sizes=sizes, hidden_dims=(32,), latent_dim=None, residual=True,
                                    kmeans_init=True, epochs=30, batch_size=64, seed=seed)).fit(x)
    assert error(plus) < 0.95 * error(rqk)


def test_rq_kmeans_plus_starts_as_rq_kmeans():
    """Residual encoder/decoder with zero-initialised last layers: at step 0 the model is RQ-Kmeans itself."""
    x = clustered(0, n=120)
    cfg = RQVAEConfig(codebook_sizes=(4, 4), hidden_dims=(16,), latent_dim=None, residual=True, kmeans_init=True,
                      lr=1e-12, epochs=1, batch_size=32, kmeans_iters=50, seed=3)
    plus = RQKMeansPlus(cfg).fit(x)
    rqk = RQKMeans(RQKMeansConfig(codebook_sizes=(4, 4), n_iter=50, seed=3)).fit(x)
    np.testing.assert_array_equal(plus.encode(x), rqk.encode(x))
    np.testing.assert_allclose(plus.latent(x), x, atol=1e-9)


def test_rq_vae_reconstruction_improves_with_training():
    x = clustered(2)
    tok = RQVAE(RQVAEConfig(codebook_sizes=(8, 8), hidden_dims=(32,), latent_dim=8, epochs=40, batch_size=32)).fit(x)
    assert tok.history[-1]["recon"] < 0.5 * tok.history[0]["recon"]


def test_numpy_forward_matches_torch():
    import torch

    from adsim.sid._rqvae_torch import MLP
    from adsim.sid.rq_vae import mlp_forward

    x = np.random.default_rng(0).standard_normal((20, 6))
    for residual in (False, True):
        torch.manual_seed(0)
        mlp = MLP(6, (16, 8), 6, residual)
        if residual:  # move off the zero init so the MLP branch matters
            torch.nn.init.normal_(mlp.layers[-1].weight)
        expected = mlp(torch.from_numpy(x).float()).detach().numpy()
        weights = [layer.weight.detach().numpy() for layer in mlp.layers]
        biases = [layer.bias.detach().numpy() for layer in mlp.layers]
        np.testing.assert_allclose(mlp_forward(x, weights, biases, residual), expected, rtol=1e-4, atol=1e-5)


def test_rq_kmeans_plus_rejects_a_plain_vae_config():
    with pytest.raises(ValueError, match="kmeans_init"):
        RQKMeansPlus(RQVAEConfig())


def test_importing_adsim_sid_does_not_import_torch():
    code = "import sys, adsim.sid, adsim.datasets; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
