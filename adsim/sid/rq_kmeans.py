"""RQ-Kmeans: residual k-means, one level at a time (the codebook GPR's RQ-Kmeans+ starts from)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd

from adsim.sid.base import (
    SemanticTokenizer,
    check_codebook_sizes,
    check_embeddings,
    check_enough_items,
    config_from_json,
    config_to_json,
    register,
)
from adsim.sid.kmeans import kmeans, residual_quantize


@dataclass
class RQKMeansConfig:
    codebook_sizes: tuple[int, ...] = (256, 256, 256)
    """Codes per level, coarse to fine."""
    n_iter: int = 50
    """Maximum Lloyd iterations per level."""
    tol: float = 1e-6
    """Stop a level when the largest squared centroid shift is below tol x total data variance."""
    balanced: bool = False
    """Fit equal-size clusters at every level (sizes differ by at most one). ``encode`` still takes the nearest
    codeword, so new items are not forced into balance."""
    seed: int = 0
    """Level l is seeded with ``seed + l``."""

    def __post_init__(self) -> None:
        self.codebook_sizes = check_codebook_sizes(self.codebook_sizes)
        if self.n_iter < 1:
            raise ValueError(f"n_iter must be >= 1, got {self.n_iter}")


@register
class RQKMeans(SemanticTokenizer):
    """Residual k-means: level l clusters what levels < l left over; codes are the nearest codewords level by level.

    Example:
        >>> tok = RQKMeans(RQKMeansConfig(codebook_sizes=(4, 4), seed=0)).fit(np.random.rand(100, 8))
        >>> tok.encode(np.random.rand(3, 8)).shape
        (3, 2)
    """

    kind = "rq_kmeans"

    def __init__(self, config: RQKMeansConfig | None = None):
        self.config = config or RQKMeansConfig()
        self.codebooks: list[np.ndarray] = []

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return self.config.codebook_sizes

    @property
    def is_fitted(self) -> bool:
        return bool(self.codebooks)

    @property
    def dim(self) -> int:
        self._require_fitted()
        return self.codebooks[0].shape[1]

    def fit(self, embeddings: np.ndarray, attrs: pd.DataFrame | None = None) -> Self:
        x = check_embeddings(embeddings)
        check_enough_items(x.shape[0], self.codebook_sizes)
        residual = x.copy()
        self.codebooks = []
        for level, k in enumerate(self.codebook_sizes):
            result = kmeans(residual, k, seed=self.config.seed + level, n_iter=self.config.n_iter,
                            tol=self.config.tol, balanced=self.config.balanced)
            self.codebooks.append(result.centroids)
            residual -= result.centroids[result.labels]
        return self

    def encode(self, embeddings: np.ndarray, attrs: pd.DataFrame | None = None) -> np.ndarray:
        self._require_fitted()
        codes, _ = residual_quantize(check_embeddings(embeddings, dim=self.dim), self.codebooks)
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        self._require_fitted()
        codes = self.check_codes(codes)
        return sum(cb[codes[:, level]] for level, cb in enumerate(self.codebooks))

    def _get_state(self) -> tuple[dict, dict, dict[str, np.ndarray]]:
        return config_to_json(self.config), {}, {f"codebook_{i}": cb for i, cb in enumerate(self.codebooks)}

    @classmethod
    def _from_state(cls, directory: Path, config: dict, state: dict, arrays: dict[str, np.ndarray]) -> Self:
        tok = cls(config_from_json(RQKMeansConfig, config))
        tok.codebooks = [arrays[f"codebook_{i}"] for i in range(len(tok.codebook_sizes))]
        return tok
