"""A batch of AdSim episodes as arrays: the one implementation behind the single env and the vector env."""

from __future__ import annotations

from typing import Any

import numpy as np

from adsim.simulator.requests import REQUEST_COLUMNS, RequestBatch, take
from envs.context import SimulatorContext

INFO_KEYS = ("ad_id", "pctr", "pcvr", "ecpm", "final_value")
_STATE_ARRAYS = ("allowed", "sums", "prefix", "mask", "done")


class EpisodeBatch:
    """N episodes in flight: their requests, eligibility, chosen prefixes and legal masks."""

    def __init__(self, ctx: SimulatorContext, options: Any, n: int):
        self.ctx, self.options, self.n = ctx, options, n
        sim = ctx.simulator
        self.depth, self.width, self.n_ads = sim.depth, sim.trie.width, sim.trie.n_items
        self.requests = take(ctx.requests.logged, np.zeros(n, dtype=np.int64))
        self.allowed = np.zeros((n, self.n_ads), dtype=bool)
        self.sums = np.zeros((n, self.n_ads + 1), dtype=np.int32)
        self.prefix = np.full((n, self.depth), -1, dtype=np.int64)
        self.mask = np.zeros((n, self.width), dtype=bool)
        self.done = np.ones(n, dtype=bool)
        self.features = ctx.observations.build(self.requests)
        self.scale = ctx.reward_scale(options.reward_scale)

    @property
    def level(self) -> np.ndarray:
        return (self.prefix >= 0).sum(axis=1)

    def start(self, rows: np.ndarray, requests: RequestBatch) -> None:
        """Begin new episodes in ``rows`` with ``requests`` (one each)."""
        rows = np.asarray(rows)
        if len(rows) == 0:
            return
        for col in REQUEST_COLUMNS:
            self.requests[col][rows] = requests[col]
        sim = self.ctx.simulator
        self.allowed[rows] = sim.allowed(requests)
        self.sums[rows] = sim.trie.allowed_prefix_sums(self.allowed[rows])
        for key, value in self.ctx.observations.build(requests).items():
            self.features[key][rows] = value
        self.prefix[rows] = -1
        self.done[rows] = False
        self._refresh_masks(rows)

    def _refresh_masks(self, rows: np.ndarray) -> None:
        trie, level = self.ctx.simulator.trie, self.level
        for d in np.unique(level[rows]):
            sel = rows[level[rows] == d]
            if d < self.depth:
                self.mask[sel] = trie.legal_mask(self.prefix[sel, :d], self.sums[sel])
            else:
                self.mask[sel] = False

    def step(self, rows: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Apply ``actions`` to episodes ``rows``; returns rewards, terminated and info arrays (all length n)."""
        rows, actions = np.asarray(rows), np.asarray(actions, dtype=np.int64)
        reward = np.zeros(self.n)
        terminated = np.zeros(self.n, dtype=bool)
        info = {key: np.zeros(self.n) for key in INFO_KEYS}
        info["ad_id"] = np.full(self.n, -1, dtype=np.int64)
        info["illegal_action"] = np.zeros(self.n, dtype=bool)
        if len(rows) == 0:
            return reward, terminated, info
        level = self.level[rows]
        legal = self.mask[rows, actions]
        bad = rows[~legal]
        reward[bad], terminated[bad], info["illegal_action"][bad] = self.options.illegal_penalty, True, True
        rows, actions, level = rows[legal], actions[legal], level[legal]
        self.prefix[rows, level] = actions

        last = rows[level == self.depth - 1]
        if len(last):
            requests = take(self.requests, last)
            ev = self.ctx.simulator.evaluate(requests, self.prefix[last][:, None, :], self.options.reward_source,
                                             allowed=self.allowed[last])
            for key in INFO_KEYS:
                info[key][last] = getattr(ev, key)[:, 0]
            reward[last] = info[self.options.reward][last] * self.scale
            terminated[last] = True
        middle = rows[level < self.depth - 1]
        if len(middle) and self.options.process_rewards:
            requests = take(self.requests, middle)
            pr = self.ctx.simulator.process_rewards(requests, self.prefix[middle][:, None, :],
                                                    allowed=self.allowed[middle])
            reward[middle] = pr[np.arange(len(middle)), 0, level[level < self.depth - 1]] * self.ctx.process_scale
        self.done[terminated] = True
        self._refresh_masks(middle)
        self.mask[terminated] = False
        return reward, terminated, info

    def observation(self) -> dict[str, np.ndarray]:
        return {
            "user": self.features["user"].copy(),
            "context": self.features["context"].copy(),
            "history_codes": self.features["history_codes"].copy(),
            "history_type": self.features["history_type"].copy(),
            "prefix": self.prefix.copy(),
            "level": np.minimum(self.level, self.depth - 1)[:, None].astype(np.int64),
            "action_mask": self.mask.astype(np.int8),
        }

    def get_state(self) -> dict:
        """A deep copy of every array (planners branch from it)."""
        state = {key: getattr(self, key).copy() for key in _STATE_ARRAYS}
        state["requests"] = {k: v.copy() for k, v in self.requests.items()}
        state["features"] = {k: v.copy() for k, v in self.features.items()}
        return state

    def set_state(self, state: dict) -> None:
        for key in _STATE_ARRAYS:
            setattr(self, key, state[key].copy())
        self.requests = {k: v.copy() for k, v in state["requests"].items()}
        self.features = {k: v.copy() for k, v in state["features"].items()}
