"""The same pCTR approach on real clicks: the Open Bandit Dataset (ZOZOTOWN fashion e-commerce, Saito et al. 2021).

Data: the uniform-random log (10,000 impressions of 80 items in 3 slots, propensity 1/80), read in place from
``adsim.paths.shared_data_dir() / "open_bandit_dataset"`` (see its NOTICE.txt; never copied). A uniform logging
policy makes the test slice an unbiased sample of (user, item) pairs.

Split by time: the earliest ``train_fraction`` of impressions train, the rest test. With about 38 clicks in all,
the model is a small, heavily regularised LightGBM run for a fixed number of rounds (there is no validation slice
to spare), every metric is reported with the number of positives behind it, and a constant base-rate predictor
is shown beside it.

Features: the four hashed user features, the item id and its three hashed item features (categorical, levels
from the training slice; unseen levels score as missing), the numeric item feature, the slot, the user's
affinity to the shown item and the user's total affinity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from adsim.importers.obd import read_obd
from reward_models.lightgbm_model import Label, LightGBMConfig, LightGBMRewardModel, default_params
from reward_models.metrics import auc_standard_error, calibration_table, classification_metrics
from reward_models.protocol import FeatureMatrix, FeatureSpec

CLICK = Label("click", "Open Bandit impressions", "P(click | item shown to the user at the slot)")
USER_COLUMNS = tuple(f"user_feature_{i}" for i in range(4))
ITEM_CATEGORICAL = ("item_feature_1", "item_feature_2", "item_feature_3")
SPECS = (
    *(FeatureSpec(c, categorical=True) for c in USER_COLUMNS),
    FeatureSpec("item_id", categorical=True),
    *(FeatureSpec(c, categorical=True) for c in ITEM_CATEGORICAL),
    FeatureSpec("item_feature_0"),
    FeatureSpec("position"),
    FeatureSpec("affinity"),
    FeatureSpec("total_affinity"),
)


def _obd_lightgbm() -> LightGBMConfig:
    params = {**default_params(), "num_leaves": 4, "min_data_in_leaf": 200, "min_data_per_group": 200,
              "learning_rate": 0.03}
    return LightGBMConfig(params=params, num_boost_round=150, min_positives=10)


@dataclass
class OpenBanditConfig:
    behavior: str = "random"
    """Which log: ``random`` (uniform) or ``bts`` (Bernoulli Thompson sampling)."""
    train_fraction: float = 0.7
    lightgbm: LightGBMConfig = field(default_factory=_obd_lightgbm)


def load_open_bandit(behavior: str = "random", root: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The log (time ordered) and the item table of one behaviour policy's "all" campaign in ``root`` (default
    ``adsim.paths.shared_data_dir() / "open_bandit_dataset"``), read and checked by the OBD importer's reader."""
    log, items, _ = read_obd(root, behavior)
    return log, items


def open_bandit_features(log: pd.DataFrame, items: pd.DataFrame, vocab: dict[str, pd.Index]) -> FeatureMatrix:
    """Feature rows of log impressions; categorical strings are coded by ``vocab`` (-1 when unseen)."""
    item = log["item_id"].to_numpy()
    item_table = items.set_index("item_id").loc[item].reset_index(drop=True)
    affinity = log.filter(like="user-item_affinity_").to_numpy()
    columns = {c: vocab[c].get_indexer(log[c]) for c in USER_COLUMNS}
    columns["item_id"] = item
    columns.update({c: vocab[c].get_indexer(item_table[c]) for c in ITEM_CATEGORICAL})
    columns["item_feature_0"] = item_table["item_feature_0"].to_numpy()
    columns["position"] = log["position"].to_numpy()
    columns["affinity"] = affinity[np.arange(len(log)), item]
    columns["total_affinity"] = affinity.sum(axis=1)
    values = np.column_stack([columns[s.name] for s in SPECS]).astype(np.float32)
    return FeatureMatrix(values, SPECS)


def evaluate_open_bandit(config: OpenBanditConfig | None = None) -> dict[str, pd.DataFrame]:
    """Fit pCTR on the early slice, report AUC, log loss and calibration on the later slice.

    Returns:
        ``open_bandit`` (the model and a base-rate predictor on the test slice) and ``open_bandit_calibration``.
    """
    config = config or OpenBanditConfig()
    log, items = load_open_bandit(config.behavior)
    n_train = int(round(config.train_fraction * len(log)))
    train, test = log.iloc[:n_train], log.iloc[n_train:]
    vocab = {c: pd.Index(pd.unique(train[c])) for c in USER_COLUMNS}
    vocab.update({c: pd.Index(pd.unique(items[c])) for c in ITEM_CATEGORICAL})
    model = LightGBMRewardModel.fit(open_bandit_features(train, items, vocab), train["click"].to_numpy(), CLICK,
                                    config.lightgbm)
    y = test["click"].to_numpy()
    predicted = model.predict(open_bandit_features(test, items, vocab))
    base = np.full(len(y), train["click"].mean())
    period = f"{test['timestamp'].iloc[0]:%Y-%m-%d %H:%M} .. {test['timestamp'].iloc[-1]:%Y-%m-%d %H:%M}"
    rows = []
    for name, p in (("LightGBM pCTR", predicted), ("base rate (train CTR)", base)):
        metrics = classification_metrics(y, p)
        n_pos = metrics["positives"]
        metrics["auc_se"] = auc_standard_error(metrics["auc"], n_pos, metrics["n"] - n_pos)
        rows.append({"model": name, "train_rows": n_train, "train_clicks": int(train["click"].sum()),
                     "test_period": period, **metrics})
    return {"open_bandit": pd.DataFrame(rows),
            "open_bandit_calibration": calibration_table(y, predicted, n_bins=5).assign(target="open bandit pctr")}
