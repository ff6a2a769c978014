"""Post-train an HHD policy in the simulator with HEPO, GRPO or DPO, from a VAFT checkpoint.

    python -m agents.posttrain.train --init-from runs/vaft/checkpoint.pt --method hepo --scenario tiny
    python -m agents.posttrain.train --init-from runs/vaft/checkpoint.pt --method dpo --out runs/dpo

Every method spends the same simulator budget: ``iterations x requests_per_iter x candidates`` scored paths.
Each iteration draws training requests (a share ``arr_ratio`` of them anticipatory, ARR), samples K candidate
paths per request through the personalised trie (recording behaviour log-probs per level), scores them in the
simulator, then updates:

* ``hepo``: GPR's HEPO. Coarse levels: GAE over the process rewards with the HTE critic; last level: the
  z-score of the reward over the request's K candidates; clipped-ratio loss with per-level coefficients, plus
  the critic's MSE to the returns (the critic reads stop-gradient intent embeddings, as HTE does).
* ``grpo``: the group z-score at every level, no critic (DiffuReason's GRPO).
* ``dpo``: preference pairs from the K scored candidates (``objectives.preference_pairs``), DPO loss against
  the frozen initial policy (the VAFT model) as reference.

The reward the policy learns from is ``log1p(final_value / mean logged final_value)``: the HTE heads were
pre-trained on the same log1p scale, and it tames final_value's heavy tail (only HEPO's critic sees the scale;
z-scores do not). Checkpoints (``agents.checkpoint``) hold model, optimizer, iteration and every RNG, so a resumed run
ends identical to an uninterrupted one.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from adsim.arguments import add_dataclass_arguments, dataclass_from_arguments
from adsim.simulator.requests import RequestBatch, take
from adsim.simulator.simulator import Scorer
from agents.checkpoint import Checkpoint, rng_state
from agents.hhd.decoding import TorchTrie
from agents.hhd.model import HHD
from agents.hhd.sequences import ENV_FEATURES, Batch, ScenarioSequences, SequenceConfig, scenario_sids
from agents.posttrain import objectives as obj
from envs.context import SimulatorContext, open_context

TRAINER = "agents.posttrain.train"
METHODS = ("hepo", "grpo", "dpo")


@dataclass
class PostTrainConfig:
    init_from: str = ""
    """VAFT (or MTP) checkpoint of agents.hhd.train: the starting policy and DPO's reference."""
    method: Literal["hepo", "grpo", "dpo"] = "hepo"
    process_rewards: bool = True
    """HEPO only: GAE over process rewards at coarse levels (off: they are zero, the ablation)."""
    arr_ratio: float = 0.0
    """Share of training requests that are anticipatory (ARR)."""
    scenario: str = "tiny"
    data_seed: int = 0
    seed: int = 0
    iterations: int = 20
    requests_per_iter: int = 16
    candidates: int = 8
    """K candidate paths sampled per request."""
    temperature: float = 1.0
    lr: float = 1e-4
    epochs: int = 2
    """Passes over each iteration's samples."""
    grad_clip: float = 1.0
    gamma: float = 1.0
    lam: float = 0.95
    clip_eps: float = 0.2
    level_coef: tuple[float, ...] = (1.0, 1.0, 1.0)
    """c_l of the clipped loss, one per level."""
    value_coef: float = 0.5
    process_alphas: tuple[float, ...] = (0.2, 0.1)
    beta: float = 0.1
    """DPO temperature."""
    margin: float = 0.05
    max_pairs: int = 4
    out: str = "runs/posttrain"
    checkpoint_every: int = 0
    """Also checkpoint every this many iterations (0: only at the end)."""
    resume: bool = False
    threads: int | None = 1
    seq: SequenceConfig = field(default_factory=SequenceConfig)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.candidates < 2:
            raise ValueError(f"candidates must be >= 2 (z-scores and pairs need a group), got {self.candidates}")
        self.level_coef = tuple(self.level_coef)
        self.process_alphas = tuple(self.process_alphas)


