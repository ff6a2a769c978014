"""AdSim-v0: generate one ad's semantic ID, level by level, for one logged (or rehearsed) request."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from adsim.errors import AdSimOptionError, AdSimStateError
from envs.context import SimulatorContext, open_context
from envs.episodes import episode_batch
from envs.options import EnvOptions, IllegalAction, env_options
from envs.state import check_rng

__all__ = ["AdSimEnv", "EnvOptions", "IllegalAction"]

_ROW = np.array([0])

class AdSimEnv(gym.Env[dict[str, np.ndarray], np.int64]):
    """
    ## Description
    A generative ad recommender writes the semantic ID (SID) of one ad for one request, coarse to fine, under a
    personalised trie of legal codes (the ads the user may see: targeting, liveness, budget). The final level
    resolves a real ad, scored by the scenario's reward models (GPR's final_value). Requests replay a split of
    the logs, optionally mixed with Anticipatory Request Rehearsal (synthetic future requests).

    ## Action Space
    `Discrete(W)`, W the widest codebook: the code chosen at the current level. Use `obs["action_mask"]`.

    ## Observation Space
    | key | space | meaning |
    |---|---|---|
    | `user` | Box(5,) float32 | age bucket, gender, region, activity group, primary device |
    | `context` | Box(6,) float32 | hour, device, placement, ad slots, privacy flag, is_synthetic |
    | `history_codes` | Box(H, L) int64 | SID codes of the last organic views and ad interactions, -1 padding |
    | `history_type` | Box(H,) int64 | 0 pad, 2 organic, 4 impression, 5 click, 6 conversion |
    | `prefix` | Box(L,) int64 | codes chosen so far, -1 for levels still open |
    | `level` | Box(1,) int64 | the level to choose now, 0..L-1 |
    | `action_mask` | Box(W,) int8 | 1 where the code leads to at least one ad the user may see |

    ## Rewards
    At levels < L-1: 0, or HEPO's process reward alpha_l * max(0, P_l(z_l) - mean over legal tokens) when
    `process_rewards=True`. At the last level: the resolved ad's final_value (or eCPM), times `reward_scale`.
    An illegal action ends the episode with `illegal_penalty`.

    ## Starting State
    A request drawn from the split with `self.np_random` (synthetic with probability `arr_ratio`); empty prefix.

    ## Episode End
    Terminates after L steps (one ad resolved) or on an illegal action. Never truncates.

    ## Arguments
    * `scenario`: bundle path or preset name (default "small"; a preset is built and cached on first use).
    * `world_seed`: the seed of a preset's world (default 0). Episodes are seeded by `reset(seed=...)`;
      `seed=` at construction is refused, since Gymnasium users would expect it to seed episodes.
    * `split`: "train", "valid" or "test". `arr_ratio`: share of synthetic (ARR) requests, in [0, 1].
    * `process_rewards`, `process_alphas` (finite, >= 0): HEPO's process rewards; `process_popularity`:
      "prefix" (default: P_l(t | z_<l), GPR's popularity under the path's parent) or "unconditional".
    * `reward`: "final_value" or "ecpm". `reward_scale` (> 0; default: 1 / mean final_value of the logged ads,
      so returns are O(1)). `reward_source`: "model" or "truth" (the world's true pCTR/pCVR, for measuring the
      sim-to-real gap; imported logs have no truth).
    * `illegal_action`: "terminate" or "raise"; `illegal_penalty`.
    * `backend`: "compiled" (default: numba kernels) or "reference" (the numpy definition, the same episodes).
    * `render_mode`: None or "ansi" (request, user, legal codes per level, chosen path, ad, reward parts).

    Every option is checked at construction: a bad value is an `AdSimOptionError` naming it. `info` carries
    ad_id, pctr, pcvr, ecpm, final_value, request_id, is_synthetic, illegal_action. `action_masks()` returns the
    current legal mask as booleans (sb3-contrib's MaskablePPO); `envs.flat` gives the
    `Dict{"observations": Box, "action_mask": Box}` view RLlib's masking example module needs (`AdSimFlat-v0`).

    ## Version History
    * v0: initial version.
    * v0 (2026-12, same id): `seed` renamed `world_seed`; options validated at construction; `action_masks()`;
      an informative `ansi` render and `render_fps`. Simulator (generator v4): reward models sized to the data
      with a quality gate, SID levels that are real choices, ARR without look-ahead, oCPC pricing and a
      per-impression conversion bonus. Returns are not comparable with earlier v0 bundles.
    * v0 (2026-12, same id; simulator v2): process rewards read P_l under the path's prefix; under
      `reward_source="truth"` the shown ad is the one the reward models resolve (truth only scores it), and the
      auction of imported RTB logs sees the model's bid. Truth returns and process rewards differ from simulator v1.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None, context: SimulatorContext | None = None, **kwargs: Any):
        self.options = env_options(kwargs)
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise AdSimOptionError(f"must be None or one of {self.metadata['render_modes']}, got {render_mode!r}",
                                   option="render_mode")
        o = self.options
        self.ctx = context or open_context(o.scenario, o.world_seed, o.split, o.process_alphas,
                                               process_popularity=o.process_popularity)
        if self.ctx.simulator.scorers.get(o.reward_source) is None:
            raise AdSimOptionError(f"this scenario ({o.scenario}) has no {o.reward_source!r} scorer (imported logs "
                                   "have no ground truth); use reward_source='model'", option="reward_source")
        self.render_mode = render_mode
        sim = self.ctx.simulator
        self.depth, self.width = sim.depth, sim.trie.width
        h = self.ctx.observations.history.length
        self.action_space = spaces.Discrete(self.width)
        obs = self.ctx.observations
        self.observation_space = spaces.Dict({
            "user": spaces.Box(0, obs.user_high, dtype=np.float32),
            "context": spaces.Box(0, obs.context_high, dtype=np.float32),
            "history_codes": spaces.Box(-1, self.width - 1, (h, self.depth), np.int64),
            "history_type": spaces.Box(0, 6, (h,), np.int64),
            "prefix": spaces.Box(-1, self.width - 1, (self.depth,), np.int64),
            "level": spaces.Box(0, self.depth - 1, (1,), np.int64),
            "action_mask": spaces.Box(0, 1, (self.width,), np.int8),
        })
        self.episodes = episode_batch(self.ctx, self.options, 1)
        self._trail: dict[str, Any] | None = None
        """What ``render`` shows: the legal masks of the levels reached, the last info and reward."""

    # ------------------------------------------------------------------------------------------ state
    def get_state(self) -> dict:
        """Everything needed to branch from this point (planners such as MCTS): episode arrays and the RNG."""
        return {"episodes": self.episodes.get_state(), "rng": self.np_random.bit_generator.state}

    def set_state(self, state: dict) -> dict[str, np.ndarray]:
        """Restore a ``get_state`` snapshot; returns the observation at that point. A malformed or inconsistent
        snapshot is an ``AdSimStateError`` naming its part (``envs.state``), and the env is left as it was."""
        if not isinstance(state, dict) or set(state) != {"episodes", "rng"}:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise AdSimStateError(f"must be a dict with keys ['episodes', 'rng'] (as get_state returns it), got {got}")
        check_rng(self.np_random.bit_generator, state["rng"])
        self.episodes.set_state(state["episodes"])
        self.np_random.bit_generator.state = state["rng"]
        return self._obs()

    # ------------------------------------------------------------------------------------------ API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.episodes.restart(_ROW, self.np_random)
        obs, info = self.episodes.observation_one(), self._request_info()
        self._trail = {"legal": [obs["action_mask"]], "info": info}
        return obs, info

    def step(self, action):
        if self.episodes.done[0]:
            raise RuntimeError("step() called after the episode ended; call reset() first")
        if not (type(action) is int and 0 <= action < self.width) and not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not an integer in [0, {self.width}) "
                             f"(dtype {np.asarray(action).dtype})")
        action = int(action)
        if self.options.illegal_action == "raise" and not self.episodes.mask[0, action]:
            raise ValueError(f"illegal action {action} at level {int(self.episodes.level[0])}: "
                             "no eligible ad below this prefix (see obs['action_mask'])")
        reward, terminated, illegal, parts = self.episodes.step_one(action)
        info = self._request_info()
        info["illegal_action"] = illegal
        if parts is not None:
            info.update(parts)
        obs = self.episodes.observation_one()
        if not terminated:
            self._trail["legal"].append(obs["action_mask"])
        self._trail["info"], self._trail["reward"] = info, reward
        return obs, reward, terminated, False, info

    def action_masks(self) -> np.ndarray:
        """(W,) bool: the codes legal now (all False once the episode ended). For sb3-contrib's MaskablePPO."""
        return self.episodes.mask[0].astype(bool)

    def render(self):
        if self.render_mode != "ansi":
            return None
        if self._trail is None:
            return "no episode yet: call reset()"
        return render_ansi(self.episodes.requests, self.episodes.prefix[0], self._trail, bool(self.episodes.done[0]))

    def _request_info(self) -> dict[str, Any]:
        request_id, synthetic = self.episodes.request_info()
        return {"request_id": request_id, "is_synthetic": synthetic}

    def _obs(self) -> dict[str, np.ndarray]:
        return self.episodes.observation_one()


