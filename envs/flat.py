"""AdSimFlat-v0: AdSim-v0 with its observation as ``Dict{"observations": Box, "action_mask": Box}``.

The shape RLlib's own masking example module (``ActionMaskingTorchRLModule``) and most "flat obs + mask" clients
expect: every feature of AdSim-v0's observation scaled into [0, 1] and concatenated into one float32 vector, the
legal mask kept apart as float32 0/1. Same episodes, rewards and info as AdSim-v0 (it wraps one).

| part | length | encoding |
|---|---|---|
| user | 5 | value / the feature's maximum |
| context | 6 | value / the feature's maximum |
| level | L | one-hot of the level to choose now |
| prefix | L x W | one-hot of the code chosen at each level (all zero while open) |
| history_codes | H x L | (code + 1) / W, 0 for padding |
| history_type | H | type / 6 |
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.adsim_env import AdSimEnv

FLAT_ENV_ID = "AdSimFlat-v0"


class FlatObservation(gym.ObservationWrapper):
    """AdSim-v0's observation as one [0, 1] float32 vector plus the float32 action mask (see the module)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        base = env.unwrapped
        if not isinstance(base, AdSimEnv):
            raise TypeError(f"FlatObservation wraps AdSim-v0 (an AdSimEnv), got {type(base).__name__}")
        self.depth, self.width = base.depth, base.width
        space = base.observation_space
        self._user_high = space["user"].high.astype(np.float32)
        self._context_high = np.maximum(space["context"].high, 1).astype(np.float32)
        h = space["history_type"].shape[0]
        size = 5 + 6 + self.depth + self.depth * self.width + h * self.depth + h
        self.observation_space = spaces.Dict({
            "observations": spaces.Box(0.0, 1.0, (size,), np.float32),
            "action_mask": spaces.Box(0.0, 1.0, (self.width,), np.float32),
        })

    def observation(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        level = np.zeros(self.depth, dtype=np.float32)
        level[int(obs["level"][0])] = 1.0
        prefix = np.zeros((self.depth, self.width), dtype=np.float32)
        chosen = np.flatnonzero(obs["prefix"] >= 0)
        prefix[chosen, obs["prefix"][chosen]] = 1.0
        flat = np.concatenate([
            obs["user"] / self._user_high, obs["context"] / self._context_high, level, prefix.ravel(),
            (obs["history_codes"].ravel() + 1) / self.width, obs["history_type"] / 6.0,
        ]).astype(np.float32)
        return {"observations": np.clip(flat, 0.0, 1.0), "action_mask": obs["action_mask"].astype(np.float32)}

    def action_masks(self) -> np.ndarray:
        """(W,) bool: the codes legal now (sb3-contrib's MaskablePPO)."""
        return self.env.unwrapped.action_masks()


class AdSimFlatEnv(FlatObservation):
    """``AdSimFlat-v0``: ``FlatObservation(AdSimEnv(**kwargs))``; accepts AdSim-v0's arguments."""

    metadata = AdSimEnv.metadata
    """A class attribute (``gym.make`` reads it before building the env), not the wrapper's forwarding property."""

    def __init__(self, render_mode: str | None = None, **kwargs: Any):
        super().__init__(AdSimEnv(render_mode=render_mode, **kwargs))
