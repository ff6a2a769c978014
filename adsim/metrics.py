"""Simulator-level metrics shared by every policy's evaluation."""

from __future__ import annotations

import numpy as np


def normalised_score(policy: np.ndarray, random: np.ndarray, oracle: np.ndarray) -> float:
    """(mean policy - mean random legal) / (mean oracle - mean random legal); nan when the oracle does not beat
    random. 0 is a random legal policy, 1 the best legal ad of every request."""
    gap = float(np.mean(oracle) - np.mean(random))
    return float((np.mean(policy) - np.mean(random)) / gap) if gap > 0 else float("nan")
