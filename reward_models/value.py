"""The reward the simulator pays for showing an ad: GPR's final_value, from pCTR, pCVR and the ad's bid.

    final_value = eCPM + (1/N) * sum_i alpha_i * scale_i * target_i        (N = number of weighted targets)

eCPM by goal, in currency per mille impressions (the logging ranker's own rule,
``adsim.world.cascade.estimated_ecpm``): CPM -> bid; CPC -> bid x pCTR x 1000; oCPC, oCPA and oCPI ->
bid x pCTR x pCVR x 1000 (oCPC bids a target cost per conversion, billed per click).

Targets, all per impression: ``pctr`` (clicks), ``pcvr`` (conversions: pCTR x pCVR, so an ad nobody clicks earns no
conversion bonus however convincing its landing page) and ``gmv_rate`` (expected GMV: pCTR x pCVR x the ad's
conversion value, zero for goals without one).

Normalisation: targets are probabilities (pCTR is a few percent) while eCPM is in currency per mille (tens), so a
raw alpha would vanish or dominate depending on the currency. Each target is put in eCPM units by
``scale_i = mean(eCPM) / mean(target_i)`` over the training impressions: a target at its training mean is worth
one mean eCPM, and alpha_i reads as "how many mean eCPMs an average target_i adds". The scales are fitted once with
the models and shared by the truth scorer, so learned and true rewards are on the same scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from adsim.errors import AdSimDataError
from adsim.simulator.scoring import Scores
from adsim.world.cascade import estimated_ecpm
from adsim.world.config import GOALS

TARGETS = ("pctr", "pcvr", "gmv_rate")


@dataclass(frozen=True)
class ValueConfig:
    """Weights of final_value's auxiliary targets, and the scales that put each target in eCPM units."""

    alphas: Mapping[str, float] = field(default_factory=lambda: {"pctr": 1.0, "pcvr": 1.0})
    scales: Mapping[str, float] = field(default_factory=dict)
    """mean(eCPM) / mean(target) on the training impressions; set by ``calibrated``."""

    def __post_init__(self) -> None:
        unknown = set(self.alphas) - set(TARGETS)
        if unknown:
            raise ValueError(f"unknown final_value target(s) {sorted(unknown)}; choose from {TARGETS}")

    def calibrated(self, ecpm: np.ndarray, targets: Mapping[str, np.ndarray]) -> ValueConfig:
        """The same alphas with scales fitted on (training) eCPMs and targets."""
        mean_ecpm = float(np.mean(ecpm))
        scales = {name: mean_ecpm / max(float(np.mean(targets[name])), 1e-12) for name in self.alphas}
        return ValueConfig(dict(self.alphas), scales)

    def final_value(self, ecpm: np.ndarray, targets: Mapping[str, np.ndarray]) -> np.ndarray:
        if not self.alphas:
            return ecpm
        missing = [name for name in self.alphas if name not in self.scales]
        if missing:
            raise ValueError(f"ValueConfig has no scale for {missing}: use ValueConfig.calibrated first")
        bonus = sum(self.alphas[name] * self.scales[name] * targets[name] for name in self.alphas)
        return ecpm + bonus / len(self.alphas)

    def to_dict(self) -> dict:
        return {"alphas": dict(self.alphas), "scales": dict(self.scales)}

    @classmethod
    def from_dict(cls, data: Mapping) -> ValueConfig:
        return cls(dict(data["alphas"]), dict(data.get("scales", {})))


@dataclass(frozen=True)
class AdPrices:
    """What eCPM and GMV need to know about each ad."""

    goal: np.ndarray  # (n_ads,) index into GOALS
    bid: np.ndarray
    conversion_value: np.ndarray

    @classmethod
    def from_table(cls, ads: pd.DataFrame) -> AdPrices:
        goal = pd.Categorical(ads["goal"].astype(str), categories=list(GOALS)).codes.astype(np.int64)
        if (goal < 0).any():
            raise AdSimDataError(f"goal outside {list(GOALS)}", file="ads", column="goal",
                                 rows=np.flatnonzero(goal < 0))
        return cls(goal, ads["bid"].to_numpy().astype(np.float64),
                   ads["conversion_value"].to_numpy().astype(np.float64))

    def targets(self, ad: np.ndarray, pctr: np.ndarray, pcvr: np.ndarray) -> dict[str, np.ndarray]:
        return {"pctr": pctr, "pcvr": pctr * pcvr, "gmv_rate": pctr * pcvr * self.conversion_value[ad]}

    def ecpm(self, ad: np.ndarray, pctr: np.ndarray, pcvr: np.ndarray) -> np.ndarray:
        return estimated_ecpm(self.goal[ad], self.bid[ad], pctr, pcvr)

    def scores(self, ad: np.ndarray, pctr: np.ndarray, pcvr: np.ndarray, value: ValueConfig) -> Scores:
        """eCPM and final_value of ads ``ad`` at the given probabilities (any matching shapes)."""
        pctr, pcvr = np.asarray(pctr, dtype=np.float64), np.asarray(pcvr, dtype=np.float64)
        ecpm = self.ecpm(ad, pctr, pcvr)
        return Scores(pctr, pcvr, ecpm, value.final_value(ecpm, self.targets(ad, pctr, pcvr)))
