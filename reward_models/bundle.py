"""Train the pCTR and pCVR models on a scenario's logs, and the bundle build step that does it.

Splits are the logs' own time-based ones: fit on ``train``, stop early on ``valid``, report on ``test``. Rows are
the logged impressions (pCTR; pCVR in ESMM ``ctcvr`` mode) or the clicked ones (pCVR), with features as of the
request's time.

Models fit their data: the leaf and category sizes scale with the training rows (``sized_to_data``), so a small
world's pCVR (a few hundred clicks) still learns instead of collapsing to one leaf, while worlds of ``small`` size
and up keep the defaults. A quality gate then checks every model on the held-out rows (``QualityGate``); a model
that predicts a constant, or ranks no better than the floor, fails the build unless the config allows it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from adsim.data import Scenario
from adsim.errors import AdSimDataError
from reward_models.features import FeatureBuilder, FeatureConfig
from reward_models.lightgbm_model import Label, LightGBMConfig, LightGBMRewardModel
from reward_models.metrics import auc, auc_standard_error, classification_metrics
from reward_models.protocol import FeatureMatrix
from reward_models.scorer import CvrTarget, RewardScorer
from reward_models.value import ValueConfig

CLICK = Label("click", "impressions", "P(click | the ad shown to the request at the logged position)")
CONVERSION = Label("conversion", "clicked impressions", "P(conversion | click)")
CTCVR = Label("conversion", "impressions", "P(click and conversion | impression), ESMM-style CTCVR")


@dataclass(frozen=True)
class QualityGate:
    """What a trained model must show on the pooled valid + test rows for the build to go on."""

    min_auc: float = 0.55
    """Ranking better than chance by a margin. A model fails when its held-out AUC is below the floor beyond noise
    (AUC + 2 standard errors < min_auc), so a tiny world's few conversions do not fail a build by chance (AUC is
    NaN, and not checked, when those rows hold one class)."""
    min_spread: float = 1e-6
    """Standard deviation of the predictions, relative to their mean: below it the model is a constant."""
    allow_failure: bool = False
    """Record a failed gate in the manifest instead of failing the build (CLI: ``adsim build`` has no such flag;
    set it in code, e.g. for imported logs without conversions)."""

    def check(self, name: str, y: np.ndarray, p: np.ndarray) -> dict:
        mean = float(np.mean(p)) if len(p) else float("nan")
        spread = float(np.std(p) / mean) if len(p) and mean > 0 else 0.0
        value, positives = auc(y, p), int(np.sum(y))
        se = auc_standard_error(value, positives, len(y) - positives)
        result = {"auc": round(value, 4), "auc_se": round(se, 4), "relative_spread": round(spread, 6),
                  "n": int(len(y)), "positives": positives, "min_auc": self.min_auc}
        problems = []
        if spread < self.min_spread:
            problems.append(f"its predictions are constant (relative spread {spread:.2g})")
        if np.isfinite(value) and value + 2 * se < self.min_auc:
            problems.append(f"held-out AUC {value:.3f} +- {se:.3f} is below the floor {self.min_auc}")
        result["passed"] = not problems
        if problems and not self.allow_failure:
            raise AdSimDataError(f"the {name} reward model fails the quality gate: {'; '.join(problems)} "
                                 f"({result['n']} held-out rows, {result['positives']} positives). More logs (a "
                                 "larger preset) fix this; QualityGate(allow_failure=True) builds anyway",
                                 column=name)
        return result


def sized_to_data(config: LightGBMConfig, n_train: int) -> LightGBMConfig:
    """``min_data_in_leaf`` = n/20 and ``min_data_per_group`` = n/10 of the training rows, within the defaults
    (5..200 and 10..500): tiny's 242-click pCVR gets leaves of 12 rows instead of one 200-row leaf."""
    params = {**config.params,
              "min_data_in_leaf": int(np.clip(n_train // 20, 5, config.params.get("min_data_in_leaf", 200))),
              "min_data_per_group": int(np.clip(n_train // 10, 10, config.params.get("min_data_per_group", 500)))}
    return dataclasses.replace(config, params=params)


@dataclass
class RewardModelsConfig:
    """Everything that decides the trained reward models."""

    seed: int = 0
    """Overrides the ``seed`` of both LightGBM configs."""
    features: FeatureConfig = field(default_factory=FeatureConfig)
    pctr: LightGBMConfig = field(default_factory=LightGBMConfig)
    pcvr: LightGBMConfig = field(default_factory=LightGBMConfig)
    cvr_target: CvrTarget = "cvr"
    value: ValueConfig = field(default_factory=ValueConfig)
    """final_value's alphas; the scales are fitted on the training impressions."""
    gate: QualityGate = field(default_factory=QualityGate)


@dataclass
class LoggedData:
    """Every logged impression as a feature row, with its labels and split."""

    features: FeatureMatrix
    click: np.ndarray
    conversion: np.ndarray
    split: np.ndarray  # (N,) "train" / "valid" / "test"

    @classmethod
    def from_scenario(cls, scenario: Scenario, features: FeatureBuilder) -> LoggedData:
        imp = scenario.table("impressions")
        request = imp["request_id"].to_numpy()
        split = scenario.table("requests")["split"].astype(str).to_numpy()[request]
        x = features.build_rows(request, imp["ad_id"].to_numpy(), imp["position"].to_numpy())
        return cls(x, imp["click"].to_numpy(), imp["conversion"].to_numpy(), split)

    def rows(self, split: str, clicked: bool = False) -> np.ndarray:
        mask = self.split == split
        return np.flatnonzero((mask & self.click) if clicked else mask)


def _fit(data: LoggedData, label: Label, y: np.ndarray, clicked: bool, config: LightGBMConfig) -> LightGBMRewardModel:
    train, valid = data.rows("train", clicked), data.rows("valid", clicked)
    return LightGBMRewardModel.fit(data.features.take(train), y[train], label, sized_to_data(config, len(train)),
                                   valid=(data.features.take(valid), y[valid]))


def train_reward_models(scenario: Scenario, out_dir: str | Path, config: RewardModelsConfig | None = None,
                        sid_codes: np.ndarray | None = None) -> dict:
    """Fit pCTR and pCVR, calibrate final_value's scales, save a ``RewardScorer`` into ``out_dir``.

    Returns:
        A summary for the manifest: feature count, best iterations, and valid/test metrics of both models.
    """
    config = config or RewardModelsConfig()
    features = FeatureBuilder(scenario, sid_codes, config.features)
    data = LoggedData.from_scenario(scenario, features)
    pctr = _fit(data, CLICK, data.click, False, config.pctr.with_seed(config.seed))
    label, clicked_only = (CONVERSION, True) if config.cvr_target == "cvr" else (CTCVR, False)
    pcvr = _fit(data, label, data.conversion, clicked_only, config.pcvr.with_seed(config.seed))
    scorer = RewardScorer(features, pctr, pcvr, config.value, config.cvr_target)

    # ---- final_value scales, on the training impressions
    train = data.rows("train")
    p_click, p_conv = scorer.probabilities(data.features.take(train))
    ad = scenario.table("impressions")["ad_id"].to_numpy()[train]
    prices = features.prices
    scorer.value_config = config.value.calibrated(prices.ecpm(ad, p_click, p_conv), prices.targets(ad, p_click, p_conv))
    scorer.save(out_dir)

    summary = {"features": len(features.specs), "sid_levels": 0 if sid_codes is None else int(sid_codes.shape[1]),
               "cvr_target": config.cvr_target, "value": scorer.value_config.to_dict()}
    for name, model in (("pctr", pctr), ("pcvr", pcvr)):
        summary[name] = {"best_iteration": model.info["best_iteration"], "n_train": model.info["n_train"],
                         "label": model.label.name, "train_checksum": model.info["train_checksum"]}
    for split in ("valid", "test"):
        rows = data.rows(split)
        p_click, p_conv = scorer.probabilities(data.features.take(rows))
        clicked = data.click[rows]
        summary["pctr"][split] = _rounded(classification_metrics(data.click[rows], p_click))
        summary["pcvr"][split] = _rounded(classification_metrics(data.conversion[rows][clicked], p_conv[clicked]))
    held_out = np.concatenate([data.rows("valid"), data.rows("test")])
    p_click, p_conv = scorer.probabilities(data.features.take(held_out))
    clicked = data.click[held_out]
    summary["pctr"]["gate"] = config.gate.check("pctr", data.click[held_out], p_click)
    conversion = data.conversion[held_out]
    summary["pcvr"]["gate"] = (config.gate.check("pcvr", conversion[clicked], p_conv[clicked])
                               if config.cvr_target == "cvr"  # ctcvr: the model's own target, on every impression
                               else config.gate.check("pcvr", conversion, p_click * p_conv))
    return summary


def _rounded(metrics: dict) -> dict:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}


def bundle_sid_codes(root: Path) -> np.ndarray | None:
    """The bundle's ad SID codes when the SID step ran before this one (and ``adsim.sid`` is installed)."""
    if not (root / "sid").is_dir():
        return None
    try:
        from adsim.sid.pipeline import SidArtifacts
    except ImportError:
        return None
    return np.asarray(SidArtifacts.load(root / "sid").ad_codes)


def bundle_step(root: Path, scenario: Scenario, progress: bool, gate: QualityGate | None = None) -> dict:
    """Build step: train the default reward models into ``root / "reward_models"`` (seeded by the bundle's seed)."""
    config = RewardModelsConfig(seed=int(scenario.manifest.get("seed") or 0), gate=gate or QualityGate())
    return train_reward_models(scenario, root / "reward_models", config, bundle_sid_codes(root))
