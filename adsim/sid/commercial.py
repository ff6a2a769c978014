"""Commercial SID (UniVA, section 3.1): upper levels semantic, last level a value-aware token from ad attributes.

The last token is built by classify-then-bin:

1. Attribute compression. Optimisation goal and ROI target keep their most frequent values until ``coverage`` of
   the ads is covered (at most ``max_goal_classes`` / ``max_roi_classes``), the tail becomes one ``other`` class
   (UniVA clusters the goal tail by bid distribution; one class is the simple version). Industry keeps the
   ``n_industries`` most frequent first-level industries, the rest fall back to ``other``. ROI targets are expected
   to be discrete platform settings (0 = none); continuous ones would keep only their most frequent values.
2. Composition keys ``k = (goal', roi', industry')``, and per key its bids split into ``n_k`` equi-frequency bins,
   ``n_min <= n_k <= n_max``, chosen to maximise ``H = sum_k w_k H_k`` (bits) under ``sum_k n_k + n_global <= V``.
   The allocation is greedy on the marginal entropy gain per token spent, which is optimal when ``H_k(n)`` is
   concave in n (it is ``log2 n`` for untied bids). Keys that do not fit the budget even at ``n_min`` (rarest first)
   are treated like unseen keys.
3. Token ``psi(k, bid)`` = the key's token offset + its bin. Unseen keys fall back to ``n_global`` global bid bins,
   which have tokens of their own at the end of the vocabulary.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd

from adsim.errors import AdSimDataError
from adsim.sid.base import (
    SemanticTokenizer,
    SidTokenizer,
    check_embeddings,
    config_from_json,
    config_to_json,
    load_tokenizer,
    register,
)
from adsim.sid.metrics import weighted_entropy

REQUIRED_COLUMNS = ("goal", "roi_target", "industry_l1", "bid")
"""Attributes the commercial level reads (``industry``, the fine-grained one, is not used: UniVA keys on first-level
industries)."""
KEY_ATTRIBUTES = ("goal", "roi", "industry")
OTHER = "other"


@dataclass
class CommercialConfig:
    n_min: int = 1
    """Fewest bid bins of a composition key."""
    n_max: int = 32
    """Most bid bins of a composition key."""
    vocab_budget: int = 512
    """V: the last level's vocabulary (all keys' bins plus the global fallback bins) never exceeds it."""
    n_global_bins: int = 16
    """Equi-frequency bins over all bids, for keys unseen at fit time."""
    coverage: float = 0.99
    """Goal and ROI values are kept until they cover this share of the ads."""
    max_goal_classes: int = 25
    max_roi_classes: int = 8
    n_industries: int = 9
    """Most frequent first-level industries kept; the rest share one fallback class."""
    key_attributes: tuple[str, ...] = KEY_ATTRIBUTES
    """Attributes forming the composition key; ``()`` bins all bids together ("direct binning" in UniVA Fig. 4)."""

    def __post_init__(self) -> None:
        self.key_attributes = tuple(self.key_attributes)
        if not 1 <= self.n_min <= self.n_max:
            raise ValueError(f"need 1 <= n_min <= n_max, got n_min={self.n_min}, n_max={self.n_max}")
        if self.n_global_bins < 1:
            raise ValueError(f"n_global_bins must be >= 1, got {self.n_global_bins}")
        if self.vocab_budget < self.n_global_bins + self.n_min:
            raise ValueError(f"vocab_budget={self.vocab_budget} leaves no room for a single key: it must be >= "
                             f"n_global_bins + n_min = {self.n_global_bins + self.n_min}")
        if not 0 < self.coverage <= 1:
            raise ValueError(f"coverage must be in (0, 1], got {self.coverage}")
        if unknown := set(self.key_attributes) - set(KEY_ATTRIBUTES):
            raise ValueError(f"key_attributes may only name {KEY_ATTRIBUTES}, got {sorted(unknown)}")


def check_attrs(attrs: pd.DataFrame | None, n_items: int | None = None) -> pd.DataFrame:
    """Validate the commercial attributes: the required columns present, finite, bid > 0, roi_target >= 0."""
    if attrs is None:
        raise ValueError(f"attrs is required for Commercial SID: a DataFrame with columns {list(REQUIRED_COLUMNS)}")
    if not isinstance(attrs, pd.DataFrame):
        raise ValueError(f"attrs must be a pandas DataFrame, got {type(attrs).__name__}")
    for column in REQUIRED_COLUMNS:
        if column not in attrs.columns:
            raise AdSimDataError("attrs lacks a commercial attribute Commercial SID needs", column=column)
    if n_items is not None and len(attrs) != n_items:
        raise AdSimDataError(f"attrs has {len(attrs)} rows but there are {n_items} embeddings")
    roi, bid = attrs["roi_target"].to_numpy(float), attrs["bid"].to_numpy(float)
    for column, bad in (
        ("goal", attrs["goal"].isna().to_numpy()),
        ("industry_l1", attrs["industry_l1"].isna().to_numpy()),
        ("roi_target", ~(np.isfinite(roi) & (roi >= 0))),
        ("bid", ~(np.isfinite(bid) & (bid > 0))),
    ):
        if bad.any():
            raise AdSimDataError("missing or invalid commercial attribute (bid must be > 0, roi_target >= 0)",
                                 column=column, rows=np.flatnonzero(bad))
    return attrs


def _keep_covering(values: pd.Series, coverage: float, max_classes: int) -> list:
    """Most frequent values (ties by value) until their share reaches ``coverage``, at most ``max_classes``."""
    counts = values.value_counts().sort_index().sort_values(ascending=False, kind="stable")
    share = counts.cumsum().to_numpy() / counts.sum()
    n_keep = min(int(np.searchsorted(share, coverage - 1e-12)) + 1, max_classes, len(counts))
    return counts.index[:n_keep].tolist()


def equi_frequency_edges(sorted_bids: np.ndarray, n_bins: int) -> np.ndarray:
    """Inner edges of at most ``n_bins`` equi-frequency bins over sorted bids; ties can merge bins, never empty one.

    A bid b falls in bin ``searchsorted(edges, b, side="right")``.
    """
    m = sorted_bids.size
    edges = np.unique(sorted_bids[(np.arange(1, n_bins) * m) // n_bins])
    return edges[edges > sorted_bids[0]]


def _entropy_bits(sorted_bids: np.ndarray, edges: np.ndarray) -> float:
    counts = np.diff(np.concatenate([[0], np.searchsorted(sorted_bids, edges, side="left"), [sorted_bids.size]]))
    p = counts[counts > 0] / sorted_bids.size
    return float(-(p * np.log2(p)).sum())


class CommercialCoder:
    """The commercial last level alone: ``fit(attrs)``, ``encode(attrs) -> (N,) int64`` tokens, ``vocab_size``."""

    def __init__(self, config: CommercialConfig | None = None):
        self.config = config or CommercialConfig()
        self.classes: dict[str, list] = {}
        """Kept values per attribute (``goal``: str, ``roi``: float, ``industry``: int); others map to ``other``."""
        self.keys: list[str] = []
        """Composition keys with a bin scheme, in token order."""
        self.edges: list[np.ndarray] = []
        """Inner bid-bin edges of each key."""
        self.global_edges = np.empty(0)
        self.entropy_bits = float("nan")
        """H = sum_k w_k H_k (bits) of the fitted ads' tokens within their keys."""

    @property
    def is_fitted(self) -> bool:
        return bool(self.classes)

    @property
    def offsets(self) -> np.ndarray:
        """First token of each key; ``offsets[-1]`` is the first global fallback token."""
        return np.concatenate([[0], np.cumsum([e.size + 1 for e in self.edges])]).astype(np.int64)

    @property
    def vocab_size(self) -> int:
        return int(self.offsets[-1]) + self.global_edges.size + 1

    def key_labels(self, attrs: pd.DataFrame) -> np.ndarray:
        """Compressed composition key of each ad as a string like ``"oCPA|1.5|3"`` (``""`` for direct binning)."""
        parts = {
            "goal": attrs["goal"].astype(str),
            "roi": attrs["roi_target"].astype(float),
            "industry": attrs["industry_l1"].astype(int),
        }
        labels = pd.Series([""] * len(attrs), index=attrs.index, dtype=object)
        for i, name in enumerate(self.config.key_attributes):
            kept = parts[name].isin(self.classes[name])
            text = parts[name].map(_label).where(kept, OTHER)
            labels = text if i == 0 else labels + "|" + text
        return labels.to_numpy(dtype=object)

    def fit(self, attrs: pd.DataFrame) -> Self:
        cfg = self.config
        attrs = check_attrs(attrs)
        self.classes = {
            "goal": _keep_covering(attrs["goal"].astype(str), cfg.coverage, cfg.max_goal_classes),
            "roi": _keep_covering(attrs["roi_target"].astype(float), cfg.coverage, cfg.max_roi_classes),
            "industry": attrs["industry_l1"].astype(int).value_counts().sort_index()
            .sort_values(ascending=False, kind="stable").index[:cfg.n_industries].tolist(),
        }
        bids = attrs["bid"].to_numpy(float)
        self.global_edges = equi_frequency_edges(np.sort(bids), cfg.n_global_bins)
        labels = self.key_labels(attrs)
        keys, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        order = np.argsort(-counts, kind="stable")  # most frequent keys first: they get the budget first
        by_key = np.argsort(inverse, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)])
        sorted_bids = [np.sort(bids[by_key[starts[k]:starts[k + 1]]]) for k in order]
        n_bins = self._allocate(sorted_bids, counts[order] / bids.size, cfg.vocab_budget - self.global_edges.size - 1)
        kept = [i for i, n in enumerate(n_bins) if n > 0]
        self.keys = [str(keys[order[i]]) for i in kept]
        self.edges = [equi_frequency_edges(sorted_bids[i], n_bins[i]) for i in kept]
        self.entropy_bits = weighted_entropy(labels, self.encode(attrs))
        return self

    def _allocate(self, sorted_bids: list[np.ndarray], weights: np.ndarray, budget: int) -> list[int]:
        """Requested bins per key (0 = no room even at n_min); greedy on entropy gain per token spent."""
        cfg = self.config
        n_bins, cost, entropy = [0] * len(sorted_bids), [0] * len(sorted_bids), [0.0] * len(sorted_bids)
        used = 0
        for k, b in enumerate(sorted_bids):
            edges = equi_frequency_edges(b, cfg.n_min)
            if used + edges.size + 1 > budget:
                break
            n_bins[k], cost[k], entropy[k] = cfg.n_min, edges.size + 1, _entropy_bits(b, edges)
            used += edges.size + 1

        def candidate(k: int) -> tuple[float, int, int, int, float] | None:
            """The next request for key k that adds a bin: (-gain per token, key, request, bins, entropy)."""
            for n in range(n_bins[k] + 1, cfg.n_max + 1):
                edges = equi_frequency_edges(sorted_bids[k], n)
                if edges.size + 1 > cost[k]:
                    h = _entropy_bits(sorted_bids[k], edges)
                    return -weights[k] * (h - entropy[k]) / (edges.size + 1 - cost[k]), k, n, edges.size + 1, h
            return None

        heap = [c for k in range(len(sorted_bids)) if n_bins[k] and (c := candidate(k))]
        heapq.heapify(heap)
        while heap and used < budget:
            neg_gain, k, n, size, h = heapq.heappop(heap)
            if neg_gain >= 0:
                break
            if used - cost[k] + size > budget:
                continue
            used += size - cost[k]
            n_bins[k], cost[k], entropy[k] = n, size, h
            if c := candidate(k):
                heapq.heappush(heap, c)
        return n_bins

    def key_index(self, attrs: pd.DataFrame) -> np.ndarray:
        """Index into ``keys`` of each ad's composition key, -1 where the key has no bin scheme (unseen)."""
        return pd.Index(self.keys).get_indexer(self.key_labels(attrs))

    def encode(self, attrs: pd.DataFrame) -> np.ndarray:
        if not self.is_fitted:
            raise RuntimeError("CommercialCoder is not fitted: call fit() first")
        attrs = check_attrs(attrs)
        bids = attrs["bid"].to_numpy(float)
        key = self.key_index(attrs)
        offsets = self.offsets
        tokens = offsets[-1] + np.searchsorted(self.global_edges, bids, side="right")
        order = np.argsort(key, kind="stable")
        bounds = np.searchsorted(key[order], np.arange(len(self.keys) + 1))
        for k, edges in enumerate(self.edges):
            rows = order[bounds[k]:bounds[k + 1]]
            tokens[rows] = offsets[k] + np.searchsorted(edges, bids[rows], side="right")
        return tokens.astype(np.int64)

    def get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        state = {"classes": self.classes, "keys": self.keys, "entropy_bits": self.entropy_bits}
        arrays = {"global_edges": self.global_edges,
                  "edges": np.concatenate([np.empty(0), *self.edges]),
                  "edge_counts": np.array([e.size for e in self.edges], dtype=np.int64)}
        return state, arrays

    def set_state(self, state: dict, arrays: dict[str, np.ndarray]) -> None:
        self.classes, self.keys = state["classes"], state["keys"]
        self.entropy_bits = state["entropy_bits"]
        self.global_edges = arrays["global_edges"]
        self.edges = np.split(arrays["edges"], np.cumsum(arrays["edge_counts"])[:-1])


