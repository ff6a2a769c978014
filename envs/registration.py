"""RLlib's side of registration (the Gymnasium registry is per process and unseen by Ray workers).

The Gymnasium registration itself lives in ``adsim.registration`` (entry-point strings, run by ``import adsim``).
"""

from __future__ import annotations

from adsim.registration import ENV_ID, FLAT_ENV_ID, MARKET_ENV_ID, register_envs

__all__ = ["ENV_ID", "FLAT_ENV_ID", "MARKET_ENV_ID", "register_envs", "register_rllib"]


def _create(env_config):
    from envs.adsim_env import AdSimEnv

    return AdSimEnv(**dict(env_config))


def _create_flat(env_config):
    from envs.flat import AdSimFlatEnv

    return AdSimFlatEnv(**dict(env_config))


def _create_market(env_config):
    from envs.market_env import AdSimMarketEnv

    return AdSimMarketEnv(**dict(env_config))


def register_rllib() -> None:
    """Make ``"AdSim-v0"``, ``"AdSimFlat-v0"`` and ``"AdSimMarket-v0"`` known to Ray Tune / RLlib workers."""
    from ray.tune.registry import register_env

    register_env(ENV_ID, _create)
    register_env(FLAT_ENV_ID, _create_flat)
    register_env(MARKET_ENV_ID, _create_market)
