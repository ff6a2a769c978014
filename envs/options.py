"""The options ``gym.make("AdSim-v0", **kwargs)`` accepts, shared by the single env and the vector env."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from adsim.simulator.kernels import Backend, check_backend

IllegalAction = Literal["terminate", "raise"]


@dataclass(frozen=True)
class EnvOptions:
    """Everything ``gym.make("AdSim-v0", **kwargs)`` accepts (see AdSimEnv's Arguments)."""

    scenario: str = "small"
    seed: int = 0
    split: str = "train"
    arr_ratio: float = 0.0
    process_rewards: bool = False
    process_alphas: tuple[float, ...] = (0.2, 0.1)
    reward: Literal["final_value", "ecpm"] = "final_value"
    reward_scale: float | None = None
    reward_source: Literal["model", "truth"] = "model"
    illegal_action: IllegalAction = "terminate"
    illegal_penalty: float = -1.0
    backend: Backend = "compiled"
    """``compiled``: kernels for every reset and step; ``reference``: the numpy definition (same episodes)."""

    def __post_init__(self):
        check_backend(self.backend)