@dataclass
class PolicyEnv:
    """The simulator context plus the sequence builder and torch trie a policy needs."""

    ctx: SimulatorContext
    seqs: ScenarioSequences
    trie: TorchTrie
    reward_unit: float

    @classmethod
    def open(cls, scenario: str, data_seed: int, split: str, process_alphas: tuple[float, ...],
             seq: SequenceConfig, scorer: Scorer | None = None) -> PolicyEnv:
        """``scorer`` replaces the bundle's reward models (and the truth) for model and truth sources: tests."""
        ctx = open_context(scenario, data_seed, split, process_alphas, scorer=scorer, truth=scorer)
        seqs = ScenarioSequences(ctx.scenario, scenario_sids(ctx.scenario), seq)
        return cls(ctx, seqs, TorchTrie(ctx.simulator.trie), ctx.mean_logged_value)

    def batch(self, requests: RequestBatch, repeat: int = 1) -> Batch:
        """Model inputs for each request, each repeated ``repeat`` times (K candidates in a row)."""
        n = len(requests["user_id"])
        env = np.stack([np.zeros(n, np.int64) if name == "position" else np.asarray(requests[name]).astype(np.int64)
                        for name in ENV_FEATURES], axis=1)
        rows = np.repeat(np.arange(n), repeat)
        return self.seqs.request_batch(np.asarray(requests["user_id"])[rows], np.asarray(requests["ts"])[rows],
                                       env[rows]).to("cpu")

    def reward(self, final_value: np.ndarray) -> np.ndarray:
        return np.log1p(np.maximum(final_value, 0.0) / self.reward_unit)


@dataclass
class Rollout:
    batch: Batch
    legal_allowed: np.ndarray  # (B*K, n_ads) personal eligibility, repeated per candidate
    paths: torch.Tensor  # (B*K, L)
    behaviour: torch.Tensor  # (B*K, L)
    final_value: np.ndarray  # (B, K)
    valid: np.ndarray  # (B, K)
    process: np.ndarray  # (B, K, L-1)


def collect(model: HHD, env: PolicyEnv, requests: RequestBatch, k: int, temperature: float,
            generator: torch.Generator, with_process: bool) -> Rollout:
    """Sample K paths per request under the personalised trie and score them in the simulator.

    Requests for which no ad is eligible (nothing to generate) are dropped.
    """
    sim = env.ctx.simulator
    allowed = sim.allowed(requests)
    keep = np.flatnonzero(allowed.any(axis=1))
    requests, allowed = take(requests, keep), allowed[keep]
    b = len(allowed)
    rep = np.repeat(allowed, k, axis=0)
    batch = env.batch(requests, k)
    with torch.no_grad():
        out = model.get_action_and_value(batch, legal=env.trie.legal(rep), temperature=temperature,
                                         generator=generator)
    paths = out.paths.numpy().reshape(b, k, -1)
    ev = sim.evaluate(requests, paths, allowed=allowed)
    process = sim.process_rewards(requests, paths, allowed=allowed) if with_process else np.zeros(
        (b, k, paths.shape[2] - 1))
    return Rollout(batch, rep, out.paths, out.behaviour_log_probs, ev.final_value, ev.valid, process)


@dataclass
class PostTrainResult:
    model: HHD
    checkpoint: Path
    curve: list[dict]
    """Per iteration: simulator calls so far, mean final_value of the sampled candidates, losses."""


