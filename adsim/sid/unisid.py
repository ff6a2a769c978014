"""UniSID (unified SID generation for generative ad recommendation): codes learned end to end from the raw ad, not
quantized afterwards from a frozen embedding.

Our reading of the abstract, as implemented here:

* Input: the ad's content embedding plus its categorical attributes (``attribute_columns``, coarse to fine, e.g.
  ``("industry_l1", "industry")``), each through a learned table; unknown or empty values are a zero vector.
* Encoder MLP -> L residual codebooks (nearest codeword per level, straight-through to the encoder, codebook loss
  + ``beta`` x commitment loss as in RQ-VAE), the latent on the unit sphere, codebooks started from RQ-Kmeans on the
  initial latent, codes no item picks re-seeded after each epoch.
* Multi-granularity contrastive alignment: the quantized prefix of level l (sum of the first l codewords) is pulled
  towards the item's view at that granularity and pushed from the other items' views by InfoNCE over the batch.
  Level l <= C (C = number of attribute columns) views attribute columns 1..l, so coarse levels align with
  categories (items of one category are each other's positives, an item missing one of those attributes sits the
  level out); deeper levels view the full item (embedding and every attribute), so they tell items apart.
* Summary reconstruction: from the sum of the code embeddings a decoder rebuilds the ad's summary, its embedding
  (squared error) and attribute bag (a cross-entropy per column).

loss = summary_weight x summary + contrastive_weight x mean_l InfoNCE_l + codebook + beta x commitment.
Training runs in torch (imported lazily); a fitted model encodes and decodes in numpy from its saved arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd

from adsim.errors import AdSimDataError
from adsim.sid.base import (
    SemanticTokenizer,
    SidTokenizer,
    check_codebook_sizes,
    check_embeddings,
    check_enough_items,
    config_from_json,
    config_to_json,
    register,
)
from adsim.sid.kmeans import residual_quantize
from adsim.sid.rq_vae import mlp_forward


@dataclass
class UniSIDConfig:
    codebook_sizes: tuple[int, ...] = (256, 256, 256)
    """Codes per level, coarse to fine."""
    attribute_columns: tuple[str, ...] = ()
    """Categorical attributes read from ``attrs``, coarse to fine; level l aligns with the first l of them and levels
    past them with the full item. Empty = the embedding alone (every level aligns with the full item)."""
    attribute_dim: int = 16
    """Width of each attribute's learned vector."""
    hidden_dims: tuple[int, ...] = (256,)
    """Encoder hidden widths; the decoder mirrors them."""
    latent_dim: int = 32
    """Width of the quantized latent."""
    proj_dim: int = 32
    """Width of the contrastive space the per-level prefix and view heads map into."""
    temperature: float = 0.1
    """InfoNCE temperature."""
    contrastive_weight: float = 1.0
    """Weight of the multi-granularity contrastive loss (0 = the ablation without it)."""
    summary_weight: float = 1.0
    """Weight of the summary reconstruction loss (0 = the ablation without it)."""
    beta: float = 0.25
    """Weight of the commitment loss."""
    kmeans_init: bool = True
    """Start the codebooks from RQ-Kmeans on the initial latent instead of at random."""
    kmeans_iters: int = 50
    """Lloyd iterations per level for ``kmeans_init``."""
    restart_dead_codes: bool = True
    """After each epoch, re-seed codes no item picks with random items' residuals."""
    lr: float = 1e-3
    """Adam learning rate."""
    epochs: int = 50
    batch_size: int = 256
    seed: int = 0
    """Seeds weight init, k-means init, batch order and restarts."""

    def __post_init__(self) -> None:
        self.codebook_sizes = check_codebook_sizes(self.codebook_sizes)
        self.attribute_columns = tuple(str(c) for c in self.attribute_columns)
        self.hidden_dims = tuple(int(h) for h in self.hidden_dims)
        if len(set(self.attribute_columns)) != len(self.attribute_columns):
            raise ValueError(f"attribute_columns must be distinct, got {self.attribute_columns}")
        for name in ("attribute_dim", "latent_dim", "proj_dim", "kmeans_iters", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        for name in ("contrastive_weight", "summary_weight", "beta"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def _labels(values: pd.Series) -> pd.Series:
    """Attribute values as strings, NaN where missing or empty: an empty field says nothing about the ad."""
    labels = values.astype(str)
    return labels.where(values.notna() & (labels != ""))


@register
class UniSID(SidTokenizer):
    """UniSID tokenizer: ``fit(embeddings, attrs)`` / ``encode(embeddings, attrs)`` with ``attrs`` holding the
    configured ``attribute_columns`` (ignored when there are none); ``decode`` rebuilds the embedding.

    Example:
        >>> tok = UniSID(UniSIDConfig(codebook_sizes=(8, 8), attribute_columns=("industry_l1",), epochs=5))
        >>> tok.fit(ad_embeddings, ads).encode(ad_embeddings, ads)  # (n_ads, 2)
    """

    kind = "unisid"

    def __init__(self, config: UniSIDConfig | None = None):
        self.config = config or UniSIDConfig()
        self.arrays: dict[str, np.ndarray] = {}
        self.vocabularies: list[list[str]] = []
        """Per attribute column, the values seen at fit time; value ``vocabularies[c][i]`` has index i + 1."""
        self.history: list[dict[str, float]] = []
        """Per-epoch mean losses of the last fit (summary, contrastive, codebook, commit) and codes restarted."""

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return self.config.codebook_sizes

    @property
    def is_fitted(self) -> bool:
        return bool(self.arrays)

    @property
    def dim(self) -> int:
        """Embedding dimension the tokenizer was fitted on."""
        self._require_fitted()
        return self.arrays[f"decoder_b{len(self.config.hidden_dims)}"].shape[0]  # the decoder's last layer

    @property
    def codebooks(self) -> list[np.ndarray]:
        return [self.arrays[f"codebook_{i}"].astype(np.float64) for i in range(self.num_levels)]

    def _layers(self, part: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
        n = len(self.config.hidden_dims) + 1
        return [self.arrays[f"{part}_w{i}"] for i in range(n)], [self.arrays[f"{part}_b{i}"] for i in range(n)]

    def _check_attrs(self, attrs: pd.DataFrame | None, n_items: int) -> pd.DataFrame | None:
        columns = self.config.attribute_columns
        if not columns:
            return None
        if not isinstance(attrs, pd.DataFrame):
            raise ValueError(f"attrs must be a DataFrame with columns {list(columns)}, got {type(attrs).__name__}")
        for column in columns:
            if column not in attrs.columns:
                raise AdSimDataError("attrs lacks an attribute UniSID is configured to read", column=column)
        if len(attrs) != n_items:
            raise AdSimDataError(f"attrs has {len(attrs)} rows but there are {n_items} embeddings")
        return attrs

    def attribute_indices(self, attrs: pd.DataFrame | None, n_items: int) -> np.ndarray:
        """``(N, C) int64`` index of each item's value per attribute column; 0 = missing or unseen at fit time."""
        attrs = self._check_attrs(attrs, n_items)
        out = np.zeros((n_items, len(self.vocabularies)), dtype=np.int64)
        for c, vocabulary in enumerate(self.vocabularies):
            labels = _labels(attrs[self.config.attribute_columns[c]].reset_index(drop=True))
            out[:, c] = pd.Index(vocabulary).get_indexer(labels) + 1
        return out

    def fit(self, embeddings: np.ndarray, attrs: pd.DataFrame | None = None) -> Self:
        x = check_embeddings(embeddings)
        check_enough_items(x.shape[0], self.codebook_sizes)
        attrs = self._check_attrs(attrs, x.shape[0])
        self.vocabularies = [sorted(set(_labels(attrs[column]).dropna())) for column in self.config.attribute_columns]
        from adsim.sid import _unisid_torch

        idx = self.attribute_indices(attrs, x.shape[0])
        self.arrays, self.history = _unisid_torch.train(x, idx, tuple(map(len, self.vocabularies)), self.config)
        return self

    def latent(self, embeddings: np.ndarray, attrs: pd.DataFrame | None = None) -> np.ndarray:
        """Encoder output ``(N, latent_dim) float64``, before quantization."""
        self._require_fitted()
        x = check_embeddings(embeddings, dim=self.dim)
        idx = self.attribute_indices(attrs, x.shape[0])
        parts = [self.arrays[f"attribute_table_{c}"].astype(np.float64)[idx[:, c]] for c in range(idx.shape[1])]
        z = mlp_forward(np.concatenate([x, *parts], axis=1), *self._layers("encoder"), residual=False)
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)  # as torch's F.normalize

    def encode(self, embeddings: np.ndarray, attrs: pd.DataFrame | None = None) -> np.ndarray:
        codes, _ = residual_quantize(self.latent(embeddings, attrs), self.codebooks)
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """The summary decoder's embedding ``(N, D) float64`` for ``(N, L)`` code paths."""
        self._require_fitted()
        codes = SemanticTokenizer.check_codes(self, codes)
        quantized = sum(cb[codes[:, level]] for level, cb in enumerate(self.codebooks))
        return mlp_forward(quantized, *self._layers("decoder"), residual=False)

    def _get_state(self) -> tuple[dict, dict, dict[str, np.ndarray]]:
        state = {"vocabularies": self.vocabularies, "history": self.history}
        return config_to_json(self.config), state, dict(self.arrays)

    @classmethod
    def _from_state(cls, directory: Path, config: dict, state: dict, arrays: dict[str, np.ndarray]) -> Self:
        tok = cls(config_from_json(UniSIDConfig, config))
        tok.arrays, tok.vocabularies, tok.history = arrays, state["vocabularies"], state["history"]
        return tok
