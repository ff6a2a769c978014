"""The flat-array trie agrees with brute force over the items it indexes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adsim import AdSimDataError
from adsim.simulator import kernels
from adsim.trie import SidTrie


def brute_legal(codes, allowed, prefix):
    d = len(prefix)
    match = allowed & (codes[:, :d] == prefix).all(axis=1)
    return set(codes[match, d].tolist())


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 60), sizes=st.lists(st.integers(2, 5), min_size=1, max_size=3))
def test_legal_masks_match_brute_force(seed, n, sizes):
    rng = np.random.default_rng(seed)
    codes = np.stack([rng.integers(0, s, size=n) for s in sizes], axis=1)
    trie = SidTrie(codes, sizes)
    allowed = rng.random((4, n)) < 0.6
    sums = trie.allowed_prefix_sums(allowed)
    for d in range(len(sizes)):
        prefixes = np.stack([codes[rng.integers(0, n)][:d] for _ in range(4)]) if d else np.zeros((4, 0), int)
        mask = trie.legal_mask(prefixes, sums)
        for b in range(4):
            assert set(np.flatnonzero(mask[b]).tolist()) == brute_legal(codes, allowed[b], prefixes[b])
        # the compiled kernels give the same masks and sums (prefixes leaving the trie included)
        broken = prefixes.copy()
        if d:
            broken[0, -1] = sizes[d - 1] + 1
        np.testing.assert_array_equal(kernels.legal_mask(trie, broken, kernels.allowed_prefix_sums(trie, allowed)),
                                      trie.legal_mask(broken, sums))
    np.testing.assert_array_equal(kernels.allowed_prefix_sums(trie, allowed), sums)
    # every full path resolves to exactly the items that carry it
    for path in np.unique(codes, axis=0):
        items = trie.items(path)
        assert set(items.tolist()) == set(np.flatnonzero((codes == path).all(axis=1)).tolist())
    assert trie.n_paths == len(np.unique(codes, axis=0))


def test_invalid_prefix_has_no_legal_codes():
    codes = np.array([[0, 1], [0, 2], [1, 0]])
    trie = SidTrie(codes, [2, 3])
    sums = trie.allowed_prefix_sums(np.ones((1, 3), bool))
    assert trie.legal_mask(np.array([[1]]), sums).tolist() == [[True, False, False]]
    assert not trie.legal_mask(np.array([[5]]), sums).any()
    assert trie.items(np.array([1, 2])).size == 0
    node, start, end = trie.leaf_ranges(np.array([[0, 2], [1, 1]]))
    assert node[1] == -1 and end[0] - start[0] == 1


def test_bad_codes_are_rejected():
    with pytest.raises(AdSimDataError, match="outside their codebook"):
        SidTrie(np.array([[0, 3]]), [2, 3])
    with pytest.raises(AdSimDataError, match="shape"):
        SidTrie(np.array([0, 1]), [2, 3])
