"""GPR Table 3's ranking metrics for K candidates per request, in the policy's order."""

from __future__ import annotations

import numpy as np


def ndcg(values: np.ndarray, valid: np.ndarray) -> float:
    """Mean nDCG@K of the policy's candidate order (column order) against final_value as graded relevance.

    Relevance is each request's final_value min-max scaled to [0, 1] over its candidates (invalid paths: 0), with
    gain 2^rel - 1 and discount log2(rank + 1). Requests whose candidates are all equal are skipped.
    """
    rel = _per_request_minmax(values, valid)
    gain = 2.0**rel - 1.0
    discount = 1.0 / np.log2(np.arange(2, values.shape[1] + 2))
    dcg = (gain * discount).sum(axis=1)
    idcg = (np.sort(gain, axis=1)[:, ::-1] * discount).sum(axis=1)
    ok = idcg > 0
    return float(np.mean(dcg[ok] / idcg[ok])) if ok.any() else float("nan")


def opr(values: np.ndarray, valid: np.ndarray) -> float:
    """Ordered Pair Ratio: of candidate pairs with different final_value, the share the policy orders correctly."""
    v = np.where(valid, values, -np.inf)
    i, j = np.triu_indices(values.shape[1], k=1)  # column i is ranked above column j
    a, b = v[:, i], v[:, j]
    differ = a != b
    correct = (a > b) & differ
    return float(correct.sum() / differ.sum()) if differ.any() else float("nan")



def _per_request_minmax(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    lo = np.where(valid, values, np.inf).min(axis=1, keepdims=True)
    hi = np.where(valid, values, -np.inf).max(axis=1, keepdims=True)
    span = hi - lo
    ok = np.isfinite(span) & (span > 0)
    return np.where(valid & ok, (values - lo) / np.where(ok, span, 1.0), 0.0)
