"""k-means building blocks: known answers, the chunked fast path against brute force, balance, seeding."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adsim.sid import kmeans as km


def blobs(n_per: int, centers: np.ndarray, scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(centers)), n_per)
    return centers[labels] + scale * rng.standard_normal((labels.size, centers.shape[1])), labels


def test_nearest_matches_brute_force_across_chunks(monkeypatch):
    monkeypatch.setattr(km, "CHUNK_ROWS", 7)  # force several chunks
    rng = np.random.default_rng(0)
    x, c = rng.standard_normal((50, 5)), rng.standard_normal((9, 5))
    brute = ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    labels, dist = km.nearest(x, c)
    np.testing.assert_array_equal(labels, brute.argmin(1))
    np.testing.assert_allclose(dist, brute.min(1), atol=1e-12)
    np.testing.assert_allclose(km.sq_distances(x, c), brute, atol=1e-12)


def test_kmeans_recovers_separated_clusters():
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    x, truth = blobs(25, centers, 0.3, seed=1)
    result = km.kmeans(x, 4, seed=0)
    # same partition up to relabelling
    pairs = set(zip(truth.tolist(), result.labels.tolist(), strict=True))
    assert len(pairs) == 4
    assert result.inertia < 100 * 0.3**2 * 2 * 1.5


@given(seed=st.integers(0, 2**16), n=st.integers(10, 80), k=st.integers(2, 9))
@settings(max_examples=30, deadline=None)
def test_balanced_assign_sizes_differ_by_at_most_one(seed, n, k):
    if n < k:
        n = k
    rng = np.random.default_rng(seed)
    labels = km.balanced_assign(rng.random((n, k)))
    sizes = np.bincount(labels, minlength=k)
    assert (labels >= 0).all() and sizes.sum() == n
    assert sizes.max() - sizes.min() <= 1


def test_balanced_kmeans_beats_plain_on_size_spread():
    centers = np.array([[0.0, 0.0], [8.0, 0.0]])
    x, _ = blobs(60, centers, 0.5, seed=2)
    x = np.concatenate([x, np.zeros((40, 2)) + [[0.0, 0.2]]])  # one dense region: plain k-means is unbalanced
    plain = np.bincount(km.kmeans(x, 4, seed=0).labels, minlength=4)
    balanced = np.bincount(km.kmeans(x, 4, seed=0, balanced=True).labels, minlength=4)
    assert balanced.max() - balanced.min() <= 1 < plain.max() - plain.min()


def test_kmeans_is_reproducible_and_seed_sensitive():
    x = np.random.default_rng(3).standard_normal((200, 4))
    a, b, c = km.kmeans(x, 8, seed=5), km.kmeans(x, 8, seed=5), km.kmeans(x, 8, seed=6)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert not np.array_equal(a.centroids, c.centroids)


def test_kmeans_survives_duplicate_points():
    x = np.repeat(np.eye(3), 10, axis=0)  # only 3 distinct points, 5 clusters
    result = km.kmeans(x, 5, seed=0)
    assert result.inertia == pytest.approx(0.0)


def test_residual_quantize_known_answer():
    codebooks = [np.array([[0.0, 0.0], [10.0, 0.0]]), np.array([[0.0, 1.0], [0.0, -1.0]])]
    codes, quantized = km.residual_quantize(np.array([[9.0, -0.8], [0.5, 1.2]]), codebooks)
    np.testing.assert_array_equal(codes, [[1, 1], [0, 0]])
    np.testing.assert_array_equal(quantized, [[10.0, -1.0], [0.0, 1.0]])
