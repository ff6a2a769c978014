"""Path -> items CSR index."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adsim.errors import AdSimDataError
from adsim.sid import PathIndex


def test_index_groups_collisions_and_looks_up_prefixes(tmp_path):
    codes = np.array([[1, 0, 2], [0, 3, 1], [1, 0, 2], [1, 1, 0], [0, 3, 1], [0, 3, 1]])
    index = PathIndex.from_codes(codes)
    np.testing.assert_array_equal(index.paths, [[0, 3, 1], [1, 0, 2], [1, 1, 0]])
    np.testing.assert_array_equal(index.offsets, [0, 3, 5, 6])
    np.testing.assert_array_equal(index.items, [1, 4, 5, 0, 2, 3])
    np.testing.assert_array_equal(index.lookup([1, 0, 2]), [0, 2])
    np.testing.assert_array_equal(index.lookup([1]), [0, 2, 3])
    assert index.lookup([2, 0, 0]).size == 0
    np.testing.assert_array_equal(index.bucket_sizes, [3, 2, 1])

    loaded = PathIndex.load(index.save(tmp_path / "index.npz"))
    for name in ("paths", "offsets", "items"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(index, name))


@given(seed=st.integers(0, 2**16), n=st.integers(1, 200), levels=st.integers(1, 4), k=st.integers(2, 5))
@settings(max_examples=40, deadline=None)
def test_every_item_is_found_under_its_own_path(seed, n, levels, k):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, k, size=(n, levels))
    ids = rng.permutation(10 * n)[:n]
    index = PathIndex.from_codes(codes, ids)
    assert np.sort(index.items).tolist() == np.sort(ids).tolist()
    for row in rng.integers(0, n, size=5):
        assert ids[row] in index.lookup(codes[row])
        assert set(index.lookup(codes[row])) == set(ids[(codes == codes[row]).all(axis=1)])


def test_load_rejects_inconsistent_or_foreign_files(tmp_path):
    np.savez(tmp_path / "bad.npz", paths=np.zeros((2, 1)), offsets=np.array([0, 5, 1]), items=np.arange(1),
             format_version=np.int64(1))
    with pytest.raises(AdSimDataError, match="offsets"):
        PathIndex.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "old.npz", paths=np.zeros((1, 1)), offsets=np.array([0, 1]), items=np.arange(1),
             format_version=np.int64(99))
    with pytest.raises(AdSimDataError, match="version"):
        PathIndex.load(tmp_path / "old.npz")
