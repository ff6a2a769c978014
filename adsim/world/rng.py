"""Named, independent random streams: one per (seed, component, day, chunk ...).

Drawing each piece of the world from its own stream keeps results stable when another piece changes,
and lets a shard or a day be regenerated without replaying everything before it.
"""

from __future__ import annotations

import zlib

import numpy as np


def stream(seed: int, name: str, *keys: int) -> np.random.Generator:
    """A generator determined only by ``seed``, the component ``name`` and integer ``keys``."""
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode()), *map(int, keys)]))
