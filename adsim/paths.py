"""Where adsim reads shared real data and caches built scenarios."""

from __future__ import annotations

import os
from pathlib import Path

from adsim.errors import AdSimDataError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA_ENV = "ADSIM_SHARED_DATA"
"""The one setting for where the real data sets are (a folder holding ``open_bandit_dataset/``, ...)."""


def shared_data_dir() -> Path:
    """The read-only real data sets: ``$ADSIM_SHARED_DATA``, else ``../shared/data`` beside the project root.

    The folder may be absent (a fresh clone has none): ``shared_data_set`` then says which setting to change, and
    the tests that need it skip.
    """
    env = os.environ.get(SHARED_DATA_ENV)
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "data"


def shared_data_set(name: str) -> Path:
    """``shared_data_dir() / name``, or an ``AdSimDataError`` naming that folder and ``ADSIM_SHARED_DATA``."""
    path = shared_data_dir() / name
    if not path.is_dir():
        raise AdSimDataError(f"the real data set {name!r} is not there: set {SHARED_DATA_ENV} to the folder that "
                             f"holds {name}/ (default ../shared/data beside the project)", file=str(path))
    return path


def cache_dir() -> Path:
    """Where preset scenarios are built on first use: ``$ADSIM_CACHE_DIR`` or the user's cache dir."""
    env = os.environ.get("ADSIM_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "adsim"
