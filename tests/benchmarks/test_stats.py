"""The one verdict rule on hand numbers: t quantiles, intervals, paired differences, holds / not significant /
reversed."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from benchmarks.stats import HOLDS, NOT_SIGNIFICANT, REVERSED, paired_differences, t_interval, t_quantile


def test_t_quantiles_match_the_printed_table():
    for df, printed in {1: 12.706, 2: 4.303, 4: 2.776, 9: 2.262, 30: 2.042}.items():
        assert t_quantile(df) == pytest.approx(printed, abs=5e-4)
    assert t_quantile(10**6) == pytest.approx(1.960, abs=5e-4)
    assert t_quantile(4, confidence=0.90) == pytest.approx(2.132, abs=5e-4)


def test_interval_by_hand():
    # mean 3, sd sqrt(0.5), se sqrt(0.5)/sqrt(5) = 0.31623, t_4 = 2.77645 -> half-width 0.87799
    iv = t_interval([2.0, 3.0, 4.0, 3.0, 3.0])
    assert (iv.mean, iv.n) == (3.0, 5)
    assert iv.half_width == pytest.approx(0.87799, abs=1e-5)
    assert iv.low == pytest.approx(2.12201, abs=1e-5) and iv.verdict == HOLDS
    assert str(iv) == "+3 ± 0.88"


def test_the_rule_holds_reversed_not_significant():
    # mean 2, se 1/sqrt(3), t_2 = 4.30265 -> half-width 2.48414: the interval covers 0
    wide = t_interval([1.0, 2.0, 3.0])
    assert wide.half_width == pytest.approx(2.48414, abs=1e-5) and wide.verdict == NOT_SIGNIFICANT
    assert t_interval([-2.0, -3.0, -4.0, -3.0, -3.0]).verdict == REVERSED
    assert t_interval([0.5, 0.5]).verdict == HOLDS  # no spread: the sign decides
    assert t_interval([0.0, 0.0]).verdict == NOT_SIGNIFICANT


def test_fewer_than_two_pairs_are_never_significant():
    one = t_interval([5.0])
    assert one.mean == 5.0 and math.isinf(one.half_width) and one.verdict == NOT_SIGNIFICANT
    none = t_interval([])
    assert none.n == 0 and none.verdict == NOT_SIGNIFICANT


def test_paired_differences_match_on_the_seed():
    a = pd.Series({0: 1.0, 1: 2.0, 2: 4.0})
    b = pd.Series({2: 1.0, 0: 0.5, 3: 9.0})
    np.testing.assert_array_equal(paired_differences(a, b), [0.5, 3.0])