def train(config: PostTrainConfig, env: PolicyEnv | None = None, verbose: bool = True) -> PostTrainResult:
    # ------------------------------------------------------------------------------------------ setup
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    if not config.init_from:
        raise ValueError("init_from must name a checkpoint of agents.hhd.train (the VAFT model)")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    env = env or PolicyEnv.open(config.scenario, config.data_seed, "train", config.process_alphas, config.seq)
    model, _ = HHD.from_checkpoint(config.init_from)
    if config.method == "hepo" and model.value is None:
        raise ValueError("HEPO needs a model with HTE value heads (the critic); use grpo or dpo otherwise")
    reference = copy.deepcopy(model).eval() if config.method == "dpo" else None
    depth = model.config.depth
    if len(config.level_coef) != depth:
        raise ValueError(f"level_coef needs {depth} entries, got {config.level_coef}")
    torch.manual_seed(config.seed)
    model.eval()  # sampling and the update score one deterministic policy (no refiner noise): ratios start at 1
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    rng = np.random.default_rng([config.seed, 7])
    generator = torch.Generator().manual_seed(config.seed)
    start, curve = 0, []
    if config.resume and ckpt_path.is_file():
        ckpt = Checkpoint.load(ckpt_path)
        ckpt.restore(model, optimizer, rng, generator)
        start, curve = ckpt.step, ckpt.state["curve"]

    def save(iteration: int) -> None:
        Checkpoint.of(TRAINER, model, optimizer, config, iteration, rng_state(rng, generator), curve=curve).save(
            ckpt_path)

    coef = torch.tensor(config.level_coef, dtype=torch.float32)
    calls = curve[-1]["simulator_calls"] if curve else 0

    for iteration in range(start, config.iterations):
        started = time.perf_counter()
        # ---------------------------------------------------------------------------------- rollout
        requests = env.ctx.requests.sample(config.requests_per_iter, rng, config.arr_ratio)
        roll = collect(model, env, requests, config.candidates, config.temperature, generator,
                       with_process=config.method == "hepo" and config.process_rewards)
        calls += roll.final_value.size
        reward = env.reward(roll.final_value)  # (B, K)
        z = obj.group_zscore(reward, roll.valid).ravel()
        legal = env.trie.legal(roll.legal_allowed)

        # ---------------------------------------------------------------------------------- advantages
        if config.method == "hepo":
            with torch.no_grad():
                values = model.get_action_and_value(roll.batch, paths=roll.paths, legal=legal).values
            adv = obj.hepo_advantages(roll.process.reshape(-1, depth - 1), reward.ravel(), z,
                                      values[:, :depth].numpy(), config.gamma, config.lam, config.process_rewards)
        elif config.method == "grpo":
            adv = obj.grpo_advantages(z, depth)
        else:
            pairs = obj.preference_pairs(roll.final_value, roll.valid, config.margin, config.max_pairs)
            k = config.candidates
            chosen, rejected = pairs[:, 0] * k + pairs[:, 1], pairs[:, 0] * k + pairs[:, 2]
            if len(pairs):
                with torch.no_grad():
                    ref_lp = reference.get_action_and_value(roll.batch, paths=roll.paths, legal=legal).log_probs.sum(1)

        # ---------------------------------------------------------------------------------- update
        losses = []
        for _ in range(config.epochs):
            if config.method == "dpo" and not len(pairs):
                break
            new = model.get_action_and_value(roll.batch, paths=roll.paths, legal=legal)
            if config.method == "dpo":
                lp = new.log_probs.sum(1)
                loss = obj.dpo_loss(lp[chosen], lp[rejected], ref_lp[chosen], ref_lp[rejected], config.beta)
            else:
                valid = torch.as_tensor(roll.valid.ravel())
                a = torch.as_tensor(adv.advantages, dtype=torch.float32)[valid]
                loss = obj.clipped_policy_loss(new.log_probs[valid], roll.behaviour[valid], a, coef, config.clip_eps)
                if config.method == "hepo":
                    target = torch.as_tensor(adv.returns, dtype=torch.float32)[valid]
                    loss = loss + config.value_coef * obj.value_loss(new.values[valid, :depth], target)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            losses.append(loss.item())

        # ---------------------------------------------------------------------------------- logging
        row = {"iteration": iteration + 1, "simulator_calls": calls,
               "final_value_mean": float(roll.final_value[roll.valid].mean()) if roll.valid.any() else 0.0,
               "valid_share": float(roll.valid.mean()), "loss": float(np.mean(losses)) if losses else float("nan"),
               "seconds": time.perf_counter() - started}
        curve.append(row)
        if verbose:
            print(f"[{config.method}] iter {row['iteration']:>3} calls {calls:>7} final_value "
                  f"{row['final_value_mean']:.2f} loss {row['loss']:.4f} ({row['seconds']:.1f}s)", flush=True)
        if config.checkpoint_every and (iteration + 1) % config.checkpoint_every == 0:
            save(iteration + 1)

    save(config.iterations)
    with open(out / "curve.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(curve[0]) if curve else ["iteration"])
        writer.writeheader()
        writer.writerows(curve)
    return PostTrainResult(model, ckpt_path, curve)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dataclass_arguments(parser, PostTrainConfig)
    result = train(dataclass_from_arguments(PostTrainConfig, parser.parse_args(argv)))
    print(json.dumps(result.curve[-1]))


if __name__ == "__main__":
    main()
