"""A masked env with AdSim-v0's spaces that does next to nothing per step: the reference an RLlib iteration on
AdSim-v0 is timed against (``benchmarks.env_throughput``'s ``rllib`` table).

An episode is ``depth`` steps, as on AdSim-v0, with the reward (a constant) and ``info["final_value"]`` on the last
one. Observations are precomputed members of the observation space (a few per level, each with some legal codes;
the terminal one with none), returned as they are: a step is a counter increment and a dict lookup. Actions are not
checked. So an iteration on this env costs what RLlib, the module and the learner cost, and nothing else.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

VARIANTS = 16
"""Precomputed observations per level (episodes cycle through them)."""


class TrivialMaskedEnv(gym.Env):
    """``env_config``: ``observation_space`` and ``action_space`` (AdSim-v0's), ``depth`` (steps per episode)."""

    def __init__(self, env_config: dict[str, Any] | None = None):
        config = dict(env_config or {})
        self.observation_space: gym.spaces.Dict = config["observation_space"]
        self.action_space: gym.spaces.Discrete = config["action_space"]
        self.depth = int(config["depth"])
        rng = np.random.default_rng(int(config.get("seed", 0)))
        self.observation_space.seed(int(rng.integers(2**31)))
        width = int(self.action_space.n)
        self._obs = [[self._observation(level, width, rng) for _ in range(VARIANTS)] for level in range(self.depth)]
        self._terminal = self._observation(self.depth - 1, width, rng, legal=0)
        self._level, self._variant = 0, 0

    def _observation(self, level: int, width: int, rng: np.random.Generator, legal: int | None = None) -> dict:
        obs = self.observation_space.sample()
        mask = np.zeros(width, dtype=np.int8)
        n = int(rng.integers(1, width + 1)) if legal is None else legal
        mask[rng.choice(width, size=n, replace=False)] = 1
        obs["action_mask"] = mask
        obs["level"] = np.array([level], dtype=np.int64)
        prefix = np.full(self.depth, -1, dtype=np.int64)
        prefix[:level] = rng.integers(0, width, size=level)
        obs["prefix"] = prefix
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._level, self._variant = 0, (self._variant + 1) % VARIANTS
        return self._obs[0][self._variant], {}

    def step(self, action):
        self._level += 1
        if self._level >= self.depth:
            return self._terminal, 1.0, True, False, {"final_value": 1.0}
        return self._obs[self._level][self._variant], 0.0, False, False, {}
