"""Shared by the importer tests: an imported bundle must open as AdSim-v0 and pass Gymnasium's checker."""

from __future__ import annotations

import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers AdSim-v0)


@pytest.fixture
def checked_env():
    """``checked_env(bundle)``: AdSim-v0 on ``bundle`` after check_env passed without a warning."""

    def make(bundle):
        env = gym.make("AdSim-v0", scenario=str(bundle))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env.unwrapped, skip_render_check=True)
        assert [str(w.message) for w in caught] == []
        return env

    return make
