"""The arithmetic both feature paths share, chosen so that a pair's features cannot depend on how pairs are batched.

The reference (``reward_models.features``, numpy) and the compiled path (``reward_models.fast``, numba) must give
the same float32 features bit for bit, and neither may let the other pairs of a batch change a pair's value. Three
rules make that hold by construction rather than by luck:

- **Vectors on a grid.** Unit embeddings and the interest vectors summarised from them are rounded to multiples of
  ``GRID`` = 2**-24. Their components are at most 1 in size, so float32 holds them exactly; the product of two
  is a multiple of 2**-48, and every partial sum of a dot product of two vectors of norm <= 1 stays below 2 in
  size, i.e. needs at most 49 bits: every cosine is *exact* in float64, whatever the summation order (BLAS
  blocking, SIMD lanes, batch layout). The same holds for sums of up to 2**28 grid vectors (history means).
- **Fixed order where exactness is impossible.** Sums of non-grid terms (the soft-max's weighted exponentials) run
  sequentially in window order: ``np.cumsum`` in the reference (numpy's accumulate is sequential) and a plain loop in
  the kernels.
- **One exp and one log.** numpy's SIMD ``exp``/``log`` differ from the C library's in the last bit; ``exp``/``log``
  below are numba ufuncs over ``math.exp``/``math.log``, the very functions the kernels call.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, vectorize

GRID = 2.0 ** -24
"""Spacing of the grid every embedding and interest vector is rounded to."""
_SCALE = 2.0 ** 24


def on_grid(x: np.ndarray) -> np.ndarray:
    """float64 ``x`` rounded to the nearest multiple of ``GRID`` (NaN stays NaN). Same operations as ``grid``."""
    return np.floor(np.asarray(x, dtype=np.float64) * _SCALE + 0.5) * GRID


@njit(cache=True)
def grid(x):
    """Scalar ``on_grid`` for the kernels."""
    return np.floor(x * _SCALE + 0.5) * GRID


@vectorize(["float64(float64)"], cache=True)
def exp(x):
    """``math.exp`` as a ufunc: what the kernels compute (numpy's own ``np.exp`` may differ in the last bit)."""
    return math.exp(x)


@vectorize(["float64(float64)"], cache=True)
def log(x):
    """``math.log`` as a ufunc (see ``exp``)."""
    return math.log(x)
