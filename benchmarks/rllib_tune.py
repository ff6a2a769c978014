"""Ray Tune sweep of masked PPO on AdSim-v0 (lr x entropy coefficient x process rewards), with MCTS run as a Tune
trainable under the same metric names, and the best configuration of each scored on held-out test requests.

    python -m benchmarks.rllib_tune --scenario /tmp/small_full        # a bundle with reward models
    python -m benchmarks.rllib_tune --quick                            # 2 PPO trials x 2 iterations + 1 MCTS trial
    python -m benchmarks.rllib_tune --address auto --storage-path /shared/tune   # unchanged on a cluster

Trials are ranked by ``env_runners/final_value``, the mean unscaled final_value of the ads the training episodes
resolved: unlike ``episode_return_mean`` it does not move when process rewards are switched on. The best PPO trial's
module then decodes greedily (argmax over legal codes) on the test split, and the best MCTS configuration searches
the same requests; both are scored by the simulator under the reward models and the world's truth, with the
normalised score (policy - random legal) / (oracle - random legal).

A bundle without reward models (before ``adsim build`` trains them) can still be swept with
``--scorer-factory module:name``, a ``Scenario -> Scorer`` callable importable by every Ray worker.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from adsim.arguments import add_dataclass_arguments, dataclass_from_arguments
from benchmarks.report import write_report

METRIC = "env_runners/final_value"
PROCESS_REWARDS = {"on": [True], "off": [False], "both": [False, True]}
"""``--process-rewards`` choices -> the grid's ``process_rewards``."""


@dataclass
class Config:
    scenario: str = "small"
    """Bundle path or preset name."""
    seed: int = 0
    lr: list[float] = field(default_factory=lambda: [1e-4, 3e-4, 1e-3])
    """Learning rates of the grid."""
    entropy_coeff: list[float] = field(default_factory=lambda: [0.0, 0.01])
    """Entropy coefficients of the grid."""
    process_rewards: list[bool] = field(default_factory=lambda: [False, True])
    """Process rewards off and/or on in the grid (``--process-rewards on|off|both``)."""
    iterations: int = 30
    """Training iterations per trial."""
    train_batch_size: int = 1024
    num_envs_per_env_runner: int = 16
    num_env_runners: int = 0
    """Per trial; 0 samples inside the trial actor (one CPU per trial)."""
    mcts_simulations: list[int] = field(default_factory=lambda: [64])
    mcts_iterations: int = 5
    mcts_requests_per_iteration: int = 128
    eval_requests: int = 500
    """Held-out test requests the best configurations are scored on."""
    scorer_factory: str | None = None
    """module:name of a Scenario -> Scorer callable (fakes, tests)."""
    address: str | None = None
    """Ray cluster address ("auto", "ray://..."); None starts a local Ray with ``num_cpus``."""
    num_cpus: int = 2
    storage_path: str | None = None
    """Where Tune keeps trials and checkpoints (shared storage on a cluster); default: a temporary directory."""
    out: Path = Path("results/rllib_tune")

    @classmethod
    def quick(cls, **overrides) -> Config:
        base = dict(scenario="tiny", lr=[3e-4, 1e-3], entropy_coeff=[0.01], process_rewards=[False], iterations=2,
                    train_batch_size=256, num_envs_per_env_runner=16, mcts_simulations=[16], mcts_iterations=2,
                    mcts_requests_per_iteration=32, eval_requests=100)
        return cls(**{**base, **overrides})


def env_config_of(config: Config) -> dict:
    path = Path(config.scenario).expanduser()
    env_config = {"scenario": str(path.resolve()) if path.exists() else config.scenario,
                  "world_seed": config.seed}
    if config.scorer_factory:
        env_config["scorer_factory"] = config.scorer_factory
    return env_config


def trial_rows(results, trainable: str, keys: list[str]) -> list[dict]:
    rows = []
    for result in results:
        if result.error is not None:
            rows.append({"trainable": trainable, **{k: _lookup(result.config or {}, k) for k in keys},
                         "error": str(result.error).splitlines()[0]})
            continue
        m = result.metrics
        rows.append({
            "trainable": trainable,
            **{k: _lookup(result.config, k) for k in keys},
            "iterations": m.get("training_iteration"),
            "episode_return_mean": m.get("env_runners", {}).get("episode_return_mean", m.get(
                "env_runners/episode_return_mean")),
            "final_value": _metric(m),
            "time_total_s": m.get("time_total_s"),
        })
    return rows


def _lookup(config: dict, key: str):
    if key == "process_rewards":
        return config.get("env_config", {}).get("process_rewards", False)
    return config.get(key)


def _metric(metrics: dict) -> float:
    if METRIC in metrics:
        return float(metrics[METRIC])
    return float(metrics.get("env_runners", {}).get("final_value", np.nan))


