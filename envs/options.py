"""The options ``gym.make("AdSim-v0", **kwargs)`` accepts, shared by the single env and the vector env.

Every option is checked when the env is made (``EnvOptions.__post_init__``), so a typo fails at ``gym.make`` with
an ``AdSimOptionError`` naming the option, not mid-episode (or as NaN rewards). What needs the bundle (a
``reward_source="truth"`` on imported logs, which have no truth) is checked by the env once it is opened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Literal

from adsim.errors import AdSimOptionError
from adsim.simulator.kernels import BACKENDS, Backend
from adsim.simulator.simulator import POPULARITIES, Popularity

IllegalAction = Literal["terminate", "raise"]
SPLITS = ("train", "valid", "test")
REWARDS = ("final_value", "ecpm")
REWARD_SOURCES = ("model", "truth")
ILLEGAL_ACTIONS = ("terminate", "raise")


@dataclass(frozen=True)
class EnvOptions:
    """Everything ``gym.make("AdSim-v0", **kwargs)`` accepts (see AdSimEnv's Arguments)."""

    scenario: str = "small"
    world_seed: int = 0
    """The seed of a preset's world (``scenario="tiny"``): another value is another world, built on first use.
    Episodes are seeded by ``reset(seed=...)``, as in every Gymnasium env."""
    split: str = "train"
    arr_ratio: float = 0.0
    process_rewards: bool = False
    process_alphas: tuple[float, ...] = (0.2, 0.1)
    process_popularity: Popularity = "prefix"
    """P_l(t | z_<l) read under the path's prefix (GPR), or ``"unconditional"`` (see ProcessRewardConfig)."""
    reward: Literal["final_value", "ecpm"] = "final_value"
    reward_scale: float | None = None
    reward_source: Literal["model", "truth"] = "model"
    illegal_action: IllegalAction = "terminate"
    illegal_penalty: float = -1.0
    backend: Backend = "compiled"
    """``compiled``: kernels for every reset and step; ``reference``: the numpy definition (same episodes)."""

    def __post_init__(self):
        _choice("split", self.split, SPLITS)
        _choice("reward", self.reward, REWARDS)
        _choice("reward_source", self.reward_source, REWARD_SOURCES)
        _choice("illegal_action", self.illegal_action, ILLEGAL_ACTIONS)
        _choice("backend", self.backend, BACKENDS)
        _choice("process_popularity", self.process_popularity, POPULARITIES)
        if not isinstance(self.scenario, str) and not hasattr(self.scenario, "__fspath__"):
            raise AdSimOptionError(f"must be a bundle path or a preset name, got {self.scenario!r}", option="scenario")
        if isinstance(self.world_seed, bool) or not isinstance(self.world_seed, Integral) or self.world_seed < 0:
            raise AdSimOptionError(f"must be a non-negative integer, got {self.world_seed!r}", option="world_seed")
        if not _real(self.arr_ratio) or not 0.0 <= self.arr_ratio <= 1.0:
            raise AdSimOptionError(f"must be a number in [0, 1] (the share of synthetic requests), got "
                                   f"{self.arr_ratio!r}", option="arr_ratio")
        if not isinstance(self.process_rewards, bool):
            raise AdSimOptionError(f"must be true or false, got {self.process_rewards!r}", option="process_rewards")
        alphas = self.process_alphas
        if isinstance(alphas, str | bytes) or not hasattr(alphas, "__iter__") or not all(
                _real(a) and a >= 0 for a in alphas):
            raise AdSimOptionError(f"must be a sequence of finite numbers >= 0 (one per level before the last), got "
                                   f"{alphas!r}", option="process_alphas")
        object.__setattr__(self, "process_alphas", tuple(float(a) for a in alphas))
        if self.reward_scale is not None and (not _real(self.reward_scale) or self.reward_scale <= 0):
            raise AdSimOptionError(f"must be a finite number > 0, or None for 1 / mean logged final_value; got "
                                   f"{self.reward_scale!r}", option="reward_scale")
        if not _real(self.illegal_penalty):
            raise AdSimOptionError(f"must be a finite number, got {self.illegal_penalty!r}", option="illegal_penalty")


def env_options(kwargs: dict[str, Any]) -> EnvOptions:
    """``EnvOptions(**kwargs)``, with Gymnasium's usual mistakes explained: ``seed=`` (the world seed is
    ``world_seed``; episodes are seeded by ``reset(seed=)``) and unknown options (the known ones listed)."""
    if "seed" in kwargs:
        raise AdSimOptionError("AdSim-v0 takes no seed at construction: seed episodes with env.reset(seed=...); "
                               "to pick another world of a preset, pass world_seed=...", option="seed")
    known = EnvOptions.__dataclass_fields__
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise UnknownOptionError(f"unexpected keyword argument {unknown[0]!r}; AdSim-v0 accepts {sorted(known)} "
                                 "(and render_mode, context)", option=unknown[0])
    return EnvOptions(**kwargs)


class UnknownOptionError(AdSimOptionError, TypeError):
    """An option AdSim-v0 does not have. Also a ``TypeError`` worded as Python's own, so clients that probe
    keyword arguments (TorchRL's ``GymEnv`` tries ``frameskip``) recognise it. Constructible from a message
    alone, as ``gym.make`` re-raises a creator's ``TypeError`` with the env id added."""

    def __init__(self, message: str, *, option: str | None = None):
        if option is None:
            TypeError.__init__(self, message)
            self.option, self.detail = None, message
        else:
            super().__init__(message, option=option)


def _real(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _choice(option: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise AdSimOptionError(f"must be one of {list(choices)}, got {value!r}", option=option)
