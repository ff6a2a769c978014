"""Path -> items index in flat CSR form: the leaves of the simulator's ``adsim.trie.SidTrie``, saved with the SIDs.

Several items may share a full path (a collision); they are all kept. Paths are sorted lexicographically, so the
items under any prefix are one contiguous slice as well (a trie without pointers).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np

from adsim.errors import AdSimDataError

INDEX_FORMAT_VERSION = 1


def group_paths(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct rows of ``codes (N, L)``: sorted unique paths ``(P, L)``, the path of each item ``(N,)`` and the
    number of items on each path ``(P,)``."""
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be a 2-D (N, L) array, got shape {codes.shape}")
    paths, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return paths, inverse.reshape(-1), counts


@dataclass(frozen=True)
class PathIndex:
    paths: np.ndarray
    """(P, L) int64 distinct paths, lexicographically sorted."""
    offsets: np.ndarray
    """(P + 1,) int64: the items of ``paths[p]`` are ``items[offsets[p]:offsets[p + 1]]``."""
    items: np.ndarray
    """(N,) int64 item ids, grouped by path, ascending within a path."""

    @classmethod
    def from_codes(cls, codes: np.ndarray, item_ids: np.ndarray | None = None) -> Self:
        """Index ``codes (N, L)``; ``item_ids`` defaults to the row numbers 0..N-1."""
        paths, inverse, counts = group_paths(codes)
        ids = np.arange(len(inverse)) if item_ids is None else np.asarray(item_ids, dtype=np.int64)
        if ids.shape != inverse.shape:
            raise ValueError(f"item_ids must have one id per row of codes ({len(inverse)}), got shape {ids.shape}")
        order = np.lexsort((ids, inverse))
        offsets = np.concatenate([[0], np.cumsum(counts)])
        return cls(paths.astype(np.int64), offsets.astype(np.int64), ids[order])

    @property
    def num_paths(self) -> int:
        return self.paths.shape[0]

    @property
    def bucket_sizes(self) -> np.ndarray:
        """Items per path ``(P,)``; a size > 1 is a collision."""
        return np.diff(self.offsets)

    def path_range(self, prefix: np.ndarray | list[int]) -> tuple[int, int]:
        """Rows ``[lo, hi)`` of ``paths`` that start with ``prefix`` (a full path matches at most one row)."""
        prefix = np.asarray(prefix, dtype=np.int64).reshape(-1)
        if prefix.size > self.paths.shape[1]:
            raise ValueError(f"prefix has {prefix.size} codes but paths have {self.paths.shape[1]} levels")
        lo, hi = 0, self.num_paths
        for level, code in enumerate(prefix):
            column = self.paths[lo:hi, level]  # sorted within the rows sharing the earlier codes
            lo, hi = lo + int(np.searchsorted(column, code, "left")), lo + int(np.searchsorted(column, code, "right"))
        return lo, hi

    def lookup(self, prefix: np.ndarray | list[int]) -> np.ndarray:
        """Item ids whose path starts with ``prefix`` (for a full path: the items on it; empty if none)."""
        lo, hi = self.path_range(prefix)
        return self.items[self.offsets[lo]:self.offsets[hi]]

    def save(self, path: str | Path) -> Path:
        """One ``.npz`` with ``paths``, ``offsets``, ``items`` and ``format_version``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, paths=self.paths, offsets=self.offsets, items=self.items,
                 format_version=np.int64(INDEX_FORMAT_VERSION))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Load an index written by ``save``; checks the version and that offsets, items and paths agree."""
        path = Path(path)
        with np.load(path, allow_pickle=False) as npz:
            missing = {"paths", "offsets", "items", "format_version"} - set(npz.files)
            if missing:
                raise AdSimDataError(f"not a path index: arrays {sorted(missing)} are missing", file=str(path))
            if int(npz["format_version"]) != INDEX_FORMAT_VERSION:
                raise AdSimDataError(f"path index version {int(npz['format_version'])}, this adsim reads "
                                     f"{INDEX_FORMAT_VERSION}", file=str(path))
            index = cls(npz["paths"], npz["offsets"], npz["items"])
        off = index.offsets
        if (off.size != index.num_paths + 1 or off[0] != 0 or off[-1] != index.items.size
                or (np.diff(off) < 1).any()):
            raise AdSimDataError("path index offsets do not match its paths and items", file=str(path))
        return index
