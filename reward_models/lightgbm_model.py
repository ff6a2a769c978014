"""LightGBM reward models: binary classifiers over a FeatureMatrix, saved as ``model.txt`` + ``meta.json``.

Determinism: ``deterministic=True`` with ``force_row_wise=True``, a fixed ``seed`` and ``num_threads`` make the
same data give the same trees, byte for byte. Categorical features use LightGBM's native handling; a level
never seen in training (or a negative code) falls to the same branch as a missing value, so it scores like NaN
instead of failing.

Prediction has two backends with identical numbers: ``reference`` is ``Booster.predict``; ``compiled`` walks the
same trees as a ``reward_models.forest.CompiledForest``, without ``Booster.predict``'s per-call overhead, which
dominates the simulator's small batches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import lightgbm as lgb
import numpy as np
import pandas as pd

from adsim.errors import AdSimDataError
from reward_models.forest import CompiledForest
from reward_models.model_files import (  # the file format and its checks
    FORMAT_VERSION,
    META_FILE,
    MODEL_FILE,
    booster_from_text,
    check_meta,
    read_json,
    read_model_text,
)
from reward_models.protocol import FeatureMatrix, FeatureSpec

Backend = Literal["reference", "compiled"]
"""``reference``: ``Booster.predict``. ``compiled``: the same trees as a ``CompiledForest`` (the same numbers)."""
BACKENDS: tuple[Backend, ...] = ("reference", "compiled")


def default_params() -> dict:
    return {
        "objective": "binary",
        "metric": "binary_logloss",
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_data_in_leaf": 200,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 10.0,
        # strong smoothing of categorical splits: SID codes have up to 256 levels and overfit otherwise
        "cat_smooth": 100.0,
        "cat_l2": 50.0,
        "min_data_per_group": 500,
        "max_cat_threshold": 8,
        "max_cat_to_onehot": 8,
        "deterministic": True,
        "force_row_wise": True,
        # one thread: as fast as two for small-batch scoring, and immune to oversubscribed shared CPUs
        "num_threads": 1,
        "seed": 0,
        "verbosity": -1,
    }


@dataclass
class LightGBMConfig:
    """Training of one LightGBM reward model."""

    params: dict = field(default_factory=default_params)
    """Passed to ``lgb.train`` untouched; keep ``deterministic``, ``force_row_wise``, ``seed``, ``num_threads``."""
    num_boost_round: int = 2000
    early_stopping_rounds: int = 50
    """Rounds without validation log-loss improvement before stopping (only when a validation set is given)."""
    min_positives: int = 20
    """Fewer positive labels than this is an error: the model would learn noise and look calibrated."""

    def with_seed(self, seed: int) -> LightGBMConfig:
        return dataclasses.replace(self, params={**self.params, "seed": int(seed)})


@dataclass(frozen=True)
class Label:
    """What a model's probability means, written into meta.json beside the model."""

    name: str
    rows: str
    definition: str


def binary_labels(y: np.ndarray, n_rows: int, name: str) -> np.ndarray:
    """Labels as float32 0/1, or an error naming the rows that are not 0 or 1."""
    y = np.asarray(y)
    if y.shape != (n_rows,):
        raise AdSimDataError(f"{n_rows} feature rows but labels of shape {y.shape}", column=name)
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        raise AdSimDataError(f"labels must be 0 or 1, found {np.unique(y[bad])[:5].tolist()}", column=name,
                             rows=np.flatnonzero(bad))
    return y.astype(np.float32)


def _select(features: FeatureMatrix | pd.DataFrame, names: tuple[str, ...]) -> np.ndarray:
    """The (N, F) float32 matrix of ``names`` in order; an error listing any missing column."""
    have = features.names if isinstance(features, FeatureMatrix) else tuple(map(str, features.columns))
    if have == names:
        values = features.values if isinstance(features, FeatureMatrix) else features.to_numpy(np.float32)
        return np.ascontiguousarray(values, dtype=np.float32)
    missing = [n for n in names if n not in have]
    if missing:
        raise AdSimDataError(f"missing feature column(s) {missing}", column=missing[0])
    if isinstance(features, FeatureMatrix):
        index = {n: i for i, n in enumerate(have)}
        return np.ascontiguousarray(features.values[:, [index[n] for n in names]], dtype=np.float32)
    return features.loc[:, list(names)].to_numpy(np.float32)


def _check_nan(x: np.ndarray, specs: tuple[FeatureSpec, ...]) -> None:
    nan_columns = np.isnan(x).any(axis=0)
    for j in np.flatnonzero(nan_columns):
        if not specs[j].nullable:
            raise AdSimDataError("NaN in a feature that does not allow missing values", column=specs[j].name,
                                 rows=np.flatnonzero(np.isnan(x[:, j])))


