"""What the simulator calls: (B, K) request x candidate ad pairs in, pCTR, pCVR, eCPM and final_value out.

``RewardScorer`` is the learned reward (features -> LightGBM pCTR and pCVR -> eCPM -> final_value).
``TruthScorer`` prices the world's true probabilities the same way; the gap between the two is the error RL
can exploit, which ``reward_models.evaluation`` measures.

Candidates are scored as if shown in the top slot (``position=0``) unless told otherwise.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Literal

import numpy as np

from adsim.data import Scenario
from adsim.errors import AdSimDataError
from reward_models.compiled import CompiledScorer
from reward_models.features import FeatureBuilder, FeatureConfig, Requests, request_arrays, resolve_requests
from reward_models.lightgbm_model import BACKENDS, Backend, LightGBMRewardModel
from reward_models.protocol import FeatureMatrix
from reward_models.value import AdPrices, Scores, ValueConfig

CvrTarget = Literal["cvr", "ctcvr"]
"""``cvr``: the pCVR model is trained on clicks (P(conversion | click)). ``ctcvr`` (ESMM-style): it is trained on
all impressions for P(click and conversion), and pCVR = pCTCVR / pCTR, which avoids training on the clicked
subsample only (sample selection bias) at the price of dividing two estimates."""
SCORER_FILE, SID_FILE = "scorer.json", "sid_codes.npy"
FORMAT_VERSION = 1


class RewardScorer:
    """The learned reward model of a scenario.

    Args:
        features: the feature pipeline over the scenario's logs.
        pctr: P(click | impression) model.
        pcvr: P(conversion | click) model, or P(click and conversion | impression) when ``cvr_target="ctcvr"``.
        value_config: final_value's alphas and scales.
        cvr_target: what ``pcvr`` was trained on (see ``CvrTarget``).
        max_pairs: pairs featurised at once, a request counting as at least 16 (its history windows): bounds the
            memory of large batches on the reference backend (the compiled one never holds a feature matrix).
        backend: ``compiled`` (features, forests and reward fused in numba kernels, ``reward_models.compiled``)
            gives ``reference``'s numbers (numpy features, ``Booster.predict``) faster.
    """

    def __init__(self, features: FeatureBuilder, pctr: LightGBMRewardModel, pcvr: LightGBMRewardModel,
                 value_config: ValueConfig, cvr_target: CvrTarget = "cvr", max_pairs: int = 65_536,
                 backend: Backend = "compiled"):
        if cvr_target not in ("cvr", "ctcvr"):
            raise ValueError(f"cvr_target must be 'cvr' or 'ctcvr', got {cvr_target!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        for name, model in (("pctr", pctr), ("pcvr", pcvr)):
            if model.feature_names != features.feature_names:
                raise AdSimDataError(f"the {name} model's features do not match the feature pipeline's",
                                     column=name)
        self.features, self.pctr, self.pcvr = features, pctr, pcvr
        self.value_config, self.cvr_target, self.max_pairs = value_config, cvr_target, max_pairs
        self.backend = backend
        self._compiled: CompiledScorer | None = None

    @property
    def compiled(self) -> CompiledScorer:
        """The fused compiled path (``reward_models.compiled``), built on first use."""
        if self._compiled is None:
            self._compiled = CompiledScorer(self.features, self.pctr.forest, self.pcvr.forest, self.value_config,
                                            self.cvr_target == "ctcvr")
        return self._compiled

    def probabilities(self, x: FeatureMatrix) -> tuple[np.ndarray, np.ndarray]:
        """(pCTR, pCVR given a click) for feature rows."""
        pctr = self.pctr.predict(x, self.backend)
        pcvr = self.pcvr.predict(x, self.backend)
        if self.cvr_target == "ctcvr":
            pcvr = np.minimum(pcvr / np.maximum(pctr, 1e-12), 1.0)
        return pctr, pcvr

    def score(self, requests: Requests, ad_ids: np.ndarray, position: int | np.ndarray = 0) -> Scores:
        """Reward parts of B requests x K candidate ads (``ad_ids`` (B, K)), each (B, K) float64.

        ``compiled``: one fused kernel pass (features, forests, reward); ``reference``: ``FeatureBuilder.build``,
        ``Booster.predict`` and ``AdPrices.scores``. The numbers agree (features bit for bit, probabilities to
        LightGBM's last ulp).
        """
        if self.backend == "compiled":
            return self.compiled.score(requests, ad_ids, position)
        req = resolve_requests(requests, self.features.requests)
        ad = np.asarray(ad_ids, dtype=np.int64)
        if ad.ndim != 2 or ad.shape[0] != len(req["user_id"]):
            raise AdSimDataError(f"ad_ids must be (n_requests={len(req['user_id'])}, K), got shape {ad.shape}",
                                 column="ad_id")
        position = np.broadcast_to(np.asarray(position), ad.shape)
        pctr, pcvr = np.empty(ad.shape), np.empty(ad.shape)
        step = max(1, self.max_pairs // max(ad.shape[1], 16))
        for lo in range(0, len(ad), step):
            rows = slice(lo, lo + step)
            x = self.features.build({c: v[rows] for c, v in req.items()}, ad[rows], position[rows])
            p_click, p_conv = self.probabilities(x)
            pctr[rows], pcvr[rows] = p_click.reshape(-1, ad.shape[1]), p_conv.reshape(-1, ad.shape[1])
        return self.features.prices.scores(ad, pctr, pcvr, self.value_config)

    # ---------------------------------------------------------------------------------------------- disk
    def save(self, directory: str | Path) -> Path:
        """``pctr/`` and ``pcvr/`` (model.txt + meta.json each), ``scorer.json`` and the SID codes if used."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.pctr.save(directory / "pctr")
        self.pcvr.save(directory / "pcvr")
        sid = self.features.sid_codes
        if sid is not None:
            np.save(directory / SID_FILE, sid)
        meta = {
            "format_version": FORMAT_VERSION,
            "cvr_target": self.cvr_target,
            "features": dataclasses.asdict(self.features.config),
            "feature_names": list(self.features.feature_names),
            "sid_levels": 0 if sid is None else int(sid.shape[1]),
            "value": self.value_config.to_dict(),
        }
        (directory / SCORER_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return directory

    @classmethod
    def load(cls, path: str | Path, scenario: Scenario | None = None, backend: Backend = "compiled") -> RewardScorer:
        """Load from a bundle directory (models in its ``reward_models/``) or from a models directory.

        ``scenario`` is the bundle whose logs feed the features; by default the bundle at or above ``path``.
        """
        path = Path(path)
        directory = path / "reward_models" if (path / "reward_models" / SCORER_FILE).is_file() else path
        meta_file = directory / SCORER_FILE
        if not meta_file.is_file():
            raise AdSimDataError("no reward models here (scorer.json is missing): build the bundle with the "
                                 "reward_models step or run train_reward_models", file=str(meta_file))
        meta = json.loads(meta_file.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise AdSimDataError(f"unsupported scorer format {meta.get('format_version')}", file=str(meta_file))
        scenario = scenario or Scenario(directory.parent, validate=False)
        sid = np.load(directory / SID_FILE) if meta["sid_levels"] else None
        features = FeatureBuilder(scenario, sid, FeatureConfig(**meta["features"]))
        if list(features.feature_names) != meta["feature_names"]:
            raise AdSimDataError("the feature pipeline no longer produces the features these models were trained "
                                 "on; retrain them", file=str(meta_file))
        models = [LightGBMRewardModel.load(directory / name, features.feature_names) for name in ("pctr", "pcvr")]
        return cls(features, *models, ValueConfig.from_dict(meta["value"]), meta["cvr_target"], backend=backend)


class TruthScorer:
    """The world's true pCTR and pCVR, priced with the same eCPM and final_value as the learned scorer."""

    def __init__(self, scenario: Scenario, value_config: ValueConfig):
        self.world = scenario.world
        self.prices = AdPrices.from_table(scenario.table("ads"))
        self.requests = request_arrays(scenario.table("requests"))
        self.value_config = value_config

    def score(self, requests: Requests, ad_ids: np.ndarray, position: int | np.ndarray = 0) -> Scores:
        req = resolve_requests(requests, self.requests)
        ad = np.asarray(ad_ids, dtype=np.int64)
        col = {c: v[:, None] for c, v in req.items()}
        day = np.clip(col["day"], 0, self.world.config.n_days - 1)
        pctr = self.world.true_pctr(col["user_id"], ad, day, col["hour"], col["device"], col["placement"], position)
        pcvr = self.world.true_pcvr(col["user_id"], ad, day, col["device"])
        return self.prices.scores(ad, pctr, pcvr, self.value_config)


def bundle_scorers(scenario: Scenario) -> tuple[RewardScorer, TruthScorer | None]:
    """The bundle's reward models and, for a synthetic bundle, the world's truth on the same value scale."""
    path = scenario.path / "reward_models"
    if not path.is_dir():
        raise AdSimDataError("the bundle has no reward models: run `adsim build` (it trains them) on this scenario",
                             file=str(path))
    model = RewardScorer.load(path, scenario)
    truth = TruthScorer(scenario, model.value_config) if scenario.manifest.get("has_ground_truth") else None
    return model, truth
