"""Metrics against hand-computed values."""

import numpy as np
import pytest

from adsim.sid.metrics import (
    bid_dispersion,
    code_usage_rate,
    collision_rate,
    path_average_similarity,
    vocabulary_used,
    weighted_entropy,
)

CODES = np.array([[0, 1], [0, 1], [0, 1], [1, 0], [1, 2], [1, 2]])  # paths: (0,1) x3, (1,0) x1, (1,2) x2


def test_collision_rate():
    assert collision_rate(CODES) == pytest.approx((2 + 0 + 1) / 6)
    assert collision_rate(np.eye(3, dtype=int)) == 0.0


def test_code_usage_rate():
    np.testing.assert_allclose(code_usage_rate(CODES, (4, 3)), [2 / 4, 3 / 3])


def test_path_average_similarity_by_hand():
    e = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [5.0, 5.0], [1.0, 0.0], [-3.0, 0.0]])
    s = 1 / np.sqrt(2)
    path01 = (0.0 + s + s) / 3  # pairs (0,1), (0,2), (1,2)
    path12 = -1.0
    assert path_average_similarity(CODES, e) == pytest.approx((path01 + path12) / 2)
    assert np.isnan(path_average_similarity(np.eye(2, dtype=int), np.ones((2, 2))))


def test_bid_dispersion_by_hand():
    bids = np.array([1.0, 2.0, 3.0, 100.0, 10.0, 14.0])
    d = bid_dispersion(CODES, bids)  # the single-ad path (1,0) is left out
    stds = [np.std([1.0, 2.0, 3.0]), 2.0]
    assert d.n_paths == 2
    assert d.std_mean == pytest.approx(np.mean(stds))
    assert d.range_mean == pytest.approx((2.0 + 4.0) / 2)
    assert d.range_p99 == pytest.approx(np.percentile([2.0, 4.0], 99))
    assert bid_dispersion(CODES, bids, min_items=1).n_paths == 3


def test_weighted_entropy_and_vocabulary():
    groups = np.array(["a"] * 4 + ["b"] * 4)
    tokens = np.array([0, 1, 2, 3, 7, 7, 8, 8])
    # key a: 4 equal bins -> 2 bits; key b: 2 equal bins -> 1 bit; equal weights
    assert weighted_entropy(groups, tokens) == pytest.approx(1.5)
    assert vocabulary_used(tokens) == 6
