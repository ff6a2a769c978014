"""Post-train an HHD policy in the simulator with HEPO, GRPO, Sibling-GRPO, DPO or UniVA, from a VAFT checkpoint.

    python -m agents.posttrain.train --init-from runs/vaft/checkpoint.pt --method hepo --scenario tiny
    python -m agents.posttrain.train --init-from runs/vaft/checkpoint.pt --method dpo --out runs/dpo
    python -m agents.posttrain.train --init-from runs/vaft/checkpoint.pt --method sibling_grpo --sampler ved  # V-STAR
    python -m agents.posttrain.train --init-from runs/vaft/checkpoint.pt --method univa --sampler univa

Every method spends the same simulator budget: ``iterations x requests_per_iter x candidates`` scored paths.
Each iteration draws training requests (a share ``arr_ratio`` of them anticipatory, ARR), samples K candidate
paths per request through the personalised trie (recording behaviour log-probs per level), scores them in the
simulator, then updates:

* ``hepo``: GPR's HEPO. Coarse levels: GAE over the process rewards with the HTE critic; last level: the
  z-score of the reward over the request's K candidates; clipped-ratio loss with per-level coefficients c_l,
  plus the critic's MSE to the returns (the critic reads stop-gradient intent embeddings, as HTE does). The
  first ``critic_warmup`` iterations are value-only (rollouts scored and counted in the budget, only the critic
  moves), so the policy's first update already has a critic fitted to this reward; ``normalise_advantages``
  standardises each coarse level's advantages over the batch (the last level is a z-score already).
* ``grpo``: the group z-score at every level, no critic (DiffuReason's GRPO). It trains every policy parameter end
  to end, the PTD thinking tokens and the diffusion refiner included, which is DiffuReason's setting; ``frozen``
  keeps named modules as pre-trained (their parameters leave the optimizer), the contrast DiffuReason argues
  against.
* ``sibling_grpo``: V-STAR's Sibling-GRPO, GRPO's clipped loss with ``objectives.sibling_advantages``: at each level
  a candidate's subtree mean reward minus the mean over its sibling subtrees, so learning sits on branching
  decisions. ``sampler="ved"`` collects the K candidates with V-STAR's value-guided decoding
  (``agents.hhd.value_guided``); V-STAR is both together.
* ``dpo``: preference pairs from the K scored candidates (``objectives.preference_pairs``), DPO loss against
  the frozen initial policy (the VAFT model) as reference.
* ``univa``: UniVA's eCPM-aware RL on the Generation-as-Ranking policy (``gar``: the HTE value head's child values
  are added to the generation logits at every level, ``HHDConfig.gar``), clipped loss with
  ``objectives.univa_advantages`` (GAE against the value head's v_l = o_value[a_l], the z-scored reward at the
  end) plus ``value_coef`` times the value head's MSE to G_l, and after every RL batch one supervised batch of
  ``sl_batch`` logged training sequences (``agents.posttrain.univa.supervised_loss``): UniVA's alternating SL/RL
  training. ``sampler="univa"`` collects beam search u MCTS-PPO candidates (``agents.posttrain.univa``); UniVA
  is both together. ``gar=False`` is the "w/o value head" ablation (generation head alone, GAE against zeros).

The reward: ``R = log1p(final_value / unit)`` with ``unit`` the mean logged final_value of the bundle (so R ~ 0.7
for a typical logged ad; the log tames final_value's heavy tail). HEPO's critic regresses the returns
``G_l = sum_k gamma^k r_{l+k}`` of R and the process rewards. That is NOT the scale HTE was pre-trained on:
``agents.hhd.train`` fits the value heads to ``log1p(ranking_ecpm / mean ranking_ecpm)`` of the logged first
target, the logging ranker's eCPM without the conversion term, on logged (not sampled) ads. Hence the warm-up.
Only HEPO's critic sees R's scale; z-scores and DPO's pairs do not.

The ratio's denominator: with ``sampler="sample"`` the behaviour log-probs of the sampled codes (tempered, as drawn).
VED's candidates are a search's output, not policy samples (beyond its scouts), and the probability VED chose them
with is not a density one can divide by; their denominator is the collecting policy's own log pi_old(z_l | s, z_<l)
(temperature 1), so the ratio is the PPO trust region around the policy that collected them (1 at the first epoch)
and the update is a policy gradient on a search-chosen candidate set, weighted as V-STAR weights it, not an
unbiased on-policy estimate.

Logged per iteration (``curve``, CleanRL names): ``losses/approx_kl`` and ``losses/clipfrac`` (mean over levels and
``..._l1``..``_lL`` per level, last epoch vs the behaviour policy), ``losses/explained_variance`` (all levels, and per
level, of the critic's values before the update against the returns), ``losses/policy_loss``,
``losses/value_loss``, ``charts/adv_std_l*`` (advantage std per level, after normalisation), ``charts/SPS``
(scored paths per second of wall time), ``charts/distinct_candidates`` (distinct paths per request over K); in
market mode also ``market/*`` (the day, its position, revenue so far, exhausted ads, overspend, the share of
candidates blocked by spent budgets). Checkpoints (``agents.checkpoint``) hold model, optimizer, iteration and
every RNG (and, in market mode, the day's ledger), so a resumed run ends identical to an uninterrupted one.

``mode="market"`` (``MarketFeed``): requests are no longer drawn independently. The trainer walks the split's days
in order, each day's logged requests in time order, ``requests_per_iter`` a time (a day's last batch may be
smaller; after the last day the first starts again on a fresh ledger), and scores the candidates with
``adsim.simulator.market_simulator.MarketSimulator``: each request's first candidate (a policy sample) is served,
priced and charged to the day's ledger, so the policy's own wins spend the budgets, and an ad whose budget ran out
earlier in the day leaves the next requests' eligibility. The policy samples under the trie as of the batch's
start; a candidate whose ads ran out since (within the batch) is ``blocked``: it counts in its group with reward 0,
so the policy learns that a spent budget pays nothing.
"""

