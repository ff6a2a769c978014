"""A native vector env: N AdSim episodes stepped together, their final levels scored in one reward-model call."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.adsim_env import AdSimEnv
from envs.context import SimulatorContext, open_context
from envs.episodes import INFO_KEYS, episode_batch
from envs.options import env_options


class AdSimVectorEnv(VectorEnv):
    """``num_envs`` AdSim-v0 episodes as arrays, with Gymnasium 1.x next-step autoreset.

    After an episode terminates, the next ``step`` starts a new request in that slot and ignores its action
    (reward 0, not terminated), as ``AutoresetMode.NEXT_STEP`` prescribes. Accepts AdSimEnv's arguments.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 16, context: SimulatorContext | None = None, **kwargs: Any):
        self.options = env_options(kwargs)
        o = self.options
        self.ctx = context or open_context(o.scenario, o.world_seed, o.split, o.process_alphas,
                                               process_popularity=o.process_popularity)
        self.single = AdSimEnv(context=self.ctx, **kwargs)
        self.num_envs = num_envs
        self.single_observation_space = self.single.observation_space
        self.single_action_space = self.single.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.episodes = episode_batch(self.ctx, self.options, num_envs)
        self._autoreset = np.zeros(num_envs, dtype=bool)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.episodes.restart(np.arange(self.num_envs), self.np_random)
        self._autoreset[:] = False
        return self.episodes.observation(), self._request_info()

    def step(self, actions):
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(f"actions must be an integer array of shape ({self.num_envs},), got "
                             f"{actions.shape} {actions.dtype}")
        if ((actions < 0) | (actions >= self.single.width)).any():
            raise ValueError(f"actions must lie in [0, {self.single.width}), got {actions}")
        restart = np.flatnonzero(self._autoreset)
        active = np.flatnonzero(~self._autoreset)
        reward, terminated, parts = self.episodes.step(active, actions[active])
        self.episodes.restart(restart, self.np_random)
        self._autoreset = terminated.copy()
        info = self._request_info()
        for key in (*INFO_KEYS, "illegal_action"):
            info[key], info[f"_{key}"] = parts[key], terminated.copy()
        return (self.episodes.observation(), reward.astype(np.float64), terminated,
                np.zeros(self.num_envs, dtype=bool), info)

    def action_masks(self) -> np.ndarray:
        """(num_envs, W) bool: each slot's legal codes now (all False in a slot that autoresets next step)."""
        return self.episodes.mask.astype(bool)

    def _request_info(self) -> dict[str, np.ndarray]:
        on = np.ones(self.num_envs, dtype=bool)
        return {"request_id": self.episodes.column("request_id"), "_request_id": on,
                "is_synthetic": self.episodes.column("is_synthetic"), "_is_synthetic": on.copy()}
