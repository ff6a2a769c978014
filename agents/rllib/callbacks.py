"""RLlib callbacks: report each episode's final_value, a metric that does not move with reward shaping."""

from __future__ import annotations

from typing import Any

from ray.rllib.callbacks.callbacks import RLlibCallback

FINAL_VALUE_METRIC = "final_value"
"""Reported by the EnvRunners as ``env_runners/final_value``: the mean final_value (unscaled, reward models or
truth as the env's ``reward_source`` says) of the ads resolved by the episodes of the iteration. Returns
(``episode_return_mean``) also carry process rewards when they are on, so sweeps select on this instead."""


class FinalValueCallback(RLlibCallback):
    """Logs ``info["final_value"]`` of every finished episode (0 for an episode ended by an illegal action)."""

    def on_episode_end(self, *, episode: Any, metrics_logger: Any = None, **kwargs: Any) -> None:
        if metrics_logger is None:
            return
        info = episode.get_infos(-1) or {}
        metrics_logger.log_value(FINAL_VALUE_METRIC, float(info.get("final_value", 0.0)), reduce="mean")
