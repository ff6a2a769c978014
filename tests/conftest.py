"""Shared fixtures. Every test session gets its own scenario cache, so nothing touches the user's cache."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_TMP = Path(tempfile.mkdtemp(prefix="adsim-tests-"))
os.environ.setdefault("ADSIM_CACHE_DIR", str(_SESSION_TMP / "cache"))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(_SESSION_TMP / "torchinductor"))


@pytest.fixture(scope="session")
def tiny_logs(tmp_path_factory) -> Path:
    """A tiny synthetic bundle with logs only (seed 7), built once per session."""
    from adsim import build_scenario

    return build_scenario(tmp_path_factory.mktemp("tiny") / "bundle", "tiny", seed=7, progress=False)


@pytest.fixture(scope="session")
def small_logs(tmp_path_factory) -> Path:
    """The default ``small`` world's logs (seed 0), built once per session (about 15 s)."""
    from adsim import build_scenario

    return build_scenario(tmp_path_factory.mktemp("small") / "bundle", "small", seed=0, progress=False)
