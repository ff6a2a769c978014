"""MCTS as a Ray Tune trainable that reports RLlib's metric names, so one sweep can rank PPO and MCTS together.

Each ``step`` draws ``requests_per_iteration`` requests from the env's split (with the env's ARR ratio and its own
seeded RNG), searches them and reports, as an RLlib PPO iteration would:

* ``env_runners/episode_return_mean`` (and ``_min``/``_max``): the chosen paths' rewards in the env's units
  (final_value x the env's reward scale; MCTS optimises final value only, so no process rewards),
* ``env_runners/final_value``: their mean unscaled final_value (as ``FinalValueCallback`` reports for PPO),
* ``env_runners/episode_len_mean``, ``env_runners/num_episodes``, ``env_runners/num_env_steps_sampled_lifetime``,
* ``mcts/decisions_per_s``, ``mcts/paths_scored_mean`` and ``mcts/simulator_pairs`` (the simulator budget spent).

Config keys: ``env_config`` (as for PPO, ``scorer_factory`` included), ``requests_per_iteration`` (default 64),
``seed``, and any ``MCTSConfig`` field (``num_simulations``, ``exploration``, ...).
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
from ray import tune

from agents.mcts.search import MCTS, MCTSConfig
from agents.rllib.env import open_env_context
from envs.adsim_env import EnvOptions

_MCTS_FIELDS = {f.name for f in fields(MCTSConfig)}


class MCTSTrainable(tune.Trainable):
    def setup(self, config: dict[str, Any]) -> None:
        self.ctx, kwargs = open_env_context(config.get("env_config", {}))
        self.options = EnvOptions(**{k: v for k, v in kwargs.items() if k != "render_mode"})
        seed = int(config.get("seed", 0))
        search = {k: v for k, v in config.items() if k in _MCTS_FIELDS}
        search.setdefault("seed", seed)
        search.setdefault("reward_source", self.options.reward_source)
        search.setdefault("reward", self.options.reward)
        self.scale = self.ctx.reward_scale(self.options.reward_scale)
        self.mcts = MCTS(self.ctx.simulator, MCTSConfig(**search))
        self.requests_per_iteration = int(config.get("requests_per_iteration", 64))
        self.rng = np.random.default_rng(seed)
        self.episodes = 0

    def step(self) -> dict[str, Any]:
        requests = self.ctx.draw_requests(self.rng, self.requests_per_iteration, self.options.arr_ratio)
        calls = self.ctx.simulator.calls
        result = self.mcts.search(requests)
        reward = result.value  # final_value (or eCPM) x 1: the search ran with value_scale 1
        self.episodes += len(reward)
        depth = self.ctx.simulator.depth
        return {
            "env_runners/episode_return_mean": float(np.mean(reward) * self.scale),
            "env_runners/episode_return_min": float(np.min(reward) * self.scale),
            "env_runners/episode_return_max": float(np.max(reward) * self.scale),
            "env_runners/final_value": float(np.mean(reward)),
            "env_runners/episode_len_mean": float(depth),
            "env_runners/num_episodes": len(reward),
            "env_runners/num_env_steps_sampled_lifetime": self.episodes * depth,
            "mcts/decisions_per_s": len(reward) * depth / max(result.seconds, 1e-9),
            "mcts/paths_scored_mean": float(result.n_scored.mean()),
            "mcts/simulator_pairs": self.ctx.simulator.calls - calls,
        }

    def save_checkpoint(self, checkpoint_dir: str) -> dict | None:
        state = {"rng": self.rng.bit_generator.state, "mcts_rng": self.mcts.rng.bit_generator.state,
                 "episodes": self.episodes}
        (Path(checkpoint_dir) / "mcts_state.json").write_text(json.dumps(state))
        return None

    def load_checkpoint(self, checkpoint: str | dict | None) -> None:
        state = json.loads((Path(checkpoint) / "mcts_state.json").read_text())
        self.rng.bit_generator.state = state["rng"]
        self.mcts.rng.bit_generator.state = state["mcts_rng"]
        self.episodes = state["episodes"]