class LightGBMRewardModel:
    """A fitted LightGBM probability model; implements ``RewardModel``."""

    def __init__(self, booster: lgb.Booster, specs: tuple[FeatureSpec, ...], label: Label, config: LightGBMConfig,
                 info: dict):
        self.booster, self.specs, self.label, self.config, self.info = booster, specs, label, config, info
        self._names = tuple(s.name for s in specs)
        self._forest: CompiledForest | None = None

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self._names

    @property
    def forest(self) -> CompiledForest:
        """``booster`` compiled on first use (the trees ``booster.predict`` uses)."""
        if self._forest is None:
            self._forest = CompiledForest.from_booster(self.booster)
        return self._forest

    @classmethod
    def fit(cls, train: FeatureMatrix, y: np.ndarray, label: Label, config: LightGBMConfig | None = None,
            valid: tuple[FeatureMatrix, np.ndarray] | None = None) -> LightGBMRewardModel:
        """Train on ``train`` rows; with ``valid``, stop early on its log loss."""
        config = config or LightGBMConfig()
        y = binary_labels(y, len(train), label.name)
        n_pos = int(y.sum())
        if n_pos < config.min_positives or n_pos == len(y):
            raise AdSimDataError(f"too few labels to train a {label.name!r} model: {n_pos} positive and "
                                 f"{len(y) - n_pos} negative in {len(y)} rows (need at least "
                                 f"{config.min_positives} positive and one negative)", column=label.name)
        x = _select(train, train.names)
        _check_nan(x, train.specs)
        categorical = [i for i, s in enumerate(train.specs) if s.categorical]
        dataset = lgb.Dataset(x, y, feature_name=list(train.names), categorical_feature=categorical,
                              free_raw_data=True)
        valid_sets, callbacks = [], []
        if valid is not None:
            vx = _select(valid[0], train.names)
            _check_nan(vx, train.specs)
            valid_sets = [dataset.create_valid(vx, binary_labels(valid[1], len(vx), label.name))]
            callbacks = [lgb.early_stopping(config.early_stopping_rounds, first_metric_only=True, verbose=False)]
        booster = lgb.train(config.params, dataset, num_boost_round=config.num_boost_round, valid_sets=valid_sets,
                            valid_names=["valid"][: len(valid_sets)], callbacks=callbacks)
        # re-read from text: the in-memory model is then exactly what save() writes and load() reads
        booster = lgb.Booster(model_str=booster.model_to_string())
        digest = hashlib.sha256(json.dumps(train.names).encode())
        digest.update(x.tobytes())
        digest.update(y.tobytes())
        info = {"n_train": len(y), "n_positive": n_pos, "n_valid": 0 if valid is None else len(valid[1]),
                "best_iteration": booster.current_iteration(), "train_checksum": digest.hexdigest()}
        return cls(booster, train.specs, label, config, info)

    def predict(self, features: FeatureMatrix | pd.DataFrame, backend: Backend = "reference") -> np.ndarray:
        """(N,) probabilities. Raises on missing columns and on NaN where a feature does not allow it."""
        x = _select(features, self._names)
        _check_nan(x, self.specs)
        if backend == "compiled":
            return self.forest.predict(x)
        if backend == "reference":
            return self.booster.predict(x, num_threads=self.config.params.get("num_threads", 1))
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")

    # ---------------------------------------------------------------------------------------------- disk
    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / MODEL_FILE).write_text(self.booster.model_to_string())
        meta = {
            "format_version": FORMAT_VERSION,
            "kind": "lightgbm",
            "features": [dataclasses.asdict(s) for s in self.specs],
            "label": dataclasses.asdict(self.label),
            "config": dataclasses.asdict(self.config),
            "lightgbm_version": lgb.__version__,
            **self.info,
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path, expected_features: tuple[str, ...] | None = None) -> LightGBMRewardModel:
        """Read a saved model; ``expected_features`` (e.g. the feature pipeline's) must match its list exactly."""
        directory = Path(directory)
        model_file, meta_file = directory / MODEL_FILE, directory / META_FILE
        for path in (model_file, meta_file):
            if not path.is_file():
                raise AdSimDataError("reward model file is missing", file=str(path))
        meta = read_json(meta_file, "meta.json")
        check_meta(meta, str(meta_file), FORMAT_VERSION)
        try:
            specs = tuple(FeatureSpec(**s) for s in meta["features"])
            config = LightGBMConfig(**meta["config"])
            label = Label(**meta["label"])
        except TypeError as e:
            raise AdSimDataError(f"meta.json does not describe a model: {e}", file=str(meta_file)) from None
        names = tuple(s.name for s in specs)
        model = read_model_text(model_file)  # checked first: a malformed model.txt aborts LightGBM's parser
        if model.feature_names != names:
            raise AdSimDataError("model.txt and meta.json list different features", file=str(model_file))
        booster = booster_from_text(model, str(model_file))
        if expected_features is not None and tuple(expected_features) != names:
            missing = [n for n in expected_features if n not in names]
            extra = [n for n in names if n not in expected_features]
            raise AdSimDataError(f"the model's feature list does not match the pipeline's: missing {missing}, "
                                 f"unexpected {extra}" + ("" if missing or extra else ", different order"),
                                 file=str(model_file))
        info = {k: meta[k] for k in ("n_train", "n_positive", "n_valid", "best_iteration", "train_checksum")}
        return cls(booster, specs, label, config, info)
