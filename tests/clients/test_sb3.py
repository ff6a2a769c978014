"""Stable-Baselines3: sb3-contrib's MaskablePPO learns on tiny through the env's ``action_masks()``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from envs.adsim_env import AdSimEnv
from envs.flat import FlatObservation

sb3_contrib = pytest.importorskip("sb3_contrib")

MARGIN = 2.0
"""The trained policy's mean return must be at least this multiple of random legal play's."""


def test_env_and_vector_env_expose_action_masks(env_fixture):
    from envs.vector_env import AdSimVectorEnv

    env = AdSimEnv(**env_fixture.kwargs())
    obs, _ = env.reset(seed=0)
    assert env.action_masks().dtype == bool and np.array_equal(env.action_masks(), obs["action_mask"] == 1)
    vec = AdSimVectorEnv(3, **env_fixture.kwargs())
    obs, _ = vec.reset(seed=0)
    assert vec.action_masks().shape == (3, env.width) and np.array_equal(vec.action_masks(), obs["action_mask"] == 1)


def test_maskable_ppo_beats_random_legal(env_fixture, random_legal_return):
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.utils import get_action_masks
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)
    venv = make_vec_env(lambda: FlatObservation(AdSimEnv(**env_fixture.kwargs())), n_envs=4, seed=0)
    model = MaskablePPO("MultiInputPolicy", venv, n_steps=128, batch_size=128, n_epochs=4, gamma=1.0,
                        learning_rate=3e-3, ent_coef=0.0, seed=0, device="cpu", verbose=0)
    model.learn(total_timesteps=10_000)

    env = FlatObservation(AdSimEnv(**env_fixture.kwargs()))
    total, (obs, _) = 0.0, env.reset(seed=123)
    for _ in range(500):
        done = False
        while not done:
            action, _ = model.predict(obs, action_masks=get_action_masks(env), deterministic=True)
            obs, reward, done, _, info = env.step(int(action))
            assert not info["illegal_action"]
            total += reward
        obs, _ = env.reset()
    trained = total / 500
    print(f"MaskablePPO {trained:.4f} vs random legal {random_legal_return:.4f}")
    assert trained > MARGIN * random_legal_return, (trained, random_legal_return)
