"""Reward scoring speed: pairs/s of the full path against raw ``Booster.predict``, at batch sizes 1, 40 and 4096.

Full path: ``RewardScorer.score`` from (request ids, candidate ad ids), i.e. feature building + pCTR and pCVR
models + eCPM + final_value, with the models on the ``compiled`` backend (the default) and on ``reference``
(``Booster.predict``). Raw: both models on the same pairs' already built feature matrix, by ``Booster.predict``
and by the compiled forests. Target: full / raw <= 1.5 at batch 4096. Batches are logged test requests with
eligible ads drawn uniformly; each batch size cycles over distinct batches so caches do not flatter either side,
and the paths compared are timed in alternating rounds in one process, so changes in the machine's load hit all.

    python -m benchmarks.reward_scoring                  # small (builds the bundle: about 2 minutes)
    python -m benchmarks.reward_scoring --quick          # tiny, seconds (smoke test)
    python -m benchmarks.reward_scoring --bundle DIR     # an existing bundle with reward_models/
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adsim.data import Scenario
from benchmarks.report import write_report
from benchmarks.reward_models import build_reward_bundle
from reward_models.evaluation import sample_eligible_ads
from reward_models.scorer import RewardScorer

SHAPES = {1: (1, 1), 40: (1, 40), 4096: (128, 32)}
"""Batch size in pairs -> (requests, candidates per request)."""
TARGET_RATIO = 1.5


@dataclass
class Config:
    preset: str = "small"
    seed: int = 0
    out: Path = Path("results/reward_scoring")
    seconds: float = 2.0
    """Timing budget per (batch size, path)."""
    rounds: int = 7
    """Alternating rounds the budget is split into."""


def interleaved(fns: dict[str, Callable[..., object]], batches: list[tuple], budget: float,
                rounds: int = Config.rounds) -> dict[str, float]:
    """Seconds per ``fn(*batch)`` of each of ``fns``: the median over rounds that time them in turn (A B, B A, ...).

    Each round gives each function ``budget / rounds`` seconds (and at least one pass through ``batches``), after
    one warm-up pass (JIT, caches).
    """
    for fn in fns.values():
        for batch in batches:
            fn(*batch)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds):
        for name in list(fns)[:: 1 if r % 2 == 0 else -1]:
            calls, start = 0, time.perf_counter()
            while calls < len(batches) or time.perf_counter() - start < budget / rounds:
                fns[name](*batches[calls % len(batches)])
                calls += 1
            samples[name].append((time.perf_counter() - start) / calls)
    return {name: float(np.median(times)) for name, times in samples.items()}


def measure(scorer: RewardScorer, scenario: Scenario, budget: float, seed: int, n_batches: int = 8) -> list[dict]:
    rng = np.random.default_rng(seed)
    test = np.flatnonzero(scenario.table("requests")["split"].astype(str).to_numpy() == "test")
    boosters = [scorer.pctr.booster, scorer.pcvr.booster]
    forests = [scorer.pctr.forest, scorer.pcvr.forest]
    threads = scorer.pctr.config.params.get("num_threads", 1)
    scorers = {backend: RewardScorer(scorer.features, scorer.pctr, scorer.pcvr, scorer.value_config,
                                     scorer.cvr_target, scorer.max_pairs, backend=backend)
               for backend in ("reference", "compiled")}
    rows = []
    for batch, (b, k) in SHAPES.items():
        pairs = []
        for _ in range(n_batches):
            request_ids = rng.choice(test, size=b, replace=False)
            pairs.append((request_ids, sample_eligible_ads(scenario, request_ids, k, rng)))
        matrices = [(scorer.features.build(*pair).values,) for pair in pairs]
        full = interleaved({name: s.score for name, s in scorers.items()} | {"features": scorer.features.build},
                           pairs, budget)
        raw = interleaved({"reference": lambda x: [bst.predict(x, num_threads=threads) for bst in boosters],
                           "compiled": lambda x: [forest.predict(x) for forest in forests]}, matrices, budget)
        rows.append({
            "batch_pairs": batch, "requests": b, "candidates": k,
            "full_ms": round(full["compiled"] * 1e3, 3), "full_reference_ms": round(full["reference"] * 1e3, 3),
            "features_ms": round(full["features"] * 1e3, 3),
            "raw_predict_ms": round(raw["reference"] * 1e3, 3), "compiled_predict_ms": round(raw["compiled"] * 1e3, 3),
            "full_pairs_per_s": round(batch / full["compiled"]), "raw_pairs_per_s": round(batch / raw["reference"]),
            "full_over_raw": round(full["compiled"] / raw["reference"], 3),
            "full_speedup": round(full["reference"] / full["compiled"], 2),
            "predict_speedup": round(raw["reference"] / raw["compiled"], 2),
        })
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=Config.preset)
    parser.add_argument("--quick", action="store_true", help="the tiny preset and short timings (smoke test)")
    parser.add_argument("--seed", type=int, default=Config.seed)
    parser.add_argument("--out", type=Path, default=Config.out)
    parser.add_argument("--bundle", type=Path, help="score with this bundle instead of building the preset")
    args = parser.parse_args(argv)
    preset = "tiny" if args.quick else args.preset
    budget = 0.05 if args.quick else Config.seconds

    with tempfile.TemporaryDirectory(prefix="adsim-scoring-bench-") as tmp:
        path = args.bundle or build_reward_bundle(preset, args.seed, Path(tmp) / "bundle")
        scenario = Scenario(path)
        scorer = RewardScorer.load(path, scenario)
        rows = measure(scorer, scenario, budget, args.seed, n_batches=2 if args.quick else 8)
        trees = {name: model.booster.num_trees() for name, model in (("pctr", scorer.pctr), ("pcvr", scorer.pcvr))}
    ratio = rows[-1]["full_over_raw"]
    verdict = "within" if ratio <= TARGET_RATIO else "OVER"
    notes = (f"Scenario {scenario.manifest.get('preset')} (seed {scenario.manifest.get('seed')}); "
             f"{len(scorer.features.specs)} features; trees pCTR {trees['pctr']}, pCVR {trees['pcvr']}; LightGBM "
             f"num_threads={scorer.pctr.config.params.get('num_threads')}. Full = RewardScorer.score on the compiled "
             f"backend (full_reference: on Booster.predict); raw = Booster.predict of both models on the prebuilt "
             f"float32 matrix (compiled_predict: the compiled forests); speedups are reference / compiled. At batch "
             f"{rows[-1]['batch_pairs']}: full path / raw predict = {ratio:.2f}x ({verdict} the {TARGET_RATIO}x "
             "target).")
    write_report(args.out, "reward_scoring", rows, title="Reward scoring: full path vs raw Booster.predict",
                 notes=notes)
    return rows


if __name__ == "__main__":
    main()
