"""What every reward model is to the simulator, and the one contract check run over each implementation.

A reward model maps a named float feature matrix to probabilities. Keeping the interface this small lets the
scorer, the evaluation and the tests treat the LightGBM models, a future neural one and the real-data fit on the
Open Bandit Dataset alike; ``check_reward_model`` is what "implements the protocol" means in practice.
"""

from __future__ import annotations

import filecmp
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from adsim.errors import AdSimDataError


@dataclass(frozen=True)
class FeatureSpec:
    """One model input. Categorical values are non-negative integer codes stored as floats."""

    name: str
    categorical: bool = False
    nullable: bool = False
    """NaN is a legal value (e.g. "no history yet"); elsewhere NaN is an error, never silently imputed."""


@dataclass(frozen=True)
class FeatureMatrix:
    """Rows of features, ``values`` (N, F) float32 in the order of ``specs``."""

    values: np.ndarray
    specs: tuple[FeatureSpec, ...]

    def __post_init__(self) -> None:
        if self.values.ndim != 2 or self.values.shape[1] != len(self.specs):
            raise AdSimDataError(f"feature values of shape {self.values.shape} do not match {len(self.specs)} "
                                 "feature specs")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.specs)

    def __len__(self) -> int:
        return len(self.values)

    def take(self, rows: np.ndarray) -> FeatureMatrix:
        return FeatureMatrix(self.values[rows], self.specs)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.values, columns=list(self.names))


@runtime_checkable
class RewardModel(Protocol):
    """A probability model over named features, saved as ``model.txt`` + ``meta.json`` in a directory."""

    @property
    def feature_names(self) -> tuple[str, ...]: ...

    def predict(self, features: FeatureMatrix | pd.DataFrame) -> np.ndarray:
        """(N,) probabilities, one per feature row."""
        ...

    def save(self, directory: str | Path) -> Path: ...


def check_reward_model(
    fit: Callable[[int], RewardModel],
    load: Callable[[Path], RewardModel],
    features: FeatureMatrix,
    files: Sequence[str] = ("model.txt", "meta.json"),
) -> None:
    """Assert the protocol's promises: shapes, finite probabilities, exact save/load, same seed -> same model.

    Args:
        fit: trains a model from a seed (the same data every call).
        load: reads a model back from the directory ``save`` wrote.
        features: rows to predict on; must hold every feature the model needs.
        files: the files ``save`` must write, compared byte for byte between two same-seed fits.
    """
    model = fit(0)
    assert isinstance(model, RewardModel), f"{type(model).__name__} does not implement RewardModel"
    names = model.feature_names
    assert isinstance(names, tuple) and all(isinstance(n, str) for n in names), "feature_names must be a str tuple"
    assert len(set(names)) == len(names), f"duplicate feature names in {names}"
    pred = model.predict(features)
    assert isinstance(pred, np.ndarray) and pred.shape == (len(features),), f"predict shape {np.shape(pred)}"
    assert np.isfinite(pred).all(), "predictions must be finite"
    assert ((pred >= 0) & (pred <= 1)).all(), "predictions must be probabilities in [0, 1]"
    assert np.array_equal(model.predict(features), pred), "predict is not deterministic"

    with tempfile.TemporaryDirectory() as tmp:
        first, second = Path(tmp, "first"), Path(tmp, "second")
        model.save(first)
        for name in files:
            assert (first / name).is_file(), f"save() did not write {name}"
        loaded = load(first)
        assert loaded.feature_names == names, "feature names changed through save/load"
        assert np.array_equal(loaded.predict(features), pred), "save -> load changed the predictions"

        again = fit(0)
        assert np.array_equal(again.predict(features), pred), "the same seed gave different predictions"
        again.save(second)
        for name in files:
            assert filecmp.cmp(first / name, second / name, shallow=False), f"same seed, different {name}"