from __future__ import annotations

import argparse
import copy
import csv
import inspect
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from adsim.arguments import add_dataclass_arguments, dataclass_from_arguments
from adsim.simulator.market import MarketConfig, MarketDay, requests_of_day
from adsim.simulator.market_simulator import MarketEvaluation, MarketSimulator
from adsim.simulator.requests import RequestBatch, take
from adsim.simulator.simulator import Scorer
from agents.checkpoint import Checkpoint, rng_state
from agents.hhd.decoding import TorchTrie
from agents.hhd.model import HHD
from agents.hhd.sequences import ENV_FEATURES, Batch, ScenarioSequences, SequenceConfig, scenario_sids
from agents.hhd.value_guided import VEDConfig, ved
from agents.posttrain import objectives as obj
from agents.posttrain.univa import UniVASampling, supervised_loss, univa_candidates
from envs.context import SimulatorContext, open_context

TRAINER = "agents.posttrain.train"
METHODS = ("hepo", "grpo", "sibling_grpo", "dpo", "univa")
MODES = ("request", "market")
SAMPLERS = ("sample", "ved", "univa")
FROZEN = {"thinking": "thinking", "refining": "refiner"}
"""``PostTrainConfig.frozen`` names -> the HHD attribute holding that module."""


@dataclass
class PostTrainConfig:
    init_from: str = ""
    """VAFT (or MTP) checkpoint of agents.hhd.train: the starting policy and DPO's reference."""
    method: Literal["hepo", "grpo", "sibling_grpo", "dpo", "univa"] = "hepo"
    sampler: Literal["sample", "ved", "univa"] = "sample"
    """How the K candidates are collected: policy samples, V-STAR's value-guided decoding (``ved``), or UniVA's
    beam search u MCTS-PPO (``univa``)."""
    ved: VEDConfig = field(default_factory=VEDConfig)
    """VED's settings (``sampler="ved"``)."""
    beam_share: float = 0.5
    """``univa`` sampler: share of the K candidates from beam search (the rest MCTS-PPO, then samples)."""
    mcts_simulations: int = 32
    """``univa`` sampler: MCTS-PPO simulations per request (value head as evaluator, no simulator calls); 0: none."""
    gar: bool = True
    """``univa``: Generation-as-Ranking (value head fused into the policy and trained as the critic); False: the
    generation head alone, GAE against zero values (the "w/o value head" ablation)."""
    sl_batch: int = 64
    """``univa``: logged training sequences in the supervised batch after each RL batch; 0: RL batches only."""
    frozen: tuple[Literal["thinking", "refining"], ...] = ()
    """Policy modules kept as pre-trained (DiffuReason's contrast); () trains every one end to end."""
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
    """Learning rate of the policy (HSD and PTD)."""
    critic_lr: float | None = None
    """HEPO: learning rate of the HTE value heads (None: ``lr``)."""
    critic_warmup: int = 0
    """HEPO: value-only iterations before the first policy update, part of ``iterations`` (so of the budget)."""
    critic_epochs: int = 4
    """HEPO: passes over every warm-up sample so far after each warm-up iteration (see ``fit_critic``)."""
    critic_batch: int = 256
    """HEPO: minibatch size of the warm-up's critic fit."""
    normalise_advantages: bool = False
    """HEPO: standardise each coarse level's advantages over the iteration's samples (the last is a z-score)."""
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
    backend: Literal["auto", "reference", "compiled"] = "auto"
    """Simulator backend; auto: ``compiled`` where ``Simulator.evaluate`` offers it (same numbers, faster)."""
    mode: Literal["request", "market"] = "request"
    """``request``: independent requests, budgets as the logs ran out (AdSim-v0). ``market``: days in time order,
    budgets spent by the policy's own served ads (``MarketFeed``, the module docstring)."""
    market_budget_scale: float = 1.0
    """Market mode: every daily budget times this (``MarketConfig.budget_scale``)."""
    market_billing: Literal["model", "truth"] = "model"
    """Market mode: clicks and conversions, hence charges, drawn from the reward models or the truth."""
    seq: SequenceConfig = field(default_factory=SequenceConfig)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.candidates < 2:
            raise ValueError(f"candidates must be >= 2 (z-scores and pairs need a group), got {self.candidates}")
        if self.critic_warmup and self.method != "hepo":
            raise ValueError(f"critic_warmup is HEPO's (the only method with a critic), got method {self.method!r}")
        if self.critic_warmup < 0:
            raise ValueError(f"critic_warmup must be >= 0, got {self.critic_warmup}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        self.frozen = tuple(self.frozen)
        if set(self.frozen) - set(FROZEN):
            raise ValueError(f"frozen modules must be among {tuple(FROZEN)}, got {self.frozen}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "market":
            if self.arr_ratio != 0:
                raise ValueError(f"arr_ratio must be 0 in market mode (it replays logged days), got {self.arr_ratio}")
            MarketConfig(self.market_billing, self.market_budget_scale)  # checks them, naming the option
        if self.sl_batch < 0:
            raise ValueError(f"sl_batch must be >= 0, got {self.sl_batch}")
        UniVASampling(self.beam_share, self.mcts_simulations)  # checks them, naming the option
        self.level_coef = tuple(self.level_coef)
        self.process_alphas = tuple(self.process_alphas)

    @property
    def univa_sampling(self) -> UniVASampling:
        return UniVASampling(self.beam_share, self.mcts_simulations, self.gar or self.method != "univa")


def simulator_backend(sim: object, requested: str = "auto") -> dict:
    """Keyword arguments selecting the simulator backend: ``{}`` for the reference, where there is no choice."""
    offers = "backend" in inspect.signature(sim.evaluate).parameters
    if requested == "compiled" and not offers:
        raise ValueError("this simulator has no compiled backend")
    if requested == "reference" or not offers:
        return {}
    return {"backend": "compiled"}


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
        """R = log1p(final_value / unit), unit = the bundle's mean logged final_value: HEPO's terminal reward and
        the scale of its critic's targets (see the module docstring for how it differs from HTE's pre-training)."""
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


@torch.no_grad()
def draw(model: HHD, env: PolicyEnv, requests: RequestBatch, allowed: np.ndarray, k: int, temperature: float,
         generator: torch.Generator, sampler: str = "sample", ved_config: VEDConfig | None = None,
         univa: UniVASampling | None = None) -> tuple[Batch, torch.Tensor, torch.Tensor]:
    """K candidate paths per request under its personalised trie: the (B*K) model batch, paths (B*K, L) and the
    ratio's denominators (B*K, L) (the module docstring says which, per sampler). Candidate 0 is a policy sample."""
    rep = np.repeat(allowed, k, axis=0)
    batch, legal = env.batch(requests, k), env.trie.legal(rep)
    if sampler == "sample":
        out = model.get_action_and_value(batch, legal=legal, temperature=temperature, generator=generator)
        return batch, out.paths, out.behaviour_log_probs
    if sampler == "ved":
        paths = ved(model, env.batch(requests), env.trie.legal(allowed), k, ved_config, temperature, generator)
    else:
        drawn = model.get_action_and_value(batch, legal=legal, temperature=temperature, generator=generator).paths
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        paths = torch.as_tensor(univa_candidates(model, env.batch, env.trie.legal(allowed), env.ctx.simulator,
                                                 requests, allowed, k, drawn.view(len(allowed), k, -1),
                                                 univa or UniVASampling(), seed))
    paths = paths.reshape(len(rep), -1)
    return batch, paths, model.get_action_and_value(batch, paths=paths, legal=legal).log_probs


def collect(model: HHD, env: PolicyEnv, requests: RequestBatch, k: int, temperature: float,
            generator: torch.Generator, with_process: bool, backend: str = "auto", sampler: str = "sample",
            ved_config: VEDConfig | None = None, univa: UniVASampling | None = None) -> Rollout:
    """Draw K paths per request under the personalised trie (``draw``) and score them in the simulator.

    Requests for which no ad is eligible (nothing to generate) are dropped.
    """
    sim = env.ctx.simulator
    fast = simulator_backend(sim, backend)
    allowed = sim.allowed(requests, **fast)
    keep = np.flatnonzero(allowed.any(axis=1))
    requests, allowed = take(requests, keep), allowed[keep]
    b = len(allowed)
    batch, flat, behaviour = draw(model, env, requests, allowed, k, temperature, generator, sampler, ved_config,
                                  univa)
    paths = flat.numpy().reshape(b, k, -1)
    ev = sim.evaluate(requests, paths, allowed=allowed, **fast)
    process = sim.process_rewards(requests, paths, allowed=allowed, **fast) if with_process else np.zeros(
        (b, k, paths.shape[2] - 1))
    return Rollout(batch, np.repeat(allowed, k, axis=0), flat, behaviour, ev.final_value, ev.valid, process)


class MarketFeed:
    """Market mode's requests and scores (see the module docstring): the split's days in order, each a
    ``MarketDay`` whose ledger the policy's served candidates move. Its billing draws come from its own numpy
    generator, so the request-mode streams are untouched."""

    def __init__(self, env: PolicyEnv, config: MarketConfig, seed: int):
        self.env, self.msim = env, MarketSimulator(env.ctx.simulator, config)
        self.logged = env.ctx.requests.logged
        self.days = np.unique(np.asarray(self.logged["day"])).astype(np.int64)
        self.rng = np.random.default_rng([seed, 11])
        self.day_index = -1
        self.day: MarketDay | None = None

    def _open(self, index: int) -> None:
        self.day_index = index
        self.day = self.msim.open_day(requests_of_day(self.logged, int(self.days[index])), self.rng)

    def collect(self, model: HHD, n: int, k: int, temperature: float, generator: torch.Generator,
                with_process: bool, backend: str = "auto", sampler: str = "sample",
                ved_config: VEDConfig | None = None, univa: UniVASampling | None = None
                ) -> tuple[Rollout, MarketEvaluation]:
        """``collect`` on the day's next ``n`` requests: draw K paths per request under the trie as of now, score
        them in time order and serve each request's first candidate. Requests with no eligible ad pass unserved
        (dropped from the rollout). Blocked candidates (ads all spent since the batch began) are valid, reward 0."""
        sim = self.env.ctx.simulator
        fast = simulator_backend(sim, backend)
        while True:  # the next batch with a request that may be shown an ad (a day's spent tail passes unserved)
            if self.day is None or self.day.over:
                self._open((self.day_index + 1) % len(self.days))
            day = self.day
            book, allowed = self.msim.next_block(day, n)
            keep = np.flatnonzero(allowed.any(axis=1))
            if len(keep):
                break
            self.msim.evaluate(day, np.zeros((len(allowed), 1, sim.depth), dtype=np.int64), -1, book=book)
        requests = take(book.requests, keep)
        batch, flat, behaviour = draw(model, self.env, requests, allowed[keep], k, temperature, generator, sampler,
                                      ved_config, univa)
        paths = np.zeros((len(allowed), k, sim.depth), dtype=np.int64)
        paths[keep] = flat.numpy().reshape(len(keep), k, -1)
        serve = np.full(len(allowed), -1, dtype=np.int64)
        serve[keep] = 0
        mev = self.msim.evaluate(day, paths, serve, book=book, **fast)
        ev = mev.evaluation
        valid = ev.valid[keep] | mev.blocked[keep]
        final = np.where(ev.valid[keep], ev.final_value[keep], 0.0)
        process = (sim.process_rewards(requests, paths[keep], allowed=mev.allowed[keep], **fast) if with_process
                   else np.zeros((len(keep), k, sim.depth - 1)))
        rep = np.repeat(allowed[keep], k, axis=0)
        return Rollout(batch, rep, flat, behaviour, final, valid, process), mev

    def diagnostics(self, mev: MarketEvaluation) -> dict[str, float]:
        """The ``market/*`` curve entries after a batch."""
        s = self.day.summary()
        shown = mev.serve >= 0
        return {"market/day": float(self.days[self.day_index]), "market/position": float(self.day.position),
                "market/revenue_today": s["revenue"], "market/exhausted_ads": float(s["exhausted_ads"]),
                "market/overspend": s["overspend"],
                "market/blocked_share": float(mev.blocked[shown].mean()) if shown.any() else 0.0}

    def get_state(self) -> dict:
        return {"day_index": self.day_index, "rng": self.rng.bit_generator.state,
                "day": None if self.day is None else self.day.get_state()}

    def set_state(self, state: dict) -> None:
        if state["day"] is not None:
            self._open(int(state["day_index"]))
            self.day.set_state(state["day"])
        self.day_index = int(state["day_index"])
        self.rng.bit_generator.state = state["rng"]


@dataclass
class CriticBuffer:
    """Warm-up samples for the critic: stop-gradient intent memory, paths and returns, (N, M, C), (N, L), (N, L).

    While the policy is frozen (the warm-up), a sample's memory never changes, so the critic can be fitted on
    every warm-up sample so far, not only the last iteration's: 128 fresh samples per iteration are too few for a
    regression of a heavy-tailed reward (the critic overfits them; explained variance on new rollouts falls).
    """

    memory: list[torch.Tensor] = field(default_factory=list)
    paths: list[torch.Tensor] = field(default_factory=list)
    returns: list[torch.Tensor] = field(default_factory=list)

    def add(self, memory: torch.Tensor, paths: torch.Tensor, returns: torch.Tensor) -> None:
        self.memory.append(memory.detach())
        self.paths.append(paths)
        self.returns.append(returns)


def fit_critic(model: HHD, buffer: CriticBuffer, optimizer: torch.optim.Optimizer, epochs: int, batch: int,
               rng: np.random.Generator, grad_clip: float) -> list[float]:
    """Value-only minibatch passes over the buffer: MSE of V(s, z_{1:l}), l = 0..L-1, to the returns G_l."""
    memory, paths, target = (torch.cat(x) for x in (buffer.memory, buffer.paths, buffer.returns))
    depth, losses = paths.shape[1], []
    for _ in range(epochs):
        for rows in np.array_split(rng.permutation(len(paths)), max(1, -(-len(paths) // batch))):
            idx = torch.as_tensor(rows)
            loss = obj.value_loss(model.value.path_values(memory[idx], paths[idx])[:, :depth], target[idx])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.value.parameters(), grad_clip)
            optimizer.step()
            losses.append(loss.item())
    return losses


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
    univa = config.method == "univa"
    if univa and config.gar and model.value is None:
        raise ValueError("UniVA's Generation-as-Ranking fuses the HTE value head into the policy: the model has "
                         "none (hte=False); pass gar=False for the generation head alone")
    if univa:
        model.config.gar = config.gar  # the policy from here on (and in the checkpoint) is the fused one
    reference = copy.deepcopy(model).eval() if config.method == "dpo" else None
    depth = model.config.depth
    if len(config.level_coef) != depth:
        raise ValueError(f"level_coef needs {depth} entries, got {config.level_coef}")
    torch.manual_seed(config.seed)
    model.eval()  # sampling and the update score one deterministic policy (no refiner noise): ratios start at 1
    critic = list(model.value.parameters()) if model.value is not None else []
    left_out = {id(p) for p in critic}
    for name in config.frozen:  # DiffuReason's contrast: these modules stay as pre-trained
        module = getattr(model, FROZEN[name])
        if module is None:
            raise ValueError(f"frozen names {name!r}, but the model has no {name} module")
        module.requires_grad_(False)
        left_out.update(id(p) for p in module.parameters())
    groups = [{"params": [p for p in model.parameters() if id(p) not in left_out], "lr": config.lr}]
    if critic:
        groups.append({"params": critic, "lr": config.critic_lr if config.critic_lr is not None else config.lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    rng = np.random.default_rng([config.seed, 7])
    generator = torch.Generator().manual_seed(config.seed)
    sl_rng = np.random.default_rng([config.seed, 13])  # UniVA's SL batches, apart from the rollouts' streams
    sl_legal = env.trie.legal(None)
    train_idx = env.seqs.indices("train") if univa and config.sl_batch else np.empty(0, np.int64)
    start, curve, buffer = 0, [], CriticBuffer()
    feed = (MarketFeed(env, MarketConfig(config.market_billing, config.market_budget_scale), config.seed)
            if config.mode == "market" else None)
    if config.resume and ckpt_path.is_file():
        ckpt = Checkpoint.load(ckpt_path)
        ckpt.restore(model, optimizer, rng, generator)
        start, curve = ckpt.step, ckpt.state["curve"]
        buffer = CriticBuffer(**ckpt.state.get("critic_buffer", {}))
        if feed is not None:
            feed.set_state(ckpt.state["market"])

    def save(iteration: int) -> None:
        warm = iteration < config.critic_warmup
        market = {} if feed is None else {"market": feed.get_state()}
        Checkpoint.of(TRAINER, model, optimizer, config, iteration, rng_state(rng, generator), curve=curve,
                      critic_buffer=vars(buffer) if warm else {}, **market).save(ckpt_path)

    coef = torch.tensor(config.level_coef, dtype=torch.float32)
    calls = curve[-1]["simulator_calls"] if curve else 0

    for iteration in range(start, config.iterations):
        started = time.perf_counter()
        warmup = iteration < config.critic_warmup  # value-only: the critic learns R's scale before the policy moves
        # ---------------------------------------------------------------------------------- rollout
        with_process = config.method == "hepo" and config.process_rewards
        if feed is None:
            requests = env.ctx.requests.sample(config.requests_per_iter, rng, config.arr_ratio)
            roll = collect(model, env, requests, config.candidates, config.temperature, generator,
                           with_process=with_process, backend=config.backend, sampler=config.sampler,
                           ved_config=config.ved, univa=config.univa_sampling)
        else:
            roll, market_eval = feed.collect(model, config.requests_per_iter, config.candidates,
                                             config.temperature, generator, with_process, config.backend,
                                             config.sampler, config.ved, config.univa_sampling)
        calls += roll.final_value.size
        reward = env.reward(roll.final_value)  # (B, K)
        z = obj.group_zscore(reward, roll.valid).ravel()
        legal = env.trie.legal(roll.legal_allowed)
        valid = torch.as_tensor(roll.valid.ravel())
        diag: dict[str, float] = {} if feed is None else feed.diagnostics(market_eval)
        grouped = roll.paths.numpy().reshape(*reward.shape, depth)  # (B, K, L)
        diag["charts/distinct_candidates"] = float(np.mean([len(np.unique(g, axis=0)) for g in grouped])
                                                   / config.candidates) if len(grouped) else 0.0

        # ---------------------------------------------------------------------------------- advantages
        if config.method == "hepo":
            with torch.no_grad():
                values = model.get_action_and_value(roll.batch, paths=roll.paths, legal=legal).values[:, :depth]
            adv = obj.hepo_advantages(roll.process.reshape(-1, depth - 1), reward.ravel(), z, values.numpy(),
                                      config.gamma, config.lam, config.process_rewards)
            v = roll.valid.ravel()
            if config.normalise_advantages:
                a = adv.advantages.copy()
                a[v] = obj.normalise_levels(a[v])
                adv = obj.Advantages(a, adv.returns)
            pred, target = values.numpy()[v], adv.returns[v]
            diag["losses/explained_variance"] = float(obj.explained_variance(pred.ravel(), target.ravel()))
            diag.update({f"losses/explained_variance_l{level + 1}": float(e)
                         for level, e in enumerate(obj.explained_variance(pred, target))})
        elif univa:
            if config.gar:
                with torch.no_grad():
                    values = model.get_action_and_value(roll.batch, paths=roll.paths, legal=legal).values[:, 1:]
            else:
                values = torch.zeros(len(z), depth)
            adv = obj.univa_advantages(z, values.numpy(), config.gamma, config.lam)
            if config.gar:
                v = roll.valid.ravel()
                diag["losses/explained_variance"] = float(obj.explained_variance(values.numpy()[v].ravel(),
                                                                                 adv.returns[v].ravel()))
        elif config.method == "grpo":
            adv = obj.grpo_advantages(z, depth)
        elif config.method == "sibling_grpo":
            sibling = obj.sibling_advantages(grouped, reward, roll.valid).reshape(-1, depth)
            adv = obj.Advantages(sibling, np.zeros_like(sibling))
        else:
            pairs = obj.preference_pairs(roll.final_value, roll.valid, config.margin, config.max_pairs)
            k = config.candidates
            chosen, rejected = pairs[:, 0] * k + pairs[:, 1], pairs[:, 0] * k + pairs[:, 2]
            diag["charts/dpo_pairs"] = float(len(pairs))
            if len(pairs):
                with torch.no_grad():
                    ref_lp = reference.get_action_and_value(roll.batch, paths=roll.paths, legal=legal).log_probs.sum(1)
        if config.method != "dpo":
            a_valid = adv.advantages[roll.valid.ravel()]
            diag.update({f"charts/adv_std_l{level + 1}": float(s) for level, s in enumerate(a_valid.std(axis=0))})

        # ---------------------------------------------------------------------------------- critic warm-up
        losses, policy_losses, value_losses, new = [], [], [], None
        if warmup:
            with torch.no_grad():
                memory = model.encode(roll.batch).memory
            buffer.add(memory[valid], roll.paths[valid], torch.as_tensor(adv.returns, dtype=torch.float32)[valid])
            value_losses = fit_critic(model, buffer, optimizer, config.critic_epochs, config.critic_batch, rng,
                                      config.grad_clip)
            losses = value_losses
            if iteration + 1 == config.critic_warmup:
                buffer = CriticBuffer()  # the policy moves from here: old memories go stale

        # ---------------------------------------------------------------------------------- update
        for _ in range(0 if warmup else config.epochs):
            if config.method == "dpo" and not len(pairs):
                break
            new = model.get_action_and_value(roll.batch, paths=roll.paths, legal=legal)
            if config.method == "dpo":
                lp = new.log_probs.sum(1)
                loss = obj.dpo_loss(lp[chosen], lp[rejected], ref_lp[chosen], ref_lp[rejected], config.beta)
                policy_losses.append(loss.item())
            else:
                a = torch.as_tensor(adv.advantages, dtype=torch.float32)[valid]
                loss = obj.clipped_policy_loss(new.log_probs[valid], roll.behaviour[valid], a, coef, config.clip_eps)
                policy_losses.append(loss.item())
                if config.method == "hepo" or (univa and config.gar):
                    target = torch.as_tensor(adv.returns, dtype=torch.float32)[valid]
                    picked = new.values[valid, :depth] if config.method == "hepo" else new.values[valid, 1:]
                    vloss = obj.value_loss(picked, target)
                    value_losses.append(vloss.item())
                    loss = loss + config.value_coef * vloss
            optimizer.zero_grad()
            loss.backward()
            for group in optimizer.param_groups:  # clipped apart: the critic's gradients never shrink the policy's
                torch.nn.utils.clip_grad_norm_(group["params"], config.grad_clip)
            optimizer.step()
            losses.append(loss.item())
        if len(train_idx):  # UniVA: the supervised batch that follows every RL batch (eq. 22)
            sl = supervised_loss(model, env.seqs.batch(sl_rng.choice(train_idx, config.sl_batch)), sl_legal)
            optimizer.zero_grad()
            sl.backward()
            for group in optimizer.param_groups:
                torch.nn.utils.clip_grad_norm_(group["params"], config.grad_clip)
            optimizer.step()
            diag["losses/sl_loss"] = sl.item()
        if new is not None:  # the last epoch's policy against the behaviour policy, per level
            level = obj.level_diagnostics(new.log_probs.detach()[valid], roll.behaviour[valid], config.clip_eps)
            for name, per_level in level.items():
                diag[f"losses/{name}"] = float(per_level.mean())
                diag.update({f"losses/{name}_l{i + 1}": float(x) for i, x in enumerate(per_level)})

        # ---------------------------------------------------------------------------------- logging
        seconds = time.perf_counter() - started
        row = {"iteration": iteration + 1, "phase": "critic_warmup" if warmup else "policy", "simulator_calls": calls,
               "final_value_mean": float(roll.final_value[roll.valid].mean()) if roll.valid.any() else 0.0,
               "reward_mean": float(reward[roll.valid].mean()) if roll.valid.any() else 0.0,
               "valid_share": float(roll.valid.mean()), "loss": float(np.mean(losses)) if losses else float("nan"),
               "losses/policy_loss": float(np.mean(policy_losses)) if policy_losses else float("nan"),
               "losses/value_loss": float(np.mean(value_losses)) if value_losses else float("nan"),
               **diag, "charts/SPS": roll.final_value.size / max(seconds, 1e-9), "seconds": seconds}
        curve.append(row)
        if verbose:
            ev_text = f" EV {row['losses/explained_variance']:.2f}" if "losses/explained_variance" in row else ""
            print(f"[{config.method}] iter {row['iteration']:>3} {row['phase']:<13} calls {calls:>7} final_value "
                  f"{row['final_value_mean']:.2f} loss {row['loss']:.4f}{ev_text} ({seconds:.1f}s)", flush=True)
        if config.checkpoint_every and (iteration + 1) % config.checkpoint_every == 0:
            save(iteration + 1)

    save(config.iterations)
    with open(out / "curve.csv", "w", newline="") as f:
        fields = list(dict.fromkeys(key for row in curve for key in row)) or ["iteration"]
        writer = csv.DictWriter(f, fieldnames=fields)
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