def render_ansi(request: dict[str, np.ndarray], prefix: np.ndarray, trail: dict[str, Any], done: bool) -> str:
    """The episode so far in words: request, user, the legal codes at each level reached, the chosen path and,
    once it ended, the resolved ad and the reward's parts."""
    info = trail["info"]
    synthetic = " (synthetic, ARR)" if info.get("is_synthetic") else ""
    lines = [f"request {info['request_id']}{synthetic}: user {int(request['user_id'][0])}, day "
             f"{int(request['day'][0])} hour {int(request['hour'][0])}, device {int(request['device'][0])}, "
             f"placement {int(request['placement'][0])}"]
    for level, legal in enumerate(trail["legal"]):
        codes = np.flatnonzero(legal)
        shown = ", ".join(str(c) for c in codes[:12]) + (f", ... ({len(codes)} legal)" if len(codes) > 12 else "")
        chosen = f" -> chose {int(prefix[level])}" if level < len(prefix) and prefix[level] >= 0 else ""
        lines.append(f"  level {level}: legal [{shown}]{chosen}")
    lines.append(f"  path {prefix.tolist()}")
    if done and info.get("illegal_action"):
        lines.append(f"  illegal action: episode ended, reward {trail.get('reward', 0.0):.4g}")
    elif done and "ad_id" in info:
        lines.append(f"  ad {info['ad_id']}: pctr {info['pctr']:.4g}, pcvr {info['pcvr']:.4g}, ecpm "
                     f"{info['ecpm']:.4g}, final_value {info['final_value']:.4g}; reward {trail['reward']:.4g}")
    return "\n".join(lines)
