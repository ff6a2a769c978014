"""RQ-VAE (Lee et al. 2022, as used by TIGER): MLP encoder, residual codebooks trained with a straight-through
estimator, MLP decoder; loss = reconstruction MSE + codebook loss + beta x commitment loss.

It is the baseline that collapses: codebooks start at random and dead codes are never re-seeded. Training runs in
torch (imported lazily); a fitted model encodes and decodes in numpy from its saved arrays, so loading and using it
needs no torch.
"""

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
from adsim.sid.kmeans import residual_quantize


@dataclass
class RQVAEConfig:
    codebook_sizes: tuple[int, ...] = (256, 256, 256)
    """Codes per level, coarse to fine."""
    hidden_dims: tuple[int, ...] = (256, 128)
    """Encoder hidden widths; the decoder mirrors them."""
    latent_dim: int | None = 32
    """Width of the quantized latent; None = the input dimension (required when ``residual``)."""
    residual: bool = False
    """Encoder output = input + MLP(input), decoder output = latent + MLP(latent), last layers zero-initialised:
    the model starts as plain residual quantization of the input itself (RQ-Kmeans+)."""
    kmeans_init: bool = False
    """Initialise the codebooks with RQ-Kmeans on the initial latent instead of at random (RQ-Kmeans+)."""
    kmeans_iters: int = 50
    """Lloyd iterations per level for ``kmeans_init``."""
    beta: float = 0.25
    """Weight of the commitment loss."""
    lr: float = 1e-3
    """Adam learning rate."""
    epochs: int = 50
    batch_size: int = 256
    seed: int = 0
    """Seeds weight init, k-means init and batch order."""

    def __post_init__(self) -> None:
        self.codebook_sizes = check_codebook_sizes(self.codebook_sizes)
        self.hidden_dims = tuple(int(h) for h in self.hidden_dims)
        for name in ("epochs", "batch_size", "kmeans_iters"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.residual and self.latent_dim is not None:
            raise ValueError("latent_dim must be None (= input dimension) when residual=True")


def mlp_forward(x: np.ndarray, weights: list[np.ndarray], biases: list[np.ndarray], residual: bool) -> np.ndarray:
    """Numpy twin of ``_rqvae_torch.MLP.forward`` (ReLU between layers), in float64; a parity test keeps them equal."""
    h = x
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        h = h @ w.T.astype(np.float64) + b.astype(np.float64)
        if i < len(weights) - 1:
            np.maximum(h, 0.0, out=h)
    return x + h if residual else h


@register
class RQVAE(SemanticTokenizer):
    """RQ-VAE tokenizer; ``RQKMeansPlus`` is the same model with RQ-Kmeans codebooks and residual encoder/decoder."""

    kind = "rq_vae"

    def __init__(self, config: RQVAEConfig | None = None):
        self.config = config or self.default_config()
        self.arrays: dict[str, np.ndarray] = {}
        self.history: list[dict[str, float]] = []
        """Per-epoch mean losses of the last fit: recon, codebook, commit."""

    @classmethod
    def default_config(cls) -> RQVAEConfig:
        return RQVAEConfig()

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return self.config.codebook_sizes

    @property
    def is_fitted(self) -> bool:
        return bool(self.arrays)

    @property
    def dim(self) -> int:
        self._require_fitted()
        return self.arrays["encoder_w0"].shape[1]

    @property
    def codebooks(self) -> list[np.ndarray]:
        return [self.arrays[f"codebook_{i}"].astype(np.float64) for i in range(self.num_levels)]

    def _layers(self, part: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
        n = len(self.config.hidden_dims) + 1
        return [self.arrays[f"{part}_w{i}"] for i in range(n)], [self.arrays[f"{part}_b{i}"] for i in range(n)]

    def fit(self, embeddings: np.ndarray, attrs: pd.DataFrame | None = None) -> Self:
        x = check_embeddings(embeddings)
        check_enough_items(x.shape[0], self.codebook_sizes)
        from adsim.sid import _rqvae_torch

        self.arrays, self.history = _rqvae_torch.train(x, self.config)
        return self

    def latent(self, embeddings: np.ndarray) -> np.ndarray:
        """Encoder output ``(N, latent_dim) float64``, before quantization."""
        self._require_fitted()
        x = check_embeddings(embeddings, dim=self.dim)
        return mlp_forward(x, *self._layers("encoder"), residual=self.config.residual)

    def encode(self, embeddings: np.ndarray, attrs: pd.DataFrame | None = None) -> np.ndarray:
        codes, _ = residual_quantize(self.latent(embeddings), self.codebooks)
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        self._require_fitted()
        codes = self.check_codes(codes)
        quantized = sum(cb[codes[:, level]] for level, cb in enumerate(self.codebooks))
        return mlp_forward(quantized, *self._layers("decoder"), residual=self.config.residual)

    def _get_state(self) -> tuple[dict, dict, dict[str, np.ndarray]]:
        return config_to_json(self.config), {"history": self.history}, dict(self.arrays)

    @classmethod
    def _from_state(cls, directory: Path, config: dict, state: dict, arrays: dict[str, np.ndarray]) -> Self:
        tok = cls(config_from_json(RQVAEConfig, config))
        tok.arrays, tok.history = arrays, state["history"]
        return tok
