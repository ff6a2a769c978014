"""Shared by the client tests: the mean return of random legal play, the baseline every trained client must beat."""

from __future__ import annotations

import numpy as np
import pytest

from envs.adsim_env import AdSimEnv


def mean_return(env: AdSimEnv, act, episodes: int, seed: int) -> float:
    """Mean return of ``act(obs) -> action`` over ``episodes`` episodes of ``env`` (AdSim-v0's own observations),
    the requests drawn from ``reset(seed=seed)`` on."""
    total, (obs, _) = 0.0, env.reset(seed=seed)
    for _ in range(episodes):
        done = False
        while not done:
            obs, reward, done, _, _ = env.step(act(obs))
            total += reward
        obs, _ = env.reset()
    return total / episodes


@pytest.fixture(scope="session")
def random_legal_return(env_fixture) -> float:
    """Mean return of uniformly random legal codes on the tiny env (2,000 episodes, seed 123)."""
    env = AdSimEnv(**env_fixture.kwargs())
    rng = np.random.default_rng(0)
    return mean_return(env, lambda obs: int(rng.choice(np.flatnonzero(obs["action_mask"]))), 2000, 123)
