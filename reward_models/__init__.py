"""Reward models of the simulator: LightGBM pCTR and pCVR over as-of features, eCPM and GPR's final_value.

The simulator calls ``RewardScorer.score(requests, ad_ids)``; ``bundle_step`` trains the models into a bundle;
``evaluate_rewards`` measures them against the held-out logs and the world's truth.
"""

from reward_models.bundle import RewardModelsConfig, bundle_step, train_reward_models
from reward_models.evaluation import evaluate_rewards
from reward_models.features import FeatureBuilder, FeatureConfig
from reward_models.lightgbm_model import LightGBMConfig, LightGBMRewardModel
from reward_models.protocol import FeatureMatrix, FeatureSpec, RewardModel, check_reward_model
from reward_models.scorer import RewardScorer, TruthScorer
from reward_models.value import Scores, ValueConfig

__all__ = [
    "FeatureBuilder", "FeatureConfig", "FeatureMatrix", "FeatureSpec", "LightGBMConfig", "LightGBMRewardModel",
    "RewardModel", "RewardModelsConfig", "RewardScorer", "Scores", "TruthScorer", "ValueConfig", "bundle_step",
    "check_reward_model", "evaluate_rewards", "train_reward_models",
]
