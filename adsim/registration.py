"""Registration of AdSim-v0 (and its variants) with Gymnasium, by entry-point strings: the core never imports ``envs``.

``import adsim`` (or ``import envs``) calls ``register_envs``; Gymnasium imports ``envs`` only when an env is made,
so ``gym.make("AdSim-v0")`` and ``gym.make("adsim:AdSim-v0")`` both work and a broken ``envs`` fails loudly there.
"""

from __future__ import annotations

ENV_ID = "AdSim-v0"
FLAT_ENV_ID = "AdSimFlat-v0"
"""AdSim-v0 with ``Dict{"observations": Box, "action_mask": Box}`` observations (``envs.flat``), for RLlib's
masking example module and other flat-observation clients."""
MARKET_ENV_ID = "AdSimMarket-v0"
"""Market mode (``envs.market_env``): a day of requests in time order, the policy's wins spending the budgets."""


def register_envs() -> None:
    """Idempotent. Enables ``gym.make("AdSim-v0")``, ``gym.make("AdSimFlat-v0")``, ``gym.make("AdSimMarket-v0")`` and
    ``gym.make_vec("AdSim-v0", num_envs, vectorization_mode="vector_entry_point")``."""
    import gymnasium as gym

    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="envs.adsim_env:AdSimEnv",
                     vector_entry_point="envs.vector_env:AdSimVectorEnv", disable_env_checker=False)
    if FLAT_ENV_ID not in gym.registry:
        gym.register(id=FLAT_ENV_ID, entry_point="envs.flat:AdSimFlatEnv", disable_env_checker=False)
    if MARKET_ENV_ID not in gym.registry:
        gym.register(id=MARKET_ENV_ID, entry_point="envs.market_env:AdSimMarketEnv", disable_env_checker=False)
