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

from adsim.arguments import add_dataclass_arguments, dataclass_from_arguments
from adsim.data import Scenario, build_scenario
from benchmarks.report import command_line
from reward_models.bundle import bundle_step
from reward_models.evaluation import evaluate_scorer, truth_summary, write_report
from reward_models.open_bandit import evaluate_open_bandit
from reward_models.scorer import RewardScorer


@dataclass
class Config:
    preset: str = "small"
    """World preset to build with SIDs and reward models."""
    seed: int = 0
    out: Path = Path("results/reward_models")
    max_requests: int = 20_000
    """Test requests in the uniform-eligible sample (4 ads each)."""
    bundle: Path | None = None
    """Evaluate this bundle (with reward_models/) instead of building the preset."""


QUICK = dict(preset="tiny", max_requests=2_000)
"""--quick: the tiny preset and a small sample (a smoke test)."""


def build_reward_bundle(preset: str, seed: int, out: Path) -> Path:
    """A bundle with logs, SIDs and reward models, built like ``adsim build``."""
    from adsim.sid.pipeline import sid_step

    return build_scenario(out, preset, seed, progress=False, steps=[("sid", sid_step), ("reward_models", bundle_step)])


def main(argv: list[str] | None = None) -> dict[str, pd.DataFrame]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the tiny preset and a small sample (smoke test)")
    add_dataclass_arguments(parser, Config)
    args = parser.parse_args(argv)
    config = dataclass_from_arguments(Config, args, Config(**QUICK) if args.quick else None)

    with tempfile.TemporaryDirectory(prefix="adsim-rm-bench-") as tmp:
        path = config.bundle or build_reward_bundle(config.preset, config.seed, Path(tmp) / "bundle")
        scenario = Scenario(path)
        results = evaluate_scorer(scenario, RewardScorer.load(path, scenario), config.max_requests, seed=config.seed)
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
    write_report(results, config.out, title="Reward models: held-out quality, blind spot, real clicks", header=header)
    print(header, "\n")
    for name in ("metrics", "open_bandit"):
        print(results[name].to_markdown(index=False, floatfmt=".4g"), "\n")
    print(truth_summary(results["truth"]).to_markdown(index=False, floatfmt=".4g"))
    print(f"\nwritten to {config.out}/")
    return results


if __name__ == "__main__":
    main()
