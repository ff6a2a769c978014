"""Where adsim reads shared real data and caches built scenarios."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """The read-only real data sets: ``$ADSIM_SHARED_DATA`` or ``../shared/data`` beside the project root."""
    env = os.environ.get("ADSIM_SHARED_DATA")
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "data"


def cache_dir() -> Path:
    """Where preset scenarios are built on first use: ``$ADSIM_CACHE_DIR`` or the user's cache dir."""
    env = os.environ.get("ADSIM_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "adsim"
