"""PPO on AdSim-v0 with RLlib: one function returning a ready PPOConfig with CPU-friendly, seeded defaults."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.ppo import PPOConfig

from adsim.errors import AdSimError
from agents.rllib.callbacks import FinalValueCallback
from agents.rllib.env import env_id_for, register_envs
from agents.rllib.module import module_spec


def ppo_config(
    env_config: Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    num_env_runners: int = 0,
    num_envs_per_env_runner: int = 8,
    num_learners: int = 0,
    num_gpus_per_learner: float = 0,
    lr: float = 3e-4,
    entropy_coeff: float = 0.01,
    train_batch_size: int = 512,
    minibatch_size: int = 128,
    num_epochs: int = 2,
    gamma: float = 1.0,
    lambda_: float = 0.95,
    model: Mapping[str, Any] | None = None,
    restart_failed_env_runners: bool = True,
    max_num_env_runner_restarts: int = 100,
    delay_between_env_runner_restarts_s: float = 1.0,
    **training: Any,
) -> PPOConfig:
    """PPO with ``AdSimTorchRLModule`` on AdSim-v0.

    Args:
        env_config: ``AdSimEnv`` keyword arguments, passed through to every env in every worker (plus an optional
            ``scorer_factory``, see ``agents.rllib.env``). Default: the ``small`` preset.
        seed: seeds RLlib (``.debugging(seed=...)``), hence every EnvRunner's envs and the module's weights.
        num_env_runners: remote EnvRunner actors; 0 samples in the driver (or Tune trial) process, the fastest
            choice on a laptop. Raise it, and ``num_learners``, to scale out on a cluster unchanged.
        num_envs_per_env_runner: envs stepped together by each EnvRunner (one batched forward pass).
        num_learners / num_gpus_per_learner: remote Learner actors (0: learn in the driver).
        lr, entropy_coeff, train_batch_size (per learner), minibatch_size, num_epochs, gamma, lambda_: PPO
            hyper-parameters. An episode is L decisions with the reward at the end, so ``gamma`` defaults to 1.
        model: ``AdSimModuleConfig`` fields (``embed_dim``, ``hidden``).
        restart_failed_env_runners, max_num_env_runner_restarts, delay_between_env_runner_restarts_s: fault
            tolerance; a crashed EnvRunner is replaced by an identical copy and training goes on.
        **training: any other ``PPOConfig.training`` argument (``clip_param``, ``vf_loss_coeff``, ...).
    """
    register_envs()
    env_config = dict(env_config if env_config is not None else {"scenario": "small"})
    return (
        PPOConfig()
        .environment(env_id_for(env_config), env_config=env_config)
        .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=num_envs_per_env_runner,
                     num_cpus_per_env_runner=1)
        .learners(num_learners=num_learners, num_gpus_per_learner=num_gpus_per_learner)
        .rl_module(rl_module_spec=module_spec(**dict(model or {})))
        .training(lr=lr, entropy_coeff=entropy_coeff, train_batch_size_per_learner=train_batch_size,
                  minibatch_size=minibatch_size, num_epochs=num_epochs, gamma=gamma, lambda_=lambda_, **training)
        .fault_tolerance(restart_failed_env_runners=restart_failed_env_runners,
                         max_num_env_runner_restarts=max_num_env_runner_restarts,
                         delay_between_env_runner_restarts_s=delay_between_env_runner_restarts_s)
        .callbacks(FinalValueCallback)
        .debugging(seed=seed)
    )


NO_ENCODER_HINT = (
    "AdSim-v0's observation is a Dict of user, context, history, prefix, level and action_mask, which RLlib's "
    "default encoder does not take (and RLlib's FlattenObservations would drop the mask's meaning). Either use the "
    "project's masked module: agents.rllib.ppo_config(env_config) (AdSimTorchRLModule), or the flat variant "
    "'adsim:AdSimFlat-v0' (Dict{'observations': Box, 'action_mask': Box}) with RLlib's example module "
    "ray.rllib.examples.rl_modules.classes.action_masking_rlm.ActionMaskingTorchRLModule."
)


def check_config(config: PPOConfig) -> None:
    """Refuse, with the way out, an RLlib config that would meet AdSim-v0's Dict observation with RLlib's default
    module (which fails deep in the catalog with "No default encoder config for obs space")."""
    env = str(config.env or "")
    if env.rpartition(":")[2] not in ("AdSim-v0", "AdSim-v0-scored"):
        return
    spec = config._rl_module_spec
    if spec is None or getattr(spec, "module_class", None) is None:
        raise AdSimError(f"env {env!r} with RLlib's default RLModule: {NO_ENCODER_HINT}")


def build_algo(config: PPOConfig, logdir: str | Path) -> Algorithm:
    """``config.build_algo()`` with the Algorithm's log directory under ``logdir`` instead of ``~/ray_results``.

    Outside Tune, RLlib 2.60 always creates its Trainable log directory under the module constant
    ``ray.tune.trainable.trainable.DEFAULT_STORAGE_PATH`` and offers no argument for it; this points that constant
    at ``logdir`` for the duration of the build (not thread-safe, like any such switch). A config RLlib's default
    module cannot serve on AdSim-v0 is refused first (``check_config``).
    """
    import ray.tune.trainable.trainable as trainable

    check_config(config)
    Path(logdir).mkdir(parents=True, exist_ok=True)
    saved = trainable.DEFAULT_STORAGE_PATH
    trainable.DEFAULT_STORAGE_PATH = str(Path(logdir).resolve())
    try:
        return config.build_algo()
    finally:
        trainable.DEFAULT_STORAGE_PATH = saved
