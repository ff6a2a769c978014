"""Bundle checks beyond one table's schema: the arrays the simulator reads, the sanity of a world's ads, and the
cleanup of temporary build directories that a killed build left behind.

Arrays are opened safely (``load_array``): the ``.npy`` header is parsed and the file size checked against it before
numpy maps the file, so a text file, a pickle or a truncated array is an ``AdSimDataError`` naming the file instead of
a numpy traceback (or a memory map over garbage).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from adsim.errors import AdSimDataError
from adsim.world.config import WorldConfig
from adsim.world.entities import GOAL_BID_SCALE

try:
    import fcntl
except ImportError:  # not POSIX: temporary directories are cleaned up by age alone
    fcntl = None

STALE_AFTER_S = 6 * 3600
"""A temporary build directory untouched this long, and not locked by a live build, is removed."""
TEMPORARY = re.compile(r"\.(?P<name>.+)\.(tmp|old)-[0-9a-f]{8}")
"""Names of the temporary siblings ``bundle._assemble`` and ``bundle.publish`` create."""
BID_SCALE_FACTOR = 20.0
"""A world's median bid of a goal must lie within this factor of the goal's scale (``GOAL_BID_SCALE``)."""
BUDGET_FACTOR = 10.0
"""... and its median daily budget within this factor of the config's ``budget_median``."""


# ---------------------------------------------------------------------------------------------- arrays
def load_array(path: Path, mmap: bool = True) -> np.ndarray:
    """The ``.npy`` array at ``path`` (memory-mapped read-only by default), after checking it is one: the magic,
    a parsable header, a numeric dtype (no pickled objects) and a file size matching the header's shape."""
    if not path.is_file():
        raise AdSimDataError("array file is missing", file=str(path))
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"unsupported .npy version {version}")
            shape, fortran, dtype = read_header(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError, SyntaxError) as e:
        raise AdSimDataError(f"not a .npy array file ({e})", file=str(path)) from None
    if dtype.hasobject or dtype.kind not in "biuf":
        raise AdSimDataError(f"array has dtype {dtype}, not numbers (adsim never stores pickled objects)",
                             file=str(path))
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if size != expected:
        what = "truncated" if size < expected else "longer than its header says"
        raise AdSimDataError(f"array file is {what}: {size} bytes, {expected} for shape {shape} {dtype}",
                             file=str(path))
    if not mmap or expected == offset:  # an empty array cannot be memory-mapped
        return np.load(path, allow_pickle=False)
    return np.load(path, mmap_mode="r", allow_pickle=False)


def check_array(values: np.ndarray, file: str, rows: int, *, dim: int | None = None, kind: str = "f",
                name: str = "array", min_value: float | None = None) -> None:
    """``values`` has ``rows`` rows (one per entity), 2 dimensions when ``dim`` is given (``dim`` 0: any width),
    1 otherwise, the dtype kind ``kind`` and only finite values (at least ``min_value``)."""
    ndim = 1 if dim is None else 2
    if values.ndim != ndim:
        raise AdSimDataError(f"{name} must be {ndim}-D, got shape {values.shape}", file=file)
    if values.shape[0] != rows:
        raise AdSimDataError(f"{name} has {values.shape[0]} rows but the bundle has {rows} (one per entity)",
                             file=file)
    if dim and values.shape[1] != dim:
        raise AdSimDataError(f"{name} has {values.shape[1]} columns, expected {dim}", file=file)
    if values.dtype.kind != kind:
        raise AdSimDataError(f"{name} has dtype {values.dtype}, expected {'float' if kind == 'f' else kind}",
                             file=file)
    flat = values.reshape(len(values), -1) if len(values) else values.reshape(0, 1)
    if kind == "f":
        bad = np.flatnonzero(~np.isfinite(flat).all(axis=1))
        if len(bad):
            raise AdSimDataError(f"{name} has NaN or infinite values", file=file, rows=bad)
    if min_value is not None:
        bad = np.flatnonzero((flat < min_value).any(axis=1))
        if len(bad):
            raise AdSimDataError(f"{name} has values below {min_value}", file=file, rows=bad)


