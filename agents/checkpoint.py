"""The one checkpoint format of every trainer: model, optimizer, configs, step and RNG states, written atomically.

A checkpoint describes itself (``format``, ``version``, the ``trainer`` that wrote it, the model's config next to
its weights), so ``HHD.from_checkpoint`` opens any trainer's file and a resumed run continues exactly: the trainer
restores weights, optimizer moments and every random stream it draws from. ``Checkpoint.save`` writes a temporary
file and renames it, so an interrupted save never leaves a truncated checkpoint behind. Files written before this
module (``agents.hhd.train``'s and ``agents.posttrain.train``'s own layouts) still load.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT, VERSION = "adsim.checkpoint", 1


@dataclass
class Checkpoint:
    trainer: str
    """The module that wrote it (``agents.hhd.train``, ``agents.posttrain.train``)."""
    model: dict[str, torch.Tensor]
    """The model's ``state_dict``."""
    model_config: dict[str, Any]
    """What rebuilds the model (``HHDConfig(**model_config)``)."""
    optimizer: dict[str, Any]
    config: dict[str, Any]
    """The trainer's config as a dict."""
    step: int
    """Completed steps in the trainer's unit (optimizer steps, post-training iterations)."""
    rng: dict[str, Any]
    """``rng_state``'s dict."""
    state: dict[str, Any] = field(default_factory=dict)
    """Whatever else the trainer needs to resume (normalisers, the learning curve so far)."""

    @classmethod
    def of(cls, trainer: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, config: Any, step: int,
           rng: dict[str, Any], **state: Any) -> Checkpoint:
        """A checkpoint of a live run; ``model`` has a dataclass ``config``, ``config`` is the trainer's dataclass."""
        return cls(trainer, model.state_dict(), asdict(model.config), optimizer.state_dict(), asdict(config), step,
                   rng, state)

    def save(self, path: str | Path) -> Path:
        """Write to ``path`` through a temporary file renamed into place."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"format": FORMAT, "version": VERSION, **asdict(self)}, tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
        raw = torch.load(path, map_location=map_location, weights_only=False)
        if not isinstance(raw, dict):
            raise ValueError(f"{path} is not an adsim checkpoint (a {type(raw).__name__}, not a dict)")
        if raw.get("format") == FORMAT:
            if raw["version"] != VERSION:
                raise ValueError(f"{path}: checkpoint version {raw['version']}; this adsim reads version {VERSION}")
            return cls(**{k: v for k, v in raw.items() if k not in ("format", "version")})
        return _legacy(raw, path)

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                numpy_rng: np.random.Generator | None = None, generator: torch.Generator | None = None) -> None:
        """Weights, optimizer state and the random streams back into a run (see ``restore_rng``)."""
        model.load_state_dict(self.model)
        optimizer.load_state_dict(self.optimizer)
        restore_rng(self.rng, numpy_rng, generator)


def rng_state(numpy_rng: np.random.Generator | None = None, generator: torch.Generator | None = None
              ) -> dict[str, Any]:
    """torch's global (and CUDA) RNG states, plus a run's own numpy ``Generator`` and torch ``Generator`` if any."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "numpy": None if numpy_rng is None else numpy_rng.bit_generator.state,
            "generator": None if generator is None else generator.get_state()}


def restore_rng(state: dict[str, Any], numpy_rng: np.random.Generator | None = None,
                generator: torch.Generator | None = None) -> None:
    """Put ``rng_state``'s streams back: the global ones, and into ``numpy_rng`` / ``generator`` when given."""
    torch.set_rng_state(state["torch"].cpu())  # RNG states are CPU tensors, whatever map_location loaded them to
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if numpy_rng is not None:
        numpy_rng.bit_generator.state = _saved(state, "numpy")
    if generator is not None:
        generator.set_state(_saved(state, "generator").cpu())


def _saved(state: dict[str, Any], name: str) -> Any:
    if state.get(name) is None:
        raise ValueError(f"this checkpoint holds no {name} RNG state to restore")
    return state[name]


def _legacy(raw: dict[str, Any], path: str | Path) -> Checkpoint:
    """The layouts ``agents.hhd.train`` and ``agents.posttrain.train`` wrote before this module."""
    config = raw.get("config", {})
    rng = raw.get("rng", {})
    if "train" in config and "normalisers" in raw:
        return Checkpoint("agents.hhd.train", raw["model"], config["model"], raw["optimizer"], config["train"],
                          raw["step"], {"torch": rng["torch"], "cuda": rng.get("cuda"), "numpy": None,
                                        "generator": None}, {"normalisers": raw["normalisers"]})
    if "posttrain" in config and "iteration" in raw:
        return Checkpoint("agents.posttrain.train", raw["model"], config["model"], raw["optimizer"],
                          config["posttrain"], raw["iteration"], {"torch": rng["torch_global"], "cuda": None,
                                                                  "numpy": rng["numpy"], "generator": rng["torch"]},
                          {"curve": raw["curve"]})
    raise ValueError(f"{path} is not an adsim checkpoint: no 'format' key and not an older trainer's layout "
                     f"(keys {sorted(raw)})")
