"""Large derived arrays shared between processes: memory-mapped from one file in the cache instead of one private
copy per process.

Every env process builds the same ``FeatureBuilder`` indexes from the same bundle (about 90 MB on ``small``); held
privately, each process pays for them again. ``share`` writes them once under ``cache_dir()/features/<key>/`` and
hands back memory maps of those files (copy-on-write, never written), so the operating system keeps one copy of the
pages for all processes.

Nothing here is trusted: a process still builds its arrays itself and a cached file is used only if it holds
exactly the same array (dtype, shape and every byte); otherwise it is rewritten. The key only finds the files; a
stale or damaged file costs a rewrite, never a wrong number. Writes go to a temporary file renamed into place, so
concurrent processes see a file whole. Where the cache cannot be written, the arrays stay private.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from adsim.paths import cache_dir

FORMAT = 1


def cache_key(parts: Mapping[str, object], arrays: Mapping[str, np.ndarray] = {}) -> str:  # noqa: B006
    """A sha256 of JSON-able ``parts`` and the bytes of small ``arrays``: where the files of one input live."""
    digest = hashlib.sha256(json.dumps({"format": FORMAT, **parts}, sort_keys=True, default=str).encode())
    for name in sorted(arrays):
        values = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{values.dtype.str}:{values.shape}".encode())
        digest.update(values.tobytes())
    return digest.hexdigest()


def share(arrays: Mapping[str, np.ndarray], key: str) -> dict[str, np.ndarray]:
    """``arrays`` as memory maps of identical files under the cache (each written if missing or
    different); an array that cannot be shared (unwritable cache, empty array) comes back as it was."""
    directory = cache_dir() / "features" / key
    out = {}
    for name, values in arrays.items():
        values = np.ascontiguousarray(values)
        try:
            out[name] = _mapped(directory / f"{name}.npy", values)
        except OSError:
            out[name] = values
    return out


def _mapped(path: Path, values: np.ndarray) -> np.ndarray:
    if values.size == 0:  # an empty file cannot be memory-mapped
        return values
    mapped = _open(path)
    if not _same(mapped, values):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        try:
            with open(tmp, "wb") as f:
                np.save(f, values, allow_pickle=False)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        mapped = _open(path)
        if not _same(mapped, values):
            return values  # replaced under us by a different array of the same key: stay private
    return mapped


def _same(mapped: np.ndarray | None, values: np.ndarray) -> bool:
    """Same dtype, shape and bytes (NaNs and signed zeros included)."""
    return (mapped is not None and mapped.dtype == values.dtype and mapped.shape == values.shape
            and np.array_equal(mapped.reshape(-1).view(np.uint8), values.reshape(-1).view(np.uint8)))


def _open(path: Path) -> np.ndarray | None:
    try:
        # copy-on-write: the pages stay shared (nothing writes them), and numba types the arrays as writable; a
        # plain ndarray view, as np.memmap's Python-level indexing would slow every gather
        return np.asarray(np.load(path, mmap_mode="c", allow_pickle=False))
    except (OSError, ValueError):
        return None
