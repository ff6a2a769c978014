"""Seeded k-means in numpy: k-means++ seeding, Lloyd iterations, an equal-size (balanced) assignment, and the
greedy residual quantizer every RQ tokenizer encodes with.

Distances are computed in row chunks (``||x||^2 - 2 x.c + ||c||^2``) so that memory stays ``O(chunk x K)`` for the
plain variant; the balanced variant needs the full ``(N, K)`` distance matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHUNK_ROWS = 8192
"""Rows per distance block: 8192 x 2048 codes x 8 bytes = 128 MiB at most."""


def sq_distances(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``(N, K)`` between rows of ``x (N, D)`` and ``centroids (K, D)``, clipped at 0."""
    out = np.empty((x.shape[0], centroids.shape[0]))
    c_sq = np.einsum("kd,kd->k", centroids, centroids)
    for start in range(0, x.shape[0], CHUNK_ROWS):
        xb = x[start:start + CHUNK_ROWS]
        block = out[start:start + CHUNK_ROWS]
        np.matmul(xb, centroids.T, out=block)
        block *= -2.0
        block += np.einsum("nd,nd->n", xb, xb)[:, None]
        block += c_sq[None, :]
        np.maximum(block, 0.0, out=block)
    return out


def nearest(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centroid ``(N,) int64`` and its squared distance ``(N,)``; ties go to the lower index."""
    labels = np.empty(x.shape[0], dtype=np.int64)
    dist = np.empty(x.shape[0])
    c_sq = np.einsum("kd,kd->k", centroids, centroids)
    for start in range(0, x.shape[0], CHUNK_ROWS):
        xb = x[start:start + CHUNK_ROWS]
        # ||x||^2 is the same for every centroid: leave it out of the argmin, add it back to the minimum only
        partial = xb @ centroids.T
        partial *= -2.0
        partial += c_sq[None, :]
        labels[start:start + CHUNK_ROWS] = idx = partial.argmin(axis=1)
        best = partial[np.arange(xb.shape[0]), idx] + np.einsum("nd,nd->n", xb, xb)
        dist[start:start + CHUNK_ROWS] = np.maximum(best, 0.0)
    return labels, dist


def kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): each next centre is drawn with probability ~ D(x)^2."""
    n = x.shape[0]
    centroids = np.empty((k, x.shape[1]))
    centroids[0] = x[rng.integers(n)]
    closest = ((x - centroids[0]) ** 2).sum(axis=1)
    for j in range(1, k):
        total = closest.sum()
        # all points already coincide with a centre (duplicates): any point is as good as another
        idx = rng.integers(n) if total <= 0 else min(int(np.searchsorted(np.cumsum(closest), rng.random() * total)),
                                                    n - 1)
        centroids[j] = x[idx]
        np.minimum(closest, ((x - centroids[j]) ** 2).sum(axis=1), out=closest)
    return centroids


def balanced_assign(dist: np.ndarray) -> np.ndarray:
    """Assign N points to K clusters of sizes ``floor(N/K)`` or ``ceil(N/K)``, each point as near as capacity allows.

    Greedy auction, vectorised: every unassigned point proposes to its nearest cluster that still has room, each
    cluster keeps its nearest proposers up to its room, the rest propose again. Each round fills a cluster or ends,
    so there are at most K + 1 rounds. First every cluster gets ``floor(N/K)``, then the ``N mod K`` leftovers go to
    distinct clusters.

    Args:
        dist: ``(N, K)`` squared distances.
    Returns:
        ``(N,) int64`` labels.
    """
    n, k = dist.shape
    labels = np.full(n, -1, dtype=np.int64)
    base, extra = divmod(n, k)
    for room in [np.full(k, base, dtype=np.int64)] + ([np.ones(k, dtype=np.int64)] if extra else []):
        while (todo := np.flatnonzero(labels < 0)).size and room.sum() > 0:
            d = np.where(room[None, :] > 0, dist[todo], np.inf)
            choice = d.argmin(axis=1)
            own = d[np.arange(todo.size), choice]
            order = np.lexsort((own, choice))  # by cluster, nearest first
            choice_sorted = choice[order]
            first = np.searchsorted(choice_sorted, choice_sorted, side="left")
            rank = np.arange(todo.size) - first
            accepted = order[rank < room[choice_sorted]]
            labels[todo[accepted]] = choice[accepted]
            room -= np.bincount(choice[accepted], minlength=k)
    return labels


@dataclass
class KMeansResult:
    centroids: np.ndarray
    """(K, D) float64."""
    labels: np.ndarray
    """(N,) int64 cluster of each point (balanced assignment when fitted balanced)."""
    inertia: float
    """Sum of squared distances of points to their assigned centroid."""
    n_iter: int


def _update(x: np.ndarray, labels: np.ndarray, dist: np.ndarray, k: int) -> np.ndarray:
    """Cluster means; an empty cluster is re-seeded at the point farthest from its centroid (one point each)."""
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, labels, x)
    counts = np.bincount(labels, minlength=k)
    centroids = sums / np.maximum(counts, 1)[:, None]
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        far = np.argsort(-dist, kind="stable")[:empty.size]
        centroids[empty[:far.size]] = x[far]
    return centroids


def kmeans(x: np.ndarray, k: int, *, seed: int, n_iter: int = 50, tol: float = 1e-6,
           balanced: bool = False) -> KMeansResult:
    """Seeded k-means: k-means++ then Lloyd until the centroid shift falls below ``tol`` x data variance.

    Args:
        x: ``(N, D)`` float64 points, N >= k.
        k: number of clusters.
        seed: seeds k-means++; the same (x, k, seed) gives the same result.
        n_iter: maximum Lloyd iterations.
        tol: relative tolerance on the squared centroid shift.
        balanced: assign with ``balanced_assign`` (equal-size clusters) instead of to the nearest centroid.
    """
    if k < 1 or x.shape[0] < k:
        raise ValueError(f"k must be in [1, N={x.shape[0]}], got k={k}")
    rng = np.random.default_rng(seed)
    centroids = kmeans_plus_plus(x, k, rng)
    threshold = tol * float(x.var(axis=0).sum())
    iterations = 0
    while iterations < n_iter:
        iterations += 1
        labels, dist = _assign(x, centroids, balanced)
        new = _update(x, labels, dist, k)
        shift = float(((new - centroids) ** 2).sum(axis=1).max())
        centroids = new
        if shift <= threshold:
            break
    labels, dist = _assign(x, centroids, balanced)
    return KMeansResult(centroids=centroids, labels=labels, inertia=float(dist.sum()), n_iter=iterations)


def _assign(x: np.ndarray, centroids: np.ndarray, balanced: bool) -> tuple[np.ndarray, np.ndarray]:
    if not balanced:
        return nearest(x, centroids)
    d = sq_distances(x, centroids)
    labels = balanced_assign(d)
    return labels, d[np.arange(x.shape[0]), labels]


def residual_quantize(x: np.ndarray, codebooks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Greedy residual quantization: level l takes the codeword nearest to what the earlier levels left over.

    Returns:
        codes ``(N, L) int64`` and the quantized vectors ``(N, D)`` (sum of the chosen codewords).
    """
    codes = np.empty((x.shape[0], len(codebooks)), dtype=np.int64)
    quantized = np.zeros_like(x)
    residual = x.copy()
    for level, codebook in enumerate(codebooks):
        codes[:, level], _ = nearest(residual, codebook)
        chosen = codebook[codes[:, level]]
        quantized += chosen
        residual -= chosen
    return codes, quantized
