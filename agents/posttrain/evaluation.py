"""Held-out evaluation of a generative policy in the simulator: GPR Table 3's columns, under the model and the truth.

For each test request the policy's trie-constrained beam search returns K candidates in its own order; the
simulator scores them. Reported per reward source ("model": the reward models the policy was trained against;
"truth": the world's true pCTR/pCVR, so a gain that exists only under "model" is reward-model exploitation; a
bundle without ground truth, e.g. imported logs, gets the "model" columns only):

* nDCG and OPR of the policy's candidate order against final_value;
* average and maximum final_value over the K candidates, raw and divided by the request's oracle (the best
  legal ad's final_value: the paper's normalisation to [0, 1], done per request so requests weigh equally);
* the normalised score (policy average - random legal) / (oracle - random legal).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from adsim.metrics import normalised_score
from adsim.simulator.requests import RequestBatch, take
from agents.hhd.decoding import BeamConfig, beam_search
from agents.hhd.model import HHD
from agents.mcts.paths import RequestTries, random_legal_paths
from agents.posttrain.metrics import ndcg, opr
from agents.posttrain.train import PolicyEnv

SOURCES = ("model", "truth")


def available_sources(env: PolicyEnv) -> tuple[str, ...]:
    """The reward sources ``env``'s simulator can score: both for a synthetic world, "model" for imported logs."""
    return tuple(s for s in SOURCES if env.ctx.simulator.scorers.get(s) is not None)


@dataclass
class EvalSet:
    """Fixed held-out requests with everything that does not depend on the policy, computed once."""

    requests: RequestBatch
    allowed: np.ndarray
    oracle: dict[str, np.ndarray]  # source -> (B,)
    random: dict[str, np.ndarray]  # source -> (B,) mean final_value of K random legal paths

    @classmethod
    def build(cls, env: PolicyEnv, n_requests: int, k: int, seed: int) -> EvalSet:
        """``n_requests`` held-out requests of ``env``'s split, less those no ad is eligible for."""
        sim = env.ctx.simulator
        rng = np.random.default_rng([seed, 11])
        requests = env.ctx.requests.held_out(n_requests, rng)
        allowed = sim.allowed(requests)
        keep = np.flatnonzero(allowed.any(axis=1))
        tries = RequestTries(sim, take(requests, keep), allowed[keep])
        paths = random_legal_paths(tries, rng, k)
        oracle, random = {}, {}
        for source in available_sources(env):
            oracle[source] = sim.oracle(tries.requests, source, allowed=tries.allowed)[0]
            random[source] = sim.evaluate(tries.requests, paths, source, allowed=tries.allowed).final_value.mean(axis=1)
        return cls(tries.requests, tries.allowed, oracle, random)


def evaluate_policy(model: HHD, env: PolicyEnv, evalset: EvalSet, k: int) -> dict[str, float]:
    """GPR Table 3's metrics of ``model`` on ``evalset`` (see the module docstring), for both reward sources."""
    sim = env.ctx.simulator
    with torch.no_grad():
        beams = beam_search(model.eval(), env.batch(evalset.requests), env.trie.legal(evalset.allowed),
                            BeamConfig(beam=k))
    paths = np.maximum(beams.paths, 0)
    row: dict[str, float] = {}
    for source in evalset.oracle:
        ev = sim.evaluate(evalset.requests, paths, source, allowed=evalset.allowed)
        valid = ev.valid & beams.found
        value = np.where(valid, ev.final_value, 0.0)
        oracle = np.maximum(evalset.oracle[source], 1e-12)
        avg = value.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
        row[f"{source}/ndcg"] = ndcg(value, valid)
        row[f"{source}/opr"] = opr(value, valid)
        row[f"{source}/avg_final_value"] = float(avg.mean())
        row[f"{source}/max_final_value"] = float(value.max(axis=1).mean())
        row[f"{source}/avg_over_oracle"] = float((avg / oracle).mean())
        row[f"{source}/max_over_oracle"] = float((value.max(axis=1) / oracle).mean())
        row[f"{source}/normalised_score"] = normalised_score(avg, evalset.random[source], evalset.oracle[source])
    row["valid_share"] = float((ev.valid & beams.found).mean())
    return row
