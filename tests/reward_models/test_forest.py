"""The compiled forest against ``Booster.predict``: every decision rule, missing type and tree shape LightGBM has.

Each model is small and trained deterministically; each test first asserts the model really has the splits it is
about (categorical bitsets over several words, NaN/Zero/None missing types, single-leaf trees), so a parity check
cannot pass on a forest that never takes the branch under test.
"""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from reward_models.forest import (
    CAT_BEGIN,
    CAT_WORDS,
    CATEGORICAL,
    DECISION,
    DEFAULT_LEFT,
    FEATURE,
    MISSING_NAN,
    MISSING_NONE,
    MISSING_ZERO,
    CompiledForest,
)

N_CODES = 70
"""Levels of the wide categorical feature: its bitsets span three 32-bit words."""
CATEGORICAL_FEATURES = (3, 4)
SPECIAL = np.array([np.nan, 0.0, -0.0, 1e-40, -1e-40, 1e-36, -1e-36, 1e-35, -1e-35, 1e-34, np.inf, -np.inf, -1.0,
                    -0.5, 0.5, 2.9, 31.0, 32.0, 63.0, 64.0, N_CODES, 95.0, 96.0, 1000.0, 2.0**31, 2.0**31 - 1,
                    -(2.0**31), -(2.0**31) - 1, 1e10, -1e10])
"""Values every column is probed with: missing-value edges, categories out of range or not integers, int32 edges."""


