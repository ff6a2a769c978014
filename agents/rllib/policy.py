"""A trained AdSim RLModule used outside RLlib: greedy SID decoding on held-out requests, and as MCTS-PPO's
``PriorValueFn`` (its masked policy as priors, its value head as the node evaluator)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_LEARNER_GROUP, COMPONENT_RL_MODULE, DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModule

from adsim.simulator.requests import RequestBatch
from agents.mcts.paths import RequestTries, decode, observations
from envs.context import SimulatorContext


def load_module(checkpoint: str | Path) -> RLModule:
    """The RLModule of an Algorithm checkpoint (``algo.save()`` or a Tune trial's ``result.checkpoint.path``)."""
    path = Path(checkpoint) / COMPONENT_LEARNER_GROUP / COMPONENT_LEARNER / COMPONENT_RL_MODULE / DEFAULT_MODULE_ID
    if not path.is_dir():
        raise FileNotFoundError(f"no RLModule under {path}: is {checkpoint} an RLlib Algorithm checkpoint?")
    return RLModule.from_checkpoint(path)


class ModulePolicy:
    """Wraps an ``AdSimTorchRLModule`` (or any RLModule reading AdSim-v0 observations with a value head)."""

    def __init__(self, module: RLModule, ctx: SimulatorContext, batch_size: int = 4096):
        self.module, self.ctx, self.batch_size = module, ctx, batch_size

    @torch.no_grad()
    def _forward(self, tries: RequestTries, prefixes: np.ndarray, values: bool = False):
        logits_out, values_out = [], []
        for lo in range(0, len(tries), self.batch_size):
            rows = np.arange(lo, min(lo + self.batch_size, len(tries)))
            obs = {k: torch.as_tensor(v) for k, v in observations(self.ctx, tries.take(rows), prefixes[rows]).items()}
            out = self.module.forward_inference({Columns.OBS: obs})
            logits_out.append(out[Columns.ACTION_DIST_INPUTS].numpy().astype(np.float64))
            if values:
                values_out.append(self.module.compute_values({Columns.OBS: obs}).numpy().astype(np.float64))
        logits = np.concatenate(logits_out)
        return logits, (np.concatenate(values_out) if values else None)

    def act(self, requests: RequestBatch | RequestTries, rng: np.random.Generator | None = None) -> np.ndarray:
        """(B, L) paths: greedy (argmax of the masked logits), or sampled when ``rng`` is given."""
        tries = requests if isinstance(requests, RequestTries) else RequestTries(self.ctx.simulator, requests)
        return decode(tries, lambda prefixes, mask: self._forward(tries, prefixes)[0], rng)

    def __call__(self, requests: RequestBatch, prefixes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``PriorValueFn``: softmax of the masked logits over the next code, and the value head (reward units)."""
        tries = RequestTries(self.ctx.simulator, requests)
        logits, values = self._forward(tries, np.asarray(prefixes, dtype=np.int64), values=True)
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True), values