def run(config: Config) -> tuple[list[dict], list[dict]]:
    """Both sweeps and the held-out scoring; returns (trial rows, best-configuration rows)."""
    from ray import tune

    from agents.mcts import MCTS, MCTSConfig, held_out_requests
    from agents.mcts.evaluation import Evaluator
    from agents.rllib.config import ppo_config
    from agents.rllib.env import import_object, open_env_context
    from agents.rllib.mcts_trainable import MCTSTrainable
    from agents.rllib.policy import ModulePolicy, load_module
    from agents.rllib.session import ray_session
    from envs.adsim_env import EnvOptions

    env_config = env_config_of(config)
    if isinstance(env_config.get("scorer_factory"), str):  # resolved here: pickled by reference (or by value)
        env_config["scorer_factory"] = import_object(env_config["scorer_factory"])
    with tempfile.TemporaryDirectory(prefix="rllib_tune_") as tmp, ray_session(config.address, config.num_cpus):
        storage = config.storage_path or tmp

        # --- PPO sweep
        ppo = ppo_config(env_config, seed=config.seed, num_env_runners=config.num_env_runners,
                         num_envs_per_env_runner=config.num_envs_per_env_runner,
                         train_batch_size=config.train_batch_size, minibatch_size=min(256, config.train_batch_size),
                         num_epochs=2)
        space = ppo.to_dict()  # grids inside AlgorithmConfig.env_config are not resolved; in its dict they are
        space.update(lr=tune.grid_search(config.lr), entropy_coeff=tune.grid_search(config.entropy_coeff),
                     env_config=tune.grid_search([{**env_config, "process_rewards": p}
                                                  for p in config.process_rewards]))
        checkpoints = tune.CheckpointConfig(checkpoint_at_end=True, num_to_keep=1)
        started = time.perf_counter()
        ppo_results = tune.Tuner(ppo.algo_class, param_space=space, run_config=tune.RunConfig(
            name="ppo", storage_path=storage, stop={"training_iteration": config.iterations},
            checkpoint_config=checkpoints, verbose=0)).fit()
        ppo_seconds = time.perf_counter() - started

        # --- MCTS, same metric names
        mcts_space = {"env_config": env_config, "seed": config.seed, "num_simulations": tune.grid_search(
            config.mcts_simulations), "requests_per_iteration": config.mcts_requests_per_iteration}
        mcts_results = tune.Tuner(MCTSTrainable, param_space=mcts_space, run_config=tune.RunConfig(
            name="mcts", storage_path=storage, stop={"training_iteration": config.mcts_iterations}, verbose=0)).fit()

        keys = ["lr", "entropy_coeff", "process_rewards", "num_simulations"]
        rows = trial_rows(ppo_results, "PPO", keys) + trial_rows(mcts_results, "MCTS", keys)

        # --- the best of each on held-out requests
        ctx, kwargs = open_env_context(env_config)
        evaluator = Evaluator(ctx.simulator, held_out_requests(ctx, "test", config.eval_requests, config.seed),
                              seed=config.seed)
        best_rows = evaluator.reference_rows()
        best = ppo_results.get_best_result(metric=METRIC, mode="max")
        policy = ModulePolicy(load_module(best.checkpoint.path), ctx)
        best_rows.append({"policy": "PPO (best trial)", "config": (
            f"lr={best.config['lr']}, entropy_coeff={best.config['entropy_coeff']}, "
            f"process_rewards={_lookup(best.config, 'process_rewards')}"),
            **evaluator.summary(evaluator.path_values(policy.act(evaluator.tries))), "sweep_s": ppo_seconds})
        best_mcts = mcts_results.get_best_result(metric=METRIC, mode="max")
        options = EnvOptions(**kwargs)
        search = MCTS(ctx.simulator, MCTSConfig(num_simulations=best_mcts.config["num_simulations"],
                                                seed=config.seed, reward_source=options.reward_source))
        best_rows.append({"policy": "MCTS (best trial)",
                          "config": f"num_simulations={best_mcts.config['num_simulations']}",
                          **evaluator.summary(evaluator.path_values(search.act(evaluator.requests)))})
    return rows, best_rows


def main(argv: list[str] | None = None) -> tuple[list[dict], list[dict]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 PPO trials x 2 iterations and 1 MCTS trial, tiny")
    add_dataclass_arguments(parser, Config, exclude=("process_rewards",))
    parser.add_argument("--process-rewards", choices=sorted(PROCESS_REWARDS), dest="process_rewards_grid",
                        help="process rewards off and/or on in the grid (default: both)")
    args = parser.parse_args(argv)
    config = dataclass_from_arguments(Config, args, Config.quick() if args.quick else None)
    if args.process_rewards_grid is not None:
        config = replace(config, process_rewards=PROCESS_REWARDS[args.process_rewards_grid])

    rows, best_rows = run(config)
    settings = ", ".join(f"{k}={v}" for k, v in asdict(config).items() if k not in ("out", "address"))
    write_report(config.out, "rllib_tune_trials", rows, "Tune sweep: PPO and MCTS on AdSim-v0",
                 notes=f"Ranked by `{METRIC}` (mean final_value of the training episodes' ads). Settings: {settings}.")
    write_report(config.out, "rllib_tune", best_rows, "Best PPO and MCTS configurations on held-out test requests",
                 notes="final_value: mean over the test requests, under the reward models (model) and the world's "
                       "truth; normalised: (policy - random legal) / (oracle - random legal).")
    return rows, best_rows


if __name__ == "__main__":
    main()
