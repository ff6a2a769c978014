"""The valid-path trie over the inventory's SID paths, as flat arrays, with personalised legal masks.

Ads are sorted by their code path, so every prefix owns a contiguous range of ads. A request's personal view
is a boolean "allowed" vector over ads (targeting, liveness, budget); a prefix is legal when its range holds at
least one allowed ad, which a prefix sum over the sorted allowed vector answers in O(1) per child. No Python
object per node: internal nodes keep a dense ``child[node, code]`` table (there are few of them; the leaves,
one per distinct full path, need none).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

from adsim.errors import AdSimDataError
from adsim.sid.path_index import PathIndex


@dataclass(frozen=True)
class TrieLevel:
    start: np.ndarray  # (n_nodes,) first sorted-ad position of each node at this depth
    end: np.ndarray  # (n_nodes,) one past the last


class TrieTables(NamedTuple):
    """A trie as flat arrays for compiled kernels (``adsim.simulator.kernels``): nodes numbered depth by depth from
    the root (0), internal nodes first, so one child table serves every level."""

    child: np.ndarray
    """(n_internal, W) int32: the child node of (node, code), -1 where none."""
    start: np.ndarray
    """(n_nodes,) int64: first sorted position under each node."""
    end: np.ndarray
    """(n_nodes,) int64: one past the last."""
    order: np.ndarray
    """(n_items,) int64: sorted position -> item id."""


class SidTrie:
    """All valid L-level paths of an inventory. Node 0 is the root (empty prefix)."""

    def __init__(self, codes: np.ndarray, codebook_sizes: tuple[int, ...] | list[int],
                 index: PathIndex | None = None):
        """``index``: the inventory's saved ``PathIndex`` (a bundle's ``sid/ad_index.npz``), checked against
        ``codes``; built from ``codes`` when None. The trie's leaves are that index's paths, in its order."""
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != len(codebook_sizes):
            raise AdSimDataError(f"codes must be (n_items, {len(codebook_sizes)}), got shape {codes.shape}",
                                 column="codes")
        if len(codes) == 0:
            raise AdSimDataError("cannot build a trie over zero items", column="codes")
        sizes = np.asarray(codebook_sizes, dtype=np.int64)
        bad = np.flatnonzero(((codes < 0) | (codes >= sizes)).any(axis=1))
        if len(bad):
            raise AdSimDataError("codes outside their codebook", column="codes", rows=bad)
        self.codebook_sizes = tuple(int(s) for s in sizes)
        self.depth = codes.shape[1]
        self.width = int(sizes.max())
        index = PathIndex.from_codes(codes) if index is None else index
        self.order = np.asarray(index.items, dtype=np.int64)  # sorted position -> item id: grouped by path
        if len(self.order) != len(codes) or not np.array_equal(
                codes[self.order], np.repeat(index.paths, index.bucket_sizes, axis=0)):
            raise AdSimDataError("the path index does not match the items' codes (rebuild the SIDs)", column="codes")
        self.position = np.empty_like(self.order)
        self.position[self.order] = np.arange(len(self.order))
        self.sorted_codes = codes[self.order].astype(np.int64)

        # nodes at depth d (prefix length d): boundaries where the first d codes change
        self.levels: list[TrieLevel] = []
        n = len(self.order)
        for d in range(self.depth + 1):
            if d == 0:
                starts = np.array([0])
            else:
                change = (self.sorted_codes[1:, :d] != self.sorted_codes[:-1, :d]).any(axis=1)
                starts = np.concatenate([[0], np.flatnonzero(change) + 1])
            self.levels.append(TrieLevel(starts, np.append(starts[1:], n)))
        # child[d][node, code] = index of the child node at depth d+1, or -1
        self.child: list[np.ndarray] = []
        for d in range(self.depth):
            parent, kids = self.levels[d], self.levels[d + 1]
            table = np.full((len(parent.start), self.width), -1, dtype=np.int64)
            owner = np.searchsorted(parent.start, kids.start, side="right") - 1
            table[owner, self.sorted_codes[kids.start, d]] = np.arange(len(kids.start))
            self.child.append(table)

    @property
    def n_items(self) -> int:
        return len(self.order)

    @property
    def n_paths(self) -> int:
        return len(self.levels[-1].start)

    @cached_property
    def tables(self) -> TrieTables:
        offsets = np.cumsum([0] + [len(level.start) for level in self.levels])
        child = np.full((offsets[self.depth], self.width), -1, dtype=np.int32)
        for d, table in enumerate(self.child):
            child[offsets[d] : offsets[d + 1]] = np.where(table >= 0, table + offsets[d + 1], -1)
        start = np.concatenate([level.start for level in self.levels]).astype(np.int64)
        end = np.concatenate([level.end for level in self.levels]).astype(np.int64)
        return TrieTables(child, start, end, self.order)

    def allowed_prefix_sums(self, allowed: np.ndarray) -> np.ndarray:
        """(..., n_items+1) running counts of allowed items in sorted order, for the mask queries below."""
        allowed = np.asarray(allowed, dtype=bool)
        if allowed.shape[-1] != self.n_items:
            raise ValueError(f"allowed has {allowed.shape[-1]} items, the trie {self.n_items}")
        out = np.zeros(allowed.shape[:-1] + (self.n_items + 1,), dtype=np.int32)
        np.cumsum(allowed[..., self.order], axis=-1, out=out[..., 1:])
        return out

    def walk(self, prefixes: np.ndarray) -> np.ndarray:
        """Node ids at depth ``prefixes.shape[-1]`` for (B, d) code prefixes; -1 where the path is invalid."""
        prefixes = np.asarray(prefixes, dtype=np.int64)
        node = np.zeros(prefixes.shape[:-1], dtype=np.int64)
        for d in range(prefixes.shape[-1]):
            code = prefixes[..., d]
            ok = (node >= 0) & (code >= 0) & (code < self.width)
            node = np.where(ok, self.child[d][np.maximum(node, 0), np.clip(code, 0, self.width - 1)], -1)
        return node

    def legal_mask(self, prefixes: np.ndarray, prefix_sums: np.ndarray) -> np.ndarray:
        """(B, width) bool: codes that extend each (B, d) prefix towards at least one allowed item.

        ``prefix_sums`` is ``allowed_prefix_sums`` of each request's (B, n_items) allowed vector.
        """
        prefixes = np.asarray(prefixes, dtype=np.int64)
        d = prefixes.shape[-1]
        if d >= self.depth:
            raise ValueError(f"prefix length {d} leaves no level to choose (depth {self.depth})")
        node = self.walk(prefixes)
        kids = self.child[d][np.maximum(node, 0)]  # (B, width)
        level = self.levels[d + 1]
        k = np.maximum(kids, 0)
        sums = np.asarray(prefix_sums)
        count = np.take_along_axis(sums, level.end[k], axis=-1) - np.take_along_axis(sums, level.start[k], axis=-1)
        return (kids >= 0) & (node[..., None] >= 0) & (count > 0)

    def items(self, path: np.ndarray) -> np.ndarray:
        """Item ids on one full path (collisions give several), empty if the path is not in the trie."""
        node = int(self.walk(np.asarray(path)[None, :])[0])
        if node < 0:
            return np.empty(0, dtype=np.int64)
        level = self.levels[-1]
        return self.order[level.start[node] : level.end[node]]

    def leaf_ranges(self, paths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For (B, L) full paths: leaf node (-1 if invalid) and its [start, end) range in sorted order."""
        node = self.walk(paths)
        level = self.levels[-1]
        k = np.maximum(node, 0)
        return node, np.where(node >= 0, level.start[k], 0), np.where(node >= 0, level.end[k], 0)
