"""One script per reported table, each ``python -m benchmarks.NAME`` or ``adsim bench NAME``.

``CATALOGUE`` is the one list of them: the CLI shows it (``adsim bench``) and runs them through ``run``.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple


class Benchmark(NamedTuple):
    module: str
    about: str
    duration: str
    """Typical wall time of the default settings on 2 cores."""


CATALOGUE: dict[str, Benchmark] = {
    "dpo-vs-hepo": Benchmark("dpo_vs_hepo", "the main job: MTP, VAFT, DPO, HEPO (+ablations), GRPO (GPR Table 3)",
                             "~10 min (--preset quick)"),
    "build-world": Benchmark("build_world", "build time, throughput and peak memory of the world's logs per preset",
                             "~1 min"),
    "tokenizers": Benchmark("tokenizers", "SID tokenizers: collision, code usage, PAS, per-path bid spread",
                            "~5 min"),
    "reward-models": Benchmark("reward_models", "reward-model AUC, calibration, error against the truth",
                               "~2 min (--quick: ~30 s)"),
    "reward-scoring": Benchmark("reward_scoring", "reward scoring speed against raw Booster.predict", "~1 min"),
    "env-throughput": Benchmark("env_throughput", "AdSim-v0 steps/s, vector env, memory, trie legality, RLlib "
                                 "PPO iteration vs a trivial masked env; targets met or why not", "~3 min"),
    "sequence-models": Benchmark("sequence_models", "next-ad HR@K of HSTU and HHD components (GPR Table 2)",
                                 "~15 min"),
    "decoding": Benchmark("decoding", "trie-constrained vs unconstrained beam search speed and validity", "~2 min"),
    "baselines": Benchmark("baselines", "random, cascade, greedy eCPM, PPO, MCTS and the oracle on test requests",
                           "~15 min"),
    "rllib-tune": Benchmark("rllib_tune", "Ray Tune sweep of masked PPO, MCTS as a trainable", "~15 min"),
    "ope-obd": Benchmark("ope_obd", "off-policy evaluation on the Open Bandit Dataset", "~1 min"),
    "scale": Benchmark("scale", "Ray scale-out: build and evaluation speed-ups, worker memory", "~5 min"),
    "market-replay": Benchmark("market_replay", "baselines over whole days with binding budgets, per-request overspend",
                               "~5 min, estimated (--quick: ~10 s)"),
}


def run(name: str, argv: list[str] | None = None):
    """Run benchmark ``name`` (a ``CATALOGUE`` key) with command-line arguments ``argv``."""
    if name not in CATALOGUE:
        raise KeyError(f"unknown benchmark {name!r}; choose from {sorted(CATALOGUE)}")
    from benchmarks.report import set_invocation

    set_invocation(["adsim", "bench", name, *(argv or [])])
    return importlib.import_module(f"benchmarks.{CATALOGUE[name].module}").main(argv)
