"""RLlib baselines on AdSim-v0: a masked actor-critic RLModule, a ready PPOConfig, env creators for remote
workers, and the trained module as a decoder or as MCTS-PPO's prior/value function.

Names are imported on first use, so ``agents.rllib.env`` (needed by every Ray worker) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AdSimModuleConfig": "agents.rllib.module",
    "AdSimTorchRLModule": "agents.rllib.module",
    "FinalValueCallback": "agents.rllib.callbacks",
    "ModulePolicy": "agents.rllib.policy",
    "SCORED_ENV_ID": "agents.rllib.env",
    "build_algo": "agents.rllib.config",
    "check_config": "agents.rllib.config",
    "create_env": "agents.rllib.env",
    "load_module": "agents.rllib.policy",
    "module_spec": "agents.rllib.module",
    "open_env_context": "agents.rllib.env",
    "ppo_config": "agents.rllib.config",
    "ray_session": "agents.rllib.session",
    "register_envs": "agents.rllib.env",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'agents.rllib' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
