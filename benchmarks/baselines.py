"""Baselines on the same held-out test requests: random legal, the logging cascade, greedy eCPM, RLlib PPO, MCTS
at growing budgets, MCTS-PPO (the trained PPO module as priors and value head), and the oracle.

    python -m benchmarks.baselines --scenario /tmp/small_full     # a bundle with reward models
    python -m benchmarks.baselines --quick                         # tiny, PPO 2 iterations, 100 requests

Columns: mean final_value under the reward models and under the world's truth; the normalised score
(policy - random legal) / (oracle - random legal) on each; decisions/s, one decision being one request's ad (a full
SID path or an ad id), measured on this machine's cores; training time (PPO only).

* random legal: every SID level uniformly among the legal codes (mean over 16 draws per request).
* logging cascade: the ad the logged cascade (retrieval, ranking, auction) showed in the top slot.
* greedy eCPM: the eligible ad with the highest model-predicted eCPM (a one-stage ranker over the whole trie;
  it maximises eCPM, the oracle maximises final_value).
* PPO: ``agents.rllib.ppo_config`` defaults, greedy decoding of the trained module.
* MCTS n: UCT search with n simulations per request (random rollouts, best scored path).
* oracle: the eligible ad with the best final_value (exhaustive).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from adsim.arguments import add_dataclass_arguments, dataclass_from_arguments
from benchmarks.report import write_report
from benchmarks.stats import t_interval


@dataclass
class Config:
    scenario: str = "small"
    """Bundle path or preset name."""
    seed: int = 0
    test_requests: int = 500
    """Held-out test requests every policy is scored on."""
    ppo_iterations: int = 50
    train_batch_size: int = 1024
    num_envs_per_env_runner: int = 16
    lr: float = 3e-4
    entropy_coeff: float = 0.01
    simulations: list[int] = field(default_factory=lambda: [16, 64, 256])
    """MCTS budgets (simulations per request)."""
    mcts_ppo_simulations: int = 64
    """Simulations of MCTS-PPO (PUCT with the PPO module's priors and values); 0 skips it."""
    scorer_factory: str | None = None
    """module:name of a Scenario -> Scorer callable (fakes, tests)."""
    address: str | None = None
    """Ray cluster address; default: start a local Ray."""
    num_cpus: int = 2
    """CPUs of the local Ray."""
    out: Path = Path("results/baselines")

    @classmethod
    def quick(cls, **overrides) -> Config:
        base = dict(scenario="tiny", test_requests=100, ppo_iterations=2, train_batch_size=256, mcts_ppo_simulations=16)
        return cls(**{**base, **overrides})


def _timed(fn):
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def run(config: Config) -> tuple[list[dict], dict[str, dict[str, np.ndarray]]]:
    """Every policy on the same held-out requests: summary rows, and each policy's per-request final_value by
    reward source (what the verdicts pair)."""
    from agents.mcts import MCTS, Evaluator, MCTSConfig, greedy_ecpm_ads, held_out_requests, logged_ads
    from agents.mcts.paths import random_legal_paths
    from agents.rllib.config import build_algo, ppo_config
    from agents.rllib.env import import_object, open_env_context
    from agents.rllib.policy import ModulePolicy
    from agents.rllib.session import ray_session
    from benchmarks.rllib_tune import env_config_of
    from envs.adsim_env import EnvOptions

    env_config = env_config_of(config)
    if isinstance(env_config.get("scorer_factory"), str):
        env_config["scorer_factory"] = import_object(env_config["scorer_factory"])
    ctx, kwargs = open_env_context(env_config)
    options = EnvOptions(**kwargs)
    sim = ctx.simulator
    ev = Evaluator(sim, held_out_requests(ctx, "test", config.test_requests, config.seed), seed=config.seed)
    n = len(ev)
    rows, per_request = [], {}

    def add(name: str, values: dict, seconds: float, train_s: float = 0.0) -> None:
        rows.append({"policy": name, **ev.summary(values), "decisions_per_s": n / max(seconds, 1e-9),
                     "train_s": train_s})
        per_request[name] = values

    rng = np.random.default_rng(config.seed)
    paths, seconds = _timed(lambda: random_legal_paths(ev.tries, rng)[:, 0])
    add("random legal", ev.random, seconds)
    ads, seconds = _timed(lambda: logged_ads(ctx, ev.requests))
    add("logging cascade (top slot)", ev.ad_values(ads), seconds)
    ads, seconds = _timed(lambda: greedy_ecpm_ads(sim, ev.tries))
    add("greedy eCPM", ev.ad_values(ads), seconds)

    # --- RLlib PPO
    with tempfile.TemporaryDirectory(prefix="baselines_") as tmp, ray_session(config.address, config.num_cpus):
        ppo = ppo_config(env_config, seed=config.seed, num_envs_per_env_runner=config.num_envs_per_env_runner,
                         train_batch_size=config.train_batch_size, minibatch_size=min(256, config.train_batch_size),
                         lr=config.lr, entropy_coeff=config.entropy_coeff)
        algo = build_algo(ppo, tmp)
        try:
            _, train_s = _timed(lambda: [algo.train() for _ in range(config.ppo_iterations)])
            module = algo.get_module()
        finally:
            algo.stop()
    policy = ModulePolicy(module, ctx)
    paths, seconds = _timed(lambda: policy.act(ev.tries))
    add(f"RLlib PPO ({config.ppo_iterations} iterations)", ev.path_values(paths), seconds, train_s)

    # --- MCTS at growing budgets, then guided by the PPO module
    for budget in config.simulations:
        search = MCTS(sim, MCTSConfig(num_simulations=budget, seed=config.seed, reward_source=options.reward_source))
        paths, seconds = _timed(lambda s=search: s.act(ev.requests, ev.tries.allowed))
        add(f"MCTS {budget}", ev.path_values(paths), seconds)
    if config.mcts_ppo_simulations:
        search = MCTS(sim, MCTSConfig(num_simulations=config.mcts_ppo_simulations, seed=config.seed,
                                      reward_source=options.reward_source),
                      prior_value=policy, value_scale=ctx.reward_scale(options.reward_scale))
        paths, seconds = _timed(lambda: search.act(ev.requests, ev.tries.allowed))
        add(f"MCTS-PPO {config.mcts_ppo_simulations}", ev.path_values(paths), seconds, train_s)

    _, seconds = _timed(lambda: sim.oracle(ev.requests, options.reward_source, allowed=ev.tries.allowed))
    add("oracle", ev.oracle, seconds)
    return rows, per_request


def mcts_growth(rows: list[dict], per_request: dict[str, dict[str, np.ndarray]], budgets: list[int]) -> str:
    """Whether each budget step helps MCTS: ``benchmarks.stats``' rule on the per-request paired differences of
    model final_value (the same test requests for every budget)."""
    scores = [next(r["normalised_model"] for r in rows if r["policy"] == f"MCTS {b}") for b in budgets]
    trail = " -> ".join(f"{b}: {s:.3f}" for b, s in zip(budgets, scores, strict=True))
    steps = []
    for small, large in zip(budgets, budgets[1:], strict=False):
        gain = t_interval(per_request[f"MCTS {large}"]["model"] - per_request[f"MCTS {small}"]["model"])
        steps.append(f"{small} -> {large}: {gain.verdict} ({gain}, {gain.n} requests)")
    return (f"MCTS normalised score (model) by simulations, {trail}. More simulations give a higher final_value "
            f"(paired by request): {'; '.join(steps) or 'one budget only'}.")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny scenario, 100 requests, PPO 2 iterations")
    add_dataclass_arguments(parser, Config)
    args = parser.parse_args(argv)
    config = dataclass_from_arguments(Config, args, Config.quick() if args.quick else None)

    rows, per_request = run(config)
    settings = ", ".join(f"{k}={v}" for k, v in asdict(config).items() if k not in ("out", "address"))
    write_report(config.out, "baselines", rows, "Baselines on held-out test requests",
                 notes=f"{mcts_growth(rows, per_request, config.simulations)}\n\nSettings: {settings}.")
    return rows


if __name__ == "__main__":
    main()
