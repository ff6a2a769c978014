"""Registration of AdSim-v0 with Gymnasium (and, when Ray is present, with RLlib's env registry)."""

from __future__ import annotations

ENV_ID = "AdSim-v0"


def register_envs() -> None:
    """Idempotent. Enables ``gym.make("AdSim-v0")`` and
    ``gym.make_vec("AdSim-v0", num_envs, vectorization_mode="vector_entry_point")``."""
    import gymnasium as gym

    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="envs.adsim_env:AdSimEnv",
                     vector_entry_point="envs.vector_env:AdSimVectorEnv", disable_env_checker=False)


def register_rllib() -> None:
    """Make ``"AdSim-v0"`` known to Ray Tune / RLlib workers (the Gymnasium registry is per process)."""
    from ray.tune.registry import register_env

    def create(env_config):
        from envs.adsim_env import AdSimEnv

        return AdSimEnv(**dict(env_config))

    register_env(ENV_ID, create)