# ---------------------------------------------------------------------------------------------- sanity
def check_world_ads(ads: pd.DataFrame, config: WorldConfig, file: str) -> None:
    """A synthetic world's ads look like the world: per goal, the median bid is within ``BID_SCALE_FACTOR`` of the
    goal's scale (a CPC bid is per click, a CPM bid per mille), and the median budget within ``BUDGET_FACTOR`` of
    ``config.budget_median``. Swapped or rescaled columns fail here."""
    goals = ads["goal"].astype(str).to_numpy()
    bids = ads["bid"].to_numpy(dtype=np.float64)
    for goal, scale in GOAL_BID_SCALE.items():
        mine = np.flatnonzero(goals == goal)
        if len(mine) < 5:
            continue
        median = float(np.median(bids[mine]))
        if not scale / BID_SCALE_FACTOR <= median <= scale * BID_SCALE_FACTOR:
            raise AdSimDataError(f"the median {goal} bid is {median:.3g}, off the goal's scale {scale} by more than "
                                 f"{BID_SCALE_FACTOR:g}x: bids swapped with another column or rescaled?", file=file,
                                 column="bid", rows=mine)
    budget = float(np.median(ads["daily_budget"].to_numpy(dtype=np.float64)))
    if not config.budget_median / BUDGET_FACTOR <= budget <= config.budget_median * BUDGET_FACTOR:
        raise AdSimDataError(f"the median daily budget is {budget:.3g}, the world's is {config.budget_median}: "
                             "budgets swapped with another column or rescaled?", file=file, column="daily_budget")


def check_config(manifest: Mapping, file: str) -> WorldConfig | None:
    """The manifest's world config, or an error naming the manifest if it does not make a ``WorldConfig``."""
    cfg = manifest.get("config")
    if not cfg:
        return None
    try:
        return WorldConfig.from_dict(cfg)
    except (TypeError, ValueError) as e:
        raise AdSimDataError(f"config is not a valid world config: {e}", file=file, column="config") from None


# ---------------------------------------------------------------------------------------------- stale builds
def lock(directory: Path) -> int | None:
    """An exclusive lock on ``directory`` held through the returned descriptor (close it to release), telling
    ``clean_stale_builds`` in other processes that a live build owns it."""
    if fcntl is None:
        return None
    fd = os.open(directory, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def unlock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


def _newest_mtime(directory: Path) -> float:
    newest = directory.stat().st_mtime
    for root, dirs, files in os.walk(directory):
        for name in (*dirs, *files):
            try:
                newest = max(newest, os.stat(os.path.join(root, name), follow_symlinks=False).st_mtime)
            except OSError:
                pass
    return newest


def clean_stale_builds(parent: Path, name: str | None = None, older_than: float = STALE_AFTER_S) -> list[Path]:
    """Remove the temporary directories killed builds left in ``parent`` (``.NAME.tmp-*`` and ``.NAME.old-*``, of
    bundle ``name`` or of any), once nothing in them changed for ``older_than`` seconds and no live build holds
    their lock. Returns what was removed; anything else (a bundle, a live build, a file) is left alone."""
    if not parent.is_dir():
        return []
    removed, now = [], time.time()
    for path in parent.iterdir():
        match = TEMPORARY.fullmatch(path.name)
        if match is None or (name is not None and match["name"] != name) or path.is_symlink() or not path.is_dir():
            continue
        fd = None
        try:
            if now - _newest_mtime(path) < older_than:
                continue
            if fcntl is not None:
                fd = os.open(path, os.O_RDONLY)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: a live build holds it
            shutil.rmtree(path)
            removed.append(path)
        except OSError:  # locked by a live build, or removed by another cleaner meanwhile
            pass
        finally:
            unlock(fd)
    return removed
