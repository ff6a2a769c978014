"""Reward-model quality: held-out AUC and calibration, error against the truth (logged vs never-shown ads), real clicks.

Builds the preset's bundle the way ``adsim build`` does (logs, SIDs, reward models), evaluates it with
``reward_models.evaluation.evaluate_scorer`` and fits the same pCTR approach on the Open Bandit Dataset.
Writes ``metrics.csv``, ``calibration.csv``, ``truth.csv``, ``open_bandit*.csv``, ``report.md`` and
``reliability.png`` into ``--out``.

    python -m benchmarks.reward_models                  # small (about 3 minutes on 2 cores)
    python -m benchmarks.reward_models --quick          # tiny, seconds (smoke test)
    python -m benchmarks.reward_models --bundle DIR     # an existing bundle with reward_models/
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from adsim.data import Scenario, build_scenario
from benchmarks.report import command_line
from reward_models.bundle import bundle_step
from reward_models.evaluation import evaluate_scorer, truth_summary, write_report
from reward_models.open_bandit import evaluate_open_bandit
from reward_models.scorer import RewardScorer


@dataclass
class Config:
    preset: str = "small"
    seed: int = 0
    out: Path = Path("results/reward_models")
    max_requests: int = 20_000
    """Test requests in the uniform-eligible sample (4 ads each)."""


def build_reward_bundle(preset: str, seed: int, out: Path) -> Path:
    """A bundle with logs, SIDs and reward models, built like ``adsim build``."""
    from adsim.sid.pipeline import sid_step

    return build_scenario(out, preset, seed, progress=False, steps=[("sid", sid_step), ("reward_models", bundle_step)])


def main(argv: list[str] | None = None) -> dict[str, pd.DataFrame]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=Config.preset)
    parser.add_argument("--quick", action="store_true", help="the tiny preset and a small sample (smoke test)")
    parser.add_argument("--seed", type=int, default=Config.seed)
    parser.add_argument("--out", type=Path, default=Config.out)
    parser.add_argument("--bundle", type=Path, help="evaluate this bundle instead of building the preset")
    args = parser.parse_args(argv)
    preset = "tiny" if args.quick else args.preset
    max_requests = 2_000 if args.quick else Config.max_requests

    with tempfile.TemporaryDirectory(prefix="adsim-rm-bench-") as tmp:
        path = args.bundle or build_reward_bundle(preset, args.seed, Path(tmp) / "bundle")
        scenario = Scenario(path)
        results = evaluate_scorer(scenario, RewardScorer.load(path, scenario), max_requests, seed=args.seed)
        summary = scenario.manifest.get("reward_models", {})
    obd = evaluate_open_bandit()
    results["open_bandit"] = obd["open_bandit"]
    results["calibration"] = pd.concat([results["calibration"], obd["open_bandit_calibration"]], ignore_index=True)

    header = (f"Command: `{command_line().strip()}`\n\n"
              f"Scenario: {scenario.manifest.get('preset')} (seed {scenario.manifest.get('seed')}), "
              f"{summary.get('features')} features, SID levels {summary.get('sid_levels')}, best iterations "
              f"pCTR {summary.get('pctr', {}).get('best_iteration')} / pCVR "
              f"{summary.get('pcvr', {}).get('best_iteration')}. Real clicks: Open Bandit Dataset, uniform-random "
              "log (Saito et al. 2021), early 70% train / late 30% test.")
    write_report(results, args.out, title="Reward models: held-out quality, blind spot, real clicks", header=header)
    print(header, "\n")
    for name in ("metrics", "open_bandit"):
        print(results[name].to_markdown(index=False, floatfmt=".4g"), "\n")
    print(truth_summary(results["truth"]).to_markdown(index=False, floatfmt=".4g"))
    print(f"\nwritten to {args.out}/")
    return results


if __name__ == "__main__":
    main()
