"""The statistics behind every benchmark verdict: paired differences, Student-t intervals and one rule.

A claim "A beats B" is judged on the paired differences A - B (same seed, or same request): their mean with a
two-sided 95 % Student-t interval. The claim ``holds`` when the whole interval lies above zero, is ``reversed`` when
it lies below, and is ``not significant`` otherwise, which includes fewer than two pairs (no interval exists). One
rule for every table, so "holds" means the same thing in every report. Quantiles come from scipy (LightGBM depends
on it, so it is always installed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

CONFIDENCE = 0.95
HOLDS, NOT_SIGNIFICANT, REVERSED = "holds", "not significant", "reversed"


def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided ``confidence`` quantile of Student's t with ``df`` degrees of freedom (12.706 for 1 at 95 %)."""
    return float(stats.t.ppf(0.5 + confidence / 2, df))


@dataclass(frozen=True)
class Interval:
    """A mean and the half-width of its t-interval (infinite with fewer than two values)."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    @property
    def verdict(self) -> str:
        """The rule, applied to an interval of differences: ``holds``, ``reversed`` or ``not significant``."""
        if self.low > 0:
            return HOLDS
        if self.high < 0:
            return REVERSED
        return NOT_SIGNIFICANT

    def __str__(self) -> str:
        return f"{self.mean:+.4g} ± {self.half_width:.2g}"


def t_interval(values: ArrayLike, confidence: float = CONFIDENCE) -> Interval:
    """Mean of ``values`` and its two-sided Student-t interval, t_{n-1} * sd / sqrt(n)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    if n < 2:
        return Interval(mean, math.inf, n)
    return Interval(mean, t_quantile(n - 1, confidence) * float(values.std(ddof=1)) / math.sqrt(n), n)


def paired_differences(a: pd.Series, b: pd.Series) -> np.ndarray:
    """``a - b`` matched on the index (the seed, or the request); pairs missing either side are dropped."""
    return (a - b).dropna().to_numpy(dtype=np.float64)
