"""How a bundle reaches a worker without a shared path: a node's checksummed copy in its own cache, from a
``pyarrow.fs`` URI here (the object-store copy runs on the simulated cluster in ``tests/cluster``)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from adsim import build_scenario
from adsim.data.bundle import MANIFEST, preset_cache_path
from adsim.errors import AdSimError
from envs.distributed import BUNDLES, _resolve, local_bundle


def _files(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return build_scenario(tmp_path_factory.mktemp("uri") / "b", "tiny", seed=4, progress=False)


def test_a_uri_bundle_is_copied_once_into_the_nodes_cache_byte_for_byte(bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("ADSIM_CACHE_DIR", str(tmp_path / "node-cache"))
    copy = local_bundle(f"file://{bundle}")
    digest = hashlib.sha256((bundle / MANIFEST).read_bytes()).hexdigest()
    assert copy == tmp_path / "node-cache" / BUNDLES / digest[:32]
    assert _files(copy) == _files(bundle)
    stamp = (copy / MANIFEST).stat().st_mtime_ns
    assert local_bundle(f"file://{bundle}") == copy and (copy / MANIFEST).stat().st_mtime_ns == stamp, "reused"


def test_a_file_that_does_not_match_its_manifest_is_refused_and_nothing_is_left(bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("ADSIM_CACHE_DIR", str(tmp_path / "node-cache"))
    bad = shutil.copytree(bundle, tmp_path / "bad")
    (bad / "arrays" / "ad_embeddings.npy").write_bytes(b"not the embeddings")
    with pytest.raises(AdSimError, match="ad_embeddings.npy arrived with another sha256"):
        local_bundle(f"file://{bad}")
    assert not any((tmp_path / "node-cache" / BUNDLES).iterdir())
    with pytest.raises(AdSimError, match="has no manifest.json"):
        _resolve(f"file://{tmp_path}/nowhere", 0, shared_path=False)


def test_a_preset_name_is_resolved_on_the_driver_to_its_cached_bundle():
    assert _resolve("tiny", 0, shared_path=True) == str(preset_cache_path("tiny", 0).resolve())
