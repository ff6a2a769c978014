"""Gymnasium environments over the adsim simulator. Importing this package registers ``AdSim-v0``."""

from envs.adsim_env import AdSimEnv
from envs.registration import register_envs
from envs.vector_env import AdSimVectorEnv

register_envs()

__all__ = ["AdSimEnv", "AdSimVectorEnv", "register_envs"]
