"""AdSim-v0 for Ray: env creators that work in the driver, in remote EnvRunners and in Tune trial actors.

Ray workers do not see the driver's Gymnasium registry nor its in-process simulator contexts, so everything an
env needs travels in ``env_config``. Two names are registered:

* ``"AdSim-v0"`` (``envs.registration.register_rllib``): ``AdSimEnv(**env_config)``, the bundle's own reward
  models. The normal case.
* ``"AdSim-v0-scored"``: the same env, but ``env_config["scorer_factory"]`` (a picklable callable
  ``Scenario -> Scorer``, or its ``"module:name"`` import path) replaces the bundle's reward models for both
  reward sources. For fakes in tests, and for
  bundles whose reward models live elsewhere. The context is cached per worker process, so the envs of one
  EnvRunner share one scenario in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from envs.adsim_env import AdSimEnv
from envs.context import SimulatorContext, open_context
from envs.options import env_options
from envs.registration import ENV_ID

SCORED_ENV_ID = "AdSim-v0-scored"
SCORER_FACTORY = "scorer_factory"

_FACTORY_CONTEXTS: dict[tuple, SimulatorContext] = {}


def split_env_config(env_config: Mapping[str, Any]) -> tuple[dict[str, Any], Callable | None]:
    """``AdSimEnv`` keyword arguments and the optional scorer factory of an ``env_config`` (an RLlib EnvContext
    is a dict with extra attributes; only its items matter)."""
    kwargs = dict(env_config)
    return kwargs, kwargs.pop(SCORER_FACTORY, None)


def open_env_context(env_config: Mapping[str, Any]) -> tuple[SimulatorContext, dict[str, Any]]:
    """The simulator context an ``env_config`` describes, and the remaining ``AdSimEnv`` keyword arguments."""
    kwargs, factory = split_env_config(env_config)
    if isinstance(factory, str):
        factory = import_object(factory)
    options = env_options({k: v for k, v in kwargs.items() if k != "render_mode"})
    if factory is None:
        return open_context(options.scenario, options.world_seed, options.split, options.process_alphas,
                            process_popularity=options.process_popularity), kwargs
    key = (str(options.scenario), options.world_seed, options.split, tuple(options.process_alphas),
           options.process_popularity,
           getattr(factory, "__module__", ""), getattr(factory, "__qualname__", repr(factory)))
    if key not in _FACTORY_CONTEXTS:
        from reward_models.pipeline import ensure_scenario

        scorer = factory(ensure_scenario(options.scenario, seed=options.world_seed))
        _FACTORY_CONTEXTS[key] = open_context(options.scenario, options.world_seed, options.split,
                                              options.process_alphas, scorer=scorer, truth=scorer,
                                              process_popularity=options.process_popularity)
    return _FACTORY_CONTEXTS[key], kwargs


def import_object(spec: str) -> Any:
    """``"package.module:name"`` -> the object."""
    import importlib

    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"expected 'module:name', got {spec!r}")
    return getattr(importlib.import_module(module), name)


def create_env(env_config: Mapping[str, Any]) -> AdSimEnv:
    """Env creator for ``"AdSim-v0-scored"`` (accepts plain configs too)."""
    ctx, kwargs = open_env_context(env_config)
    return AdSimEnv(context=ctx, **kwargs)


def env_id_for(env_config: Mapping[str, Any]) -> str:
    """The registered name that can build ``env_config`` in any Ray worker."""
    return SCORED_ENV_ID if env_config.get(SCORER_FACTORY) is not None else ENV_ID


def register_envs() -> None:
    """Idempotent: register both names with Ray Tune's registry (seen by every worker of the job)."""
    from ray.tune.registry import register_env

    from envs.registration import register_rllib

    register_rllib()
    register_env(SCORED_ENV_ID, create_env)
