"""The scoring contract between the simulator and whatever prices (request, ad) pairs.

The simulator (core) only knows this contract; the LightGBM reward models and the world's truth that implement it
live in ``reward_models/`` (``RewardScorer``, ``TruthScorer``), one layer up, and are wired in by ``envs/``.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, Protocol

import numpy as np

RewardSource = Literal["model", "truth"]


class Scores(NamedTuple):
    """Reward parts for (B, K) request x ad pairs, each (B, K) float64."""

    pctr: np.ndarray
    pcvr: np.ndarray
    ecpm: np.ndarray
    final_value: np.ndarray


class Scorer(Protocol):
    """Anything that scores (request, ad) pairs: the reward models, or the world's truth."""

    def score(self, requests, ad_ids: np.ndarray) -> Scores:
        """``requests`` holds B rows (REQUEST_COLUMNS arrays or a DataFrame), ``ad_ids`` is (B, M)."""
        ...
