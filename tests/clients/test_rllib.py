"""RLlib, as a plain RLlib user would use it: AdSimFlat-v0 with RLlib's own ActionMaskingTorchRLModule learns on tiny;
RLlib's default module on AdSim-v0's Dict observation is refused with the way out."""

from __future__ import annotations

import numpy as np
import pytest

from adsim.errors import AdSimError
from envs.adsim_env import AdSimEnv
from envs.flat import FlatObservation

pytest.importorskip("ray.rllib")

MARGIN = 2.0
"""The mean return of the last training iteration (sampled, so still exploring) must be at least this multiple of
random legal play's."""


@pytest.fixture(scope="module")
def ray_tmp(tmp_path_factory):
    """One private 2-CPU Ray for the module, its files under a temp dir; no daemon survives."""
    from conftest import private_ray

    tmp = tmp_path_factory.mktemp("ray")
    with private_ray(tmp):
        yield tmp


def test_default_module_on_the_dict_env_names_the_ways_out(tmp_path):
    from ray.rllib.algorithms.ppo import PPOConfig

    from agents.rllib.config import build_algo, check_config

    config = PPOConfig().environment("adsim:AdSim-v0", env_config={"scenario": "tiny"})
    with pytest.raises(AdSimError, match=r"agents\.rllib\.ppo_config.*AdSimFlat-v0.*ActionMaskingTorchRLModule"):
        build_algo(config, tmp_path)
    check_config(PPOConfig().environment("adsim:AdSimFlat-v0"))  # the flat variant is fine


def test_flat_env_with_rllibs_masking_module_beats_random_legal(ray_tmp, env_fixture, random_legal_return):
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.rllib.examples.rl_modules.classes.action_masking_rlm import ActionMaskingTorchRLModule
    from ray.tune.registry import register_env

    from agents.rllib.config import build_algo

    # the test's in-process stand-in scorer cannot travel by name: the env is built in this (driver) process
    register_env("AdSimFlat-test", lambda cfg: FlatObservation(AdSimEnv(**env_fixture.kwargs())))
    config = (
        PPOConfig()
        .environment("AdSimFlat-test")
        .env_runners(num_env_runners=0, num_envs_per_env_runner=8)
        .rl_module(rl_module_spec=RLModuleSpec(module_class=ActionMaskingTorchRLModule,
                                               model_config={"fcnet_hiddens": [64, 64]}))
        .training(lr=3e-3, gamma=1.0, entropy_coeff=0.0, train_batch_size_per_learner=512, minibatch_size=128,
                  num_epochs=4)
        .debugging(seed=0)
    )
    algo = build_algo(config, ray_tmp / "logs")
    try:
        returns = [algo.train()["env_runners"]["episode_return_mean"] for _ in range(12)]
    finally:
        algo.stop()
    print(f"RLlib ActionMaskingTorchRLModule last iterations {np.round(returns[-3:], 4)} vs random legal "
          f"{random_legal_return:.4f}")
    assert np.mean(returns[-2:]) > MARGIN * random_legal_return, (returns, random_legal_return)
