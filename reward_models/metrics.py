"""Metrics of probability predictions: ranking (AUC), fit (log loss), calibration, and error against a known truth.

Plain numpy, so the core does not need scikit-learn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties counted half; NaN if a class is absent."""
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="stable")
    sorted_p = np.asarray(p)[order]
    ranks = np.empty(len(p))
    # average rank within runs of equal predictions
    starts = np.flatnonzero(np.r_[True, sorted_p[1:] != sorted_p[:-1]])
    ends = np.r_[starts[1:], len(p)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc_standard_error(value: float, n_pos: int, n_neg: int) -> float:
    """Hanley-McNeil standard error of an AUC: how much a few dozen positives can be trusted."""
    if n_pos == 0 or n_neg == 0 or np.isnan(value):
        return float("nan")
    q1, q2 = value / (2 - value), 2 * value**2 / (1 + value)
    var = (value * (1 - value) + (n_pos - 1) * (q1 - value**2) + (n_neg - 1) * (q2 - value**2)) / (n_pos * n_neg)
    return float(np.sqrt(max(var, 0.0)))


def log_loss(y: np.ndarray, p: np.ndarray, eps: float = 1e-7) -> float:
    y, p = np.asarray(y, dtype=np.float64), np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def calibration_table(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Equal-count bins of the prediction (deciles by default): mean predicted vs observed rate per bin."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    bins = np.empty(len(p), dtype=np.int64)
    bins[order] = np.arange(len(p)) * n_bins // max(len(p), 1)
    frame = pd.DataFrame({"bin": bins, "p": p, "y": y}).groupby("bin")
    table = frame.agg(n=("y", "size"), predicted=("p", "mean"), observed=("y", "mean")).reset_index()
    table["ratio"] = table["predicted"] / table["observed"].where(table["observed"] > 0)
    return table


def ece(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error: count-weighted mean |predicted - observed| over equal-count bins."""
    table = calibration_table(y, p, n_bins)
    return float((table["n"] * (table["predicted"] - table["observed"]).abs()).sum() / max(table["n"].sum(), 1))


def classification_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Rows, positives, AUC, log loss, ECE and predicted/observed ratio of one label."""
    y = np.asarray(y, dtype=np.float64)
    observed = float(y.mean()) if len(y) else float("nan")
    return {
        "n": int(len(y)),
        "positives": int(y.sum()),
        "auc": auc(y, p),
        "log_loss": log_loss(y, p),
        "ece": ece(y, p),
        "predicted_over_observed": float(np.mean(p)) / observed if observed > 0 else float("nan"),
    }


def truth_errors(predicted: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """How far predictions are from the true probabilities: bias, absolute error, logit RMSE, correlation."""
    predicted, true = np.asarray(predicted, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if len(true) == 0:
        return {"n": 0}

    def logit(x: np.ndarray) -> np.ndarray:
        x = np.clip(x, 1e-6, 1 - 1e-6)
        return np.log(x / (1 - x))

    spread = len(true) > 1 and np.std(predicted) > 0 and np.std(true) > 0
    return {
        "n": int(len(true)),
        "mean_true": float(true.mean()),
        "mean_predicted": float(predicted.mean()),
        "predicted_over_true": float(predicted.mean() / true.mean()),
        "mae": float(np.abs(predicted - true).mean()),
        "relative_mae": float(np.abs(predicted - true).mean() / true.mean()),
        "logit_rmse": float(np.sqrt(np.mean((logit(predicted) - logit(true)) ** 2))),
        "correlation": float(np.corrcoef(predicted, true)[0, 1]) if spread else float("nan"),
    }
