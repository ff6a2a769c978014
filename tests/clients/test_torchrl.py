"""TorchRL: ``torchrl.envs.GymEnv("AdSim-v0")`` with TorchRL's ``ActionMask`` transform, and a masked REINFORCE
policy (``MaskedCategorical``) trained on its rollouts that beats random legal play on tiny."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import adsim  # noqa: F401  (registers AdSim-v0)

pytest.importorskip("torchrl")

MARGIN = 2.0
"""The trained policy's mean return (greedy) must be at least this multiple of random legal play's."""


class Logits(nn.Module):
    """AdSim-v0's observation -> masked-categorical inputs: logits over codes and the legal mask as booleans."""

    def __init__(self, depth: int, width: int, user_high: torch.Tensor, hidden: int = 64):
        super().__init__()
        self.depth, self.width = depth, width
        self.register_buffer("user_high", user_high)
        self.net = nn.Sequential(nn.Linear(5 + 6 + depth + depth * width, hidden), nn.Tanh(),
                                 nn.Linear(hidden, width))

    def forward(self, user, context, level, prefix, action_mask):
        level = nn.functional.one_hot(level.squeeze(-1).clamp(0, self.depth - 1), self.depth).float()
        chosen = nn.functional.one_hot(prefix.clamp(min=0), self.width).float() * (prefix >= 0).unsqueeze(-1)
        x = torch.cat([user / self.user_high, context / 23.0, level, chosen.flatten(-2)], dim=-1)
        mask = action_mask.bool()
        mask = torch.where(mask.any(-1, keepdim=True), mask, torch.ones_like(mask))  # terminal obs: nothing legal
        return self.net(x), mask


def _episode_returns(td) -> torch.Tensor:
    """The return of every step's episode (reward comes at the last level; gamma = 1), shape (T,)."""
    reward, done = td["next", "reward"].squeeze(-1), td["next", "done"].squeeze(-1)
    out, running = torch.zeros_like(reward), torch.tensor(0.0)
    for t in range(len(reward) - 1, -1, -1):
        running = reward[t] + running * (~done[t])
        out[t] = running
    return out


def test_gymenv_with_action_mask_and_masked_reinforce_beats_random_legal(env_fixture, random_legal_return):
    from tensordict.nn import TensorDictModule
    from torchrl.envs import GymEnv, TransformedEnv
    from torchrl.envs.transforms import ActionMask
    from torchrl.envs.utils import ExplorationType, set_exploration_type
    from torchrl.modules import MaskedCategorical, ProbabilisticActor

    torch.manual_seed(0)
    torch.set_num_threads(1)
    env = TransformedEnv(GymEnv("AdSim-v0", categorical_action_encoding=True, **env_fixture.kwargs()), ActionMask())
    env.set_seed(0)
    random = env.rollout(60, break_when_any_done=False)  # ActionMask: random actions are legal ones
    assert bool((random["action_mask"].gather(-1, random["action"].unsqueeze(-1)) == 1).all())

    base = env.base_env._env.unwrapped
    net = Logits(base.depth, base.width, torch.as_tensor(base.observation_space["user"].high))
    module = TensorDictModule(net, in_keys=["user", "context", "level", "prefix", "action_mask"],
                              out_keys=["logits", "mask"])
    actor = ProbabilisticActor(module, in_keys=["logits", "mask"], distribution_class=MaskedCategorical,
                               return_log_prob=True, spec=env.action_spec)
    optim = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(25):
        with set_exploration_type(ExplorationType.RANDOM), torch.no_grad():
            td = env.rollout(3 * 64, actor, break_when_any_done=False)
        returns = _episode_returns(td)
        advantage = (returns - returns.mean()) / (returns.std() + 1e-8)
        logits, mask = net(td["user"], td["context"], td["level"], td["prefix"], td["action_mask"])
        log_prob = MaskedCategorical(logits=logits, mask=mask).log_prob(td["action"])
        loss = -(log_prob * advantage).mean()
        optim.zero_grad()
        loss.backward()
        optim.step()

    env.set_seed(123)
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        td = env.rollout(3 * 300, actor, break_when_any_done=False)
    episodes = int(td["next", "done"].sum())
    trained = float(td["next", "reward"].sum()) / episodes
    print(f"TorchRL masked REINFORCE {trained:.4f} vs random legal {random_legal_return:.4f}")
    assert episodes >= 290 and trained > MARGIN * random_legal_return, (trained, random_legal_return)
    assert np.isfinite(trained)