def _data(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two numerical features (one with NaNs), one mostly zero, two categorical (70 and 4 levels), one integer."""
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.normal(size=n), rng.normal(size=n), rng.normal(size=n) * (rng.random(n) < 0.4),
                         rng.integers(0, N_CODES, n), rng.integers(0, 4, n), rng.integers(-3, 4, n)])
    x[rng.random(n) < 0.2, 1] = np.nan
    effect = rng.normal(size=N_CODES) * 1.5
    logit = (x[:, 0] + np.nan_to_num(x[:, 1], nan=1.5) + 2 * (x[:, 2] == 0) + effect[x[:, 3].astype(int)]
             + (x[:, 4] == 2) - 0.3 * x[:, 5])
    return x, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)


PARAMS = {"objective": "binary", "deterministic": True, "force_row_wise": True, "num_threads": 1, "seed": 0,
          "verbosity": -1, "num_leaves": 15, "min_data_in_leaf": 10, "learning_rate": 0.3}
CATEGORICAL_PARAMS = {"max_cat_to_onehot": 4, "max_cat_threshold": 32, "cat_smooth": 1.0, "min_data_per_group": 10}
"""Small groups and wide splits, so bitsets cover many codes; the 4-level feature gets one-hot splits."""


def _train(params: dict | None = None, y: np.ndarray | None = None, rounds: int = 20, x: np.ndarray | None = None,
           categorical: tuple[int, ...] = CATEGORICAL_FEATURES) -> lgb.Booster:
    data_x, data_y = _data()
    dataset = lgb.Dataset(data_x if x is None else x, data_y if y is None else y, categorical_feature=list(categorical))
    return lgb.train({**PARAMS, **CATEGORICAL_PARAMS, **(params or {})}, dataset, num_boost_round=rounds)


def _probe(booster: lgb.Booster, n: int = 3000, seed: int = 1) -> np.ndarray:
    """Rows mixing training values, the model's own thresholds (ties with ``<=``) and the special values."""
    rng = np.random.default_rng(seed)
    train, _ = _data(500, seed=seed)
    forest = CompiledForest.from_booster(booster)
    columns = []
    for j in range(train.shape[1]):
        thresholds = forest.threshold[(forest.nodes[:, FEATURE] == j) & ~_categorical(forest)]
        pool = np.concatenate([train[:, j], thresholds, np.nextafter(thresholds, np.inf), SPECIAL])
        columns.append(rng.choice(pool, n))
    return np.column_stack(columns)


def _missing(forest: CompiledForest) -> np.ndarray:
    """(M,) each node's missing type."""
    return (forest.nodes[:, DECISION] >> 2) & 3


def _categorical(forest: CompiledForest) -> np.ndarray:
    """(M,) whether each node is a categorical split."""
    return (forest.nodes[:, DECISION] & CATEGORICAL) > 0


def _assert_exact(booster: lgb.Booster, x: np.ndarray, **predict_kwargs) -> None:
    forest = CompiledForest.from_booster(booster, **predict_kwargs)
    for values in (x, x.astype(np.float32)):
        # the same trees summed in the same order give the same double; exp may differ in the last ulp
        np.testing.assert_array_equal(forest.raw_score(values), booster.predict(values, raw_score=True,
                                                                                **predict_kwargs))
        np.testing.assert_allclose(forest.predict(values), booster.predict(values, **predict_kwargs),
                                   rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------------ models
def test_numerical_features_with_nans_in_training():
    booster = _train(categorical=())
    forest = CompiledForest.from_booster(booster)
    assert not _categorical(forest).any()
    nan_nodes = forest.nodes[_missing(forest) == MISSING_NAN]
    assert {bool(d & DEFAULT_LEFT) for d in nan_nodes[:, DECISION]} == {True, False}
    _assert_exact(booster, _probe(booster))


def test_categorical_features():
    booster = _train()
    forest = CompiledForest.from_booster(booster)
    categorical = _categorical(forest)
    assert set(forest.nodes[categorical, FEATURE].tolist()) == set(CATEGORICAL_FEATURES)
    assert forest.nodes[categorical, CAT_WORDS].max() >= 3  # codes >= 64 in a bitset
    assert set(_missing(forest)[categorical].tolist()) == {MISSING_NAN, MISSING_NONE}
    # a one-hot split (missing type None) sending code 0 left: NaN must still go right, not read as code 0
    one_hot = forest.nodes[categorical & (_missing(forest) == MISSING_NONE)]
    assert (forest.cat_bits[one_hot[:, CAT_BEGIN]] & 1).any()
    _assert_exact(booster, _probe(booster))


def test_zero_as_missing():
    booster = _train({"zero_as_missing": True, "sigmoid": 0.7})
    forest = CompiledForest.from_booster(booster)
    assert set(_missing(forest)[~_categorical(forest)].tolist()) == {MISSING_ZERO}
    _assert_exact(booster, _probe(booster))


def test_use_missing_false_reads_nan_as_zero():
    booster = _train({"use_missing": False})
    forest = CompiledForest.from_booster(booster)
    assert set(_missing(forest)[~_categorical(forest)].tolist()) == {MISSING_NONE} and _categorical(forest).any()
    x = _probe(booster)
    assert np.isnan(x).any(axis=0).all()
    _assert_exact(booster, x)


def test_constant_label_gives_single_leaf_trees():
    x, _ = _data()
    booster = _train(y=np.zeros(len(x)), rounds=5)
    forest = CompiledForest.from_booster(booster)
    assert forest.num_trees >= 1 and (forest.roots < 0).all() and len(forest.nodes) == 0
    _assert_exact(booster, _probe(booster))


def test_iterations_match_predict_best_iteration_and_num_iteration():
    x, y = _data()
    train = lgb.Dataset(x[:1000], y[:1000])
    valid = [train.create_valid(x[1000:], y[1000:])]
    booster = lgb.train({**PARAMS, "learning_rate": 0.5, "num_leaves": 31}, train, num_boost_round=200,
                        valid_sets=valid, callbacks=[lgb.early_stopping(5, verbose=False)], keep_training_booster=True)
    assert 1 <= booster.best_iteration < booster.current_iteration()
    probe = _probe(booster)
    _assert_exact(booster, probe)
    _assert_exact(booster, probe, num_iteration=2)
    # the project's models are re-read from text: no best_iteration, every saved tree counts
    _assert_exact(lgb.Booster(model_str=booster.model_to_string()), probe)


def test_batch_of_one_equals_a_row_of_the_batch():
    booster = _train()
    forest = CompiledForest.from_booster(booster)
    x = _probe(booster, n=300)
    raw, prob = forest.raw_score(x), forest.predict(x)
    np.testing.assert_array_equal([forest.raw_score_row(row) for row in x], raw)
    np.testing.assert_array_equal([forest.predict_row(row) for row in x.astype(np.float32)],
                                  forest.predict(x.astype(np.float32)))
    np.testing.assert_array_equal(forest.predict(x[:1]), prob[:1])


def test_raw_scores_of_other_objectives_and_clear_errors():
    x, y = _data()
    regression = _train({"objective": "regression"}, y=x[:, 0] + y)
    forest = CompiledForest.from_booster(regression)
    np.testing.assert_allclose(forest.raw_score(x), regression.predict(x), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="binary"):
        forest.predict(x)
    with pytest.raises(ValueError, match=r"\(N, 6\)"):
        forest.raw_score(x[:, :5])
    with pytest.raises(ValueError, match=r"\(6,\) row"):
        forest.predict_row(x[:2])
    with pytest.raises(ValueError, match="linear"):
        CompiledForest.from_booster(_train({"linear_tree": True}, x=np.nan_to_num(x), categorical=(), rounds=2))
    with pytest.raises(ValueError, match="single-output"):
        CompiledForest.from_booster(_train({"objective": "multiclass", "num_class": 4}, y=x[:, 4], rounds=2))


# ----------------------------------------------------------------------------------- the project's models
@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    from adsim import build_scenario
    from adsim.sid.pipeline import sid_step
    from reward_models import bundle_step

    return build_scenario(tmp_path_factory.mktemp("forest") / "bundle", "tiny", seed=5, progress=False,
                          steps=[("sid", sid_step), ("reward_models", bundle_step)])


def _pairs(bundle: Path, n_requests: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from adsim import Scenario

    scenario, rng = Scenario(bundle), np.random.default_rng(seed)
    requests = rng.choice(len(scenario.table("requests")), size=n_requests, replace=False)
    return requests, rng.integers(0, len(scenario.table("ads")), size=(n_requests, k))


def test_tiny_bundle_reward_models(bundle):
    from reward_models import RewardScorer

    scorer = RewardScorer.load(bundle)
    features = scorer.features.build(*_pairs(bundle, 64, 32))
    assert np.isnan(features.values).any()
    for model in (scorer.pctr, scorer.pcvr):
        forest = CompiledForest.from_booster(model.booster)
        assert forest.num_trees == model.booster.num_trees()
        np.testing.assert_allclose(forest.predict(features.values), model.predict(features), rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(model.predict(features, "compiled"), forest.predict(features.values))


def test_scorer_backends_give_identical_scores(bundle, monkeypatch):
    from reward_models import RewardScorer

    reference, compiled = (RewardScorer.load(bundle, backend=b) for b in ("reference", "compiled"))
    assert RewardScorer.load(bundle).backend == "compiled"
    for model in (compiled.pctr, compiled.pcvr):  # the compiled scorer must never fall back to Booster.predict
        monkeypatch.setattr(model.booster, "predict", None)
    for shape in ((1, 1), (3, 40), (128, 32)):
        requests, ads = _pairs(bundle, *shape, seed=shape[1])
        for a, b in zip(reference.score(requests, ads, position=1), compiled.score(requests, ads, position=1),
                        strict=True):
            assert a.shape == shape
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="backend"):
        RewardScorer(reference.features, reference.pctr, reference.pcvr, reference.value_config, backend="fast")
    with pytest.raises(ValueError, match="backend"):
        reference.pctr.predict(reference.features.build(requests[:1], ads[:1]), "fast")
