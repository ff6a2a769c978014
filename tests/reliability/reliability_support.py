"""Shared helpers of the reliability suite: bad input and faults, each a clear ``AdSimError`` that names what is wrong,
with nothing written or damaged on disk.

``refused(tree, error, *needles)`` is the one assertion every case goes through: the block raises ``error`` (an
``AdSimError`` subclass, never a raw library error), the message contains every needle (the file, column, row or
option at fault), and the files under ``tree`` hash the same afterwards as before.

The fixtures carry explicit names and are imported by the test modules (``from reliability_support import ...  #
noqa: F401``): a second ``conftest.py`` would shadow ``tests/conftest.py`` for the tests that import from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
from pathlib import Path

import pytest

from adsim.errors import AdSimError


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (symlinks not followed), by relative path."""
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


@contextlib.contextmanager
def refused(tree: Path | None, error: type[AdSimError], *needles: str):
    """The block must raise ``error`` naming every needle, and leave every file under ``tree`` as it was."""
    assert issubclass(error, AdSimError)
    before = tree_digest(tree) if tree is not None else None
    with pytest.raises(error) as info:
        yield info
    assert type(info.value).__module__ == "adsim.errors", type(info.value)
    message = str(info.value)
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    if tree is not None:
        assert tree_digest(tree) == before, "files changed on disk"


@pytest.fixture(scope="session", name="full_bundle")
def _full_bundle() -> Path:
    """The default ``tiny`` build (logs, SIDs, reward models), built once per test session (never edited)."""
    from reward_models.pipeline import ensure_scenario

    return ensure_scenario("tiny", seed=0, progress=False).path


@pytest.fixture(name="bundle_copy")
def _bundle_copy(tmp_path, full_bundle) -> Path:
    """A private copy of the full tiny bundle to corrupt."""
    return Path(shutil.copytree(full_bundle, tmp_path / "bundle"))


@pytest.fixture(name="logs_copy")
def _logs_copy(tmp_path, tiny_logs) -> Path:
    """A private copy of the logs-only tiny bundle to corrupt."""
    return Path(shutil.copytree(tiny_logs, tmp_path / "logs"))


@pytest.fixture(name="private_cache")
def _private_cache(tmp_path, monkeypatch) -> Path:
    """A cache directory of this test alone (cache faults must not leak into other tests)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("ADSIM_CACHE_DIR", str(cache))
    return cache


def read_manifest_json(bundle: Path) -> dict:
    import json

    return json.loads((bundle / "manifest.json").read_text())


def write_manifest_json(bundle: Path, manifest: dict) -> None:
    """Write ``manifest`` as it is (an edit that keeps the old signature, or none)."""
    import json

    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def resign(bundle: Path, edit=None) -> None:
    """Recompute the file map and the signature after editing files (and the manifest, with ``edit``): a bundle
    whose checksums are consistent, so the checks behind them are what a case exercises."""
    from adsim.data.bundle import write_manifest

    manifest = read_manifest_json(bundle)
    if edit is not None:
        edit(manifest)
    write_manifest(bundle, {k: v for k, v in manifest.items() if k not in ("files", "manifest_sha256")})


def sign_as_is(bundle: Path, edit) -> None:
    """Apply ``edit`` to the manifest and sign the result as it is (the file map included, unchecked): a forged but
    self-consistent manifest, so the field checks behind the signature are what a case exercises."""
    from adsim.data.manifest import SIGNATURE, canonical_digest

    manifest = read_manifest_json(bundle)
    edit(manifest)
    manifest[SIGNATURE] = canonical_digest(manifest)
    write_manifest_json(bundle, manifest)
