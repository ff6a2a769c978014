"""A masked actor-critic RLModule for AdSim-v0's Dict observation (RLlib 2.60 new API stack).

The observation is read as it is (no flattening): SID codes and categorical features go through embeddings, the
history is mean-pooled over its non-padding tokens, and one policy head per SID level scores the codes of the
level being chosen. Illegal codes get ``FLOAT_MIN`` logits, so they are never sampled and carry no gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import gymnasium as gym
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule
from ray.rllib.utils.torch_utils import FLOAT_MIN
from torch import nn

from envs.observation import N_HISTORY_TYPES


@dataclass(frozen=True)
class AdSimModuleConfig:
    """Sizes of ``AdSimTorchRLModule``; any of these keys in the RLModule's ``model_config`` override them."""

    embed_dim: int = 32
    """Width of every code and feature embedding."""
    hidden: int = 128
    """Width of the policy and value MLPs (two layers each)."""

    @classmethod
    def from_model_config(cls, model_config: Any) -> AdSimModuleConfig:
        given = dict(model_config or {})
        return cls(**{f.name: given[f.name] for f in fields(cls) if f.name in given})


class CategoricalFeatures(nn.Module):
    """One embedding table per column of a (B, F) float feature vector of small non-negative integers."""

    def __init__(self, high: torch.Tensor, dim: int):
        super().__init__()
        self.register_buffer("high", high.long(), persistent=False)
        self.tables = nn.ModuleList(nn.Embedding(int(h) + 1, dim) for h in high.tolist())

    @property
    def out_dim(self) -> int:
        return sum(t.embedding_dim for t in self.tables)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        codes = torch.minimum(x.long().clamp(min=0), self.high)  # (B, F)
        return torch.cat([table(codes[:, i]) for i, table in enumerate(self.tables)], dim=-1)  # (B, F * D)


class AdSimTorchRLModule(TorchRLModule, ValueFunctionAPI):
    """Encoder (embeddings + pooling) shared by a masked per-level policy head and a value head."""

    def setup(self) -> None:
        space = self.observation_space
        if not isinstance(space, gym.spaces.Dict) or "action_mask" not in space.spaces:
            raise ValueError(f"AdSimTorchRLModule needs AdSim-v0's Dict observation space, got {space}")
        cfg = AdSimModuleConfig.from_model_config(self.model_config)
        self.depth = int(space["prefix"].shape[0])
        self.width = int(self.action_space.n)
        d = cfg.embed_dim
        # code c at level l -> row l * (W + 1) + c + 1; row l * (W + 1) is level l's padding (-1)
        self.codes = nn.Embedding(self.depth * (self.width + 1), d)
        self.register_buffer("level_offset", torch.arange(self.depth) * (self.width + 1), persistent=False)
        self.history_type = nn.Embedding(N_HISTORY_TYPES, d)
        self.user = CategoricalFeatures(torch.tensor(space["user"].high), d // 4)
        self.context = CategoricalFeatures(torch.tensor(space["context"].high), d // 4)
        in_dim = d + self.depth * d + self.depth + self.user.out_dim + self.context.out_dim
        self.pi = nn.Sequential(nn.Linear(in_dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(),
                                nn.Linear(cfg.hidden, self.depth * self.width))
        self.vf = nn.Sequential(nn.Linear(in_dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(),
                                nn.Linear(cfg.hidden, 1))
        with torch.no_grad():  # near-uniform initial policy over the legal codes
            self.pi[-1].weight.mul_(0.01)
            self.pi[-1].bias.zero_()

    # ------------------------------------------------------------------------------------------ encoder
    def _embed_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """(..., L) codes with -1 padding -> (..., L, D) embeddings, zero where padded."""
        codes = codes.long()
        emb = self.codes(codes.clamp(min=-1) + 1 + self.level_offset)
        return emb * (codes >= 0).unsqueeze(-1)

    def encode(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Observation dict (batched) -> (B, F) features."""
        hist = self._embed_codes(obs["history_codes"]).sum(dim=-2)  # (B, H, D)
        types = obs["history_type"].long()
        hist = hist + self.history_type(types)
        valid = (types > 0).unsqueeze(-1).float()  # (B, H, 1)
        pooled = (hist * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1.0)  # (B, D)
        prefix = self._embed_codes(obs["prefix"]).flatten(start_dim=1)  # (B, L * D)
        level = nn.functional.one_hot(obs["level"].long()[:, 0].clamp(0, self.depth - 1), self.depth).float()
        return torch.cat([pooled, prefix, level, self.user(obs["user"]), self.context(obs["context"])], dim=-1)

    def masked_logits(self, obs: dict[str, torch.Tensor], features: torch.Tensor) -> torch.Tensor:
        """(B, W) logits of the current level's codes, FLOAT_MIN where ``action_mask`` is 0."""
        logits = self.pi(features).view(-1, self.depth, self.width)  # (B, L, W)
        level = obs["level"].long()[:, 0].clamp(0, self.depth - 1)
        logits = logits[torch.arange(len(level), device=logits.device), level]  # (B, W)
        return logits.masked_fill(obs["action_mask"] <= 0, FLOAT_MIN)

    # ------------------------------------------------------------------------------------------ RLModule API
    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        obs = batch[Columns.OBS]
        return {Columns.ACTION_DIST_INPUTS: self.masked_logits(obs, self.encode(obs))}

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        obs = batch[Columns.OBS]
        features = self.encode(obs)
        return {Columns.ACTION_DIST_INPUTS: self.masked_logits(obs, features), Columns.EMBEDDINGS: features}

    def compute_values(self, batch: dict[str, Any], embeddings: Any | None = None) -> torch.Tensor:
        if embeddings is None:
            embeddings = self.encode(batch[Columns.OBS])
        return self.vf(embeddings).squeeze(-1)  # (B,)


def module_spec(**model_config: Any) -> RLModuleSpec:
    """The RLModuleSpec PPO needs; keyword arguments are ``AdSimModuleConfig`` fields."""
    AdSimModuleConfig(**model_config)  # fail early on unknown keys
    return RLModuleSpec(module_class=AdSimTorchRLModule, model_config=dict(model_config))
