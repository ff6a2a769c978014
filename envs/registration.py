"""RLlib's side of registration (the Gymnasium registry is per process and unseen by Ray workers).

The Gymnasium registration itself lives in ``adsim.registration`` (entry-point strings, run by ``import adsim``).
"""

from __future__ import annotations

from adsim.registration import ENV_ID, register_envs

__all__ = ["ENV_ID", "register_envs", "register_rllib"]


def register_rllib() -> None:
    """Make ``"AdSim-v0"`` known to Ray Tune / RLlib workers."""
    from ray.tune.registry import register_env

    def create(env_config):
        from envs.adsim_env import AdSimEnv

        return AdSimEnv(**dict(env_config))

    register_env(ENV_ID, create)