def _label(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@register
class CommercialSid(SidTokenizer):
    """UniVA's hybrid SID: ``semantic.encode(embeddings)`` levels followed by one commercial token.

    A semantic tokenizer that is already fitted is kept as is, so it can be fitted on more items (ads and organic
    content) than the ads the commercial level is fitted on.

    Example:
        >>> sid = CommercialSid(RQKMeansPlus(), CommercialConfig(vocab_budget=256)).fit(ad_embeddings, ads)
        >>> sid.encode(ad_embeddings, ads)  # (n_ads, L_semantic + 1)
    """

    kind = "commercial_sid"

    def __init__(self, semantic: SemanticTokenizer, config: CommercialConfig | None = None):
        self.semantic = semantic
        self.coder = CommercialCoder(config)

    @property
    def config(self) -> CommercialConfig:
        return self.coder.config

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        self._require_fitted()
        return (*self.semantic.codebook_sizes, self.coder.vocab_size)

    @property
    def is_fitted(self) -> bool:
        return self.semantic.is_fitted and self.coder.is_fitted

    def fit(self, embeddings: np.ndarray, attrs: pd.DataFrame | None = None) -> Self:
        x = check_embeddings(embeddings)
        attrs = check_attrs(attrs, x.shape[0])
        if not self.semantic.is_fitted:
            self.semantic.fit(x)
        self.coder.fit(attrs)
        return self

    def encode(self, embeddings: np.ndarray, attrs: pd.DataFrame | None = None) -> np.ndarray:
        self._require_fitted()
        x = check_embeddings(embeddings, dim=self.semantic.dim)
        tokens = self.coder.encode(check_attrs(attrs, x.shape[0]))
        return np.column_stack([self.semantic.encode(x), tokens])

    def save(self, directory: str | Path) -> Path:
        """Commercial state in ``directory``, the semantic tokenizer in ``directory/semantic``."""
        directory = super().save(directory)
        self.semantic.save(directory / "semantic")
        return directory

    def _get_state(self) -> tuple[dict, dict, dict[str, np.ndarray]]:
        state, arrays = self.coder.get_state()
        return config_to_json(self.config), state, arrays

    @classmethod
    def _from_state(cls, directory: Path, config: dict, state: dict, arrays: dict[str, np.ndarray]) -> Self:
        semantic = load_tokenizer(directory / "semantic")
        if not isinstance(semantic, SemanticTokenizer):
            raise AdSimDataError("the semantic part of a Commercial SID must be a semantic tokenizer",
                                 file=str(directory / "semantic"))
        sid = cls(semantic, config_from_json(CommercialConfig, config))
        sid.coder.set_state(state, arrays)
        return sid
