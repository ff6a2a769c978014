"""Encodings shared by importers: dense category codes, activity groups, and hashed feature embeddings."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
import pandas as pd

from adsim.importers.canonical import EMBEDDING_DIM, NUMERIC_COLUMNS


def dense_codes(values, max_codes: int | None = None) -> np.ndarray:
    """int64 codes by descending frequency (0 the most common, ties by value); codes past ``max_codes - 1`` fold
    into the last one."""
    values = pd.Series(np.asarray(values))
    counts = values.value_counts().sort_index().sort_values(ascending=False, kind="stable")
    codes = pd.Index(counts.index).get_indexer(values).astype(np.int64)
    return codes if max_codes is None else np.minimum(codes, max_codes - 1)


def activity_groups(request_counts: np.ndarray) -> np.ndarray:
    """1..5 by quintile of the request count (ties share the group of their average rank)."""
    counts = pd.Series(np.asarray(request_counts, dtype=np.float64))
    if len(counts) == 0:
        return np.zeros(0, dtype=np.int8)
    pct = counts.rank(method="average", pct=True).to_numpy()
    return np.clip(np.ceil(pct * 5), 1, 5).astype(np.int8)


def _stable_hash(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")


def feature_embeddings(n: int, numeric_features: Mapping[str, np.ndarray] | None = None,
                       categorical: Mapping[str, np.ndarray] | None = None, dim: int = EMBEDDING_DIM,
                       n_numeric: int = NUMERIC_COLUMNS) -> np.ndarray:
    """(n, dim) float32 item embeddings from the source's features, comparable across ads and organic items.

    Numeric features are standardised (z-scores, 0 where constant) into the first ``n_numeric`` columns, in the
    given order. Every categorical value is the feature trick's one-hot, hashed: the token ``"name=value"`` adds
    +-1 to one of the remaining columns (blake2b, so the same value of a feature lands in the same column for ads
    and for organic items, in every run). Items sharing a category or brand therefore point the same way.
    """
    out = np.zeros((n, dim), dtype=np.float32)
    numeric_features = dict(numeric_features or {})
    if len(numeric_features) > n_numeric:
        raise ValueError(f"at most {n_numeric} numeric features, got {list(numeric_features)}")
    for j, values in enumerate(numeric_features.values()):
        x = np.asarray(values, dtype=np.float64)
        std = x.std()
        out[:, j] = (x - x.mean()) / std if std > 0 else 0.0
    width = dim - n_numeric
    for name, values in (categorical or {}).items():
        uniques, inverse = np.unique(np.asarray(values).astype(str), return_inverse=True)
        hashed = np.array([_stable_hash(f"{name}={u}") for u in uniques], dtype=np.uint64)
        column = n_numeric + (hashed % np.uint64(width)).astype(np.int64)
        sign = np.where((hashed >> np.uint64(63)) & np.uint64(1), -1.0, 1.0).astype(np.float32)
        np.add.at(out, (np.arange(n), column[inverse.ravel()]), sign[inverse.ravel()])
    return out
