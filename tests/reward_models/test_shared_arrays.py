"""Shared feature indexes: memory maps of cache files that hold exactly the process's own arrays, never trusted."""

from __future__ import annotations

import mmap

import numpy as np
import pytest

from adsim import Scenario
from reward_models import shared_arrays
from reward_models.compiled import CompiledFeatures
from reward_models.features import FeatureBuilder


def _mapped(a: np.ndarray) -> bool:
    """Whether ``a``'s memory is a file mapping."""
    while isinstance(a, np.ndarray):
        if isinstance(a, np.memmap):
            return True
        a = a.base
    return isinstance(a, mmap.mmap)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADSIM_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "features"


def test_shared_arrays_are_maps_of_identical_files(cache):
    arrays = {"a": np.arange(10, dtype=np.int64), "b": np.array([[np.nan, -0.0], [1.5, 2.0]], np.float32),
              "empty": np.zeros(0)}
    shared = shared_arrays.share(arrays, "k")
    for name in ("a", "b"):
        assert _mapped(shared[name]) and type(shared[name]) is np.ndarray and shared[name].dtype == arrays[name].dtype
        assert shared[name].tobytes() == arrays[name].tobytes()
    assert shared["empty"] is not None and len(shared["empty"]) == 0
    stamp = (cache / "k" / "a.npy").stat().st_mtime_ns
    shared_arrays.share(arrays, "k")
    assert (cache / "k" / "a.npy").stat().st_mtime_ns == stamp  # reused, not rewritten


def test_a_stale_or_damaged_file_is_rewritten(cache):
    shared_arrays.share({"a": np.arange(10)}, "k")
    np.save(cache / "k" / "a.npy", np.arange(10) + 1)  # another array under the same key
    assert np.array_equal(shared_arrays.share({"a": np.arange(10)}, "k")["a"], np.arange(10))
    (cache / "k" / "a.npy").write_bytes(b"not an array")
    assert np.array_equal(shared_arrays.share({"a": np.arange(10)}, "k")["a"], np.arange(10))


def test_an_unwritable_cache_keeps_the_arrays_private(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("ADSIM_CACHE_DIR", str(tmp_path / "file"))  # a file where the cache folder should be
    values = np.arange(5)
    assert shared_arrays.share({"a": values}, "k")["a"] is not None
    assert not _mapped(shared_arrays.share({"a": values}, "k")["a"])


def test_a_bundles_builder_shares_its_indexes_and_builds_the_same_features(cache, tiny_sid_bundle, monkeypatch):
    scenario = Scenario(tiny_sid_bundle)
    shared = FeatureBuilder(scenario)
    assert all(_mapped(a) for a in (shared.request_matrix, shared.organic.code, shared.key_cum,
                                                  shared.clicks.payload["item"], shared.keys[0].user_stats.ts))
    monkeypatch.setattr(shared_arrays, "share", lambda arrays, key: dict(arrays))
    private = FeatureBuilder(scenario)
    assert not _mapped(private.organic.code)
    rng = np.random.default_rng(0)
    requests, ads = rng.integers(0, private.request_matrix.shape[1], 40), rng.integers(0, private.n_ads, (40, 3))
    want = private.build(requests, ads).values
    np.testing.assert_array_equal(shared.build(requests, ads).values, want)
    np.testing.assert_array_equal(CompiledFeatures(shared).build(requests, ads).values, want)
