"""Off-policy evaluation on the Open Bandit Dataset, the dataset's own protocol: estimate the Bernoulli Thompson
sampling (BTS) policy's CTR from the uniform-random log, and compare with BTS's on-policy CTR in its own log.

    python -m benchmarks.ope_obd            # the full samples (10,000 rounds each), 1000 bootstrap resamples
    python -m benchmarks.ope_obd --quick    # 2,000 rounds, 100 resamples: a smoke test

Protocol:

* ground truth: the mean click of the BTS log (on-policy), with a bootstrap interval;
* logged data: the random log imported as an adsim bundle (``adsim.importers``, ``obd`` format); its impressions
  keep OBD's propensities (1/80), and ``BanditFeedback.from_scenario`` reads them;
* BTS's action probabilities: OBD logs them only for the actions BTS took, and they drifted over the week. Two
  context-free estimates, both from the BTS log: ``empirical``, the per-slot frequencies of BTS's own actions
  (unbiased for the week's average policy), and ``beta``, Beta posteriors fitted so that simulated Thompson
  sampling reproduces those frequencies (``adsim.ope.thompson_policy``; obp's BernoulliTS simulation instead uses
  ZOZOTOWN's production prior, which the sample does not include);
* estimators: IPS, SNIPS, and DM / DR with two reward models: per-(slot, item) empirical CTR cross-fitted over two
  folds, and the bundle's LightGBM pCTR (trained on the earliest 70% of the random log, scoring every item at each
  round's slot).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from adsim import ope
from adsim.arguments import add_dataclass_arguments, dataclass_from_arguments
from adsim.importers.obd import N_POSITIONS, read_obd
from benchmarks.report import write_report
from reward_models.pipeline import import_scenario, import_steps


@dataclass
class Config:
    out: Path = Path("results/ope_obd")
    max_rows: int | None = None
    """Rounds read from each log (None: all 10,000)."""
    n_boot: int = 1000
    """Bootstrap resamples of every interval."""
    n_sim: int = 50_000
    """Thompson-sampling draws per simulated action distribution."""
    concentrations: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0, 100.0)
    reward_model: bool = True
    """Also DM/DR with the bundle's LightGBM reward model (imports the random log with SIDs and reward models)."""
    seed: int = 0


def quick() -> Config:
    return Config(max_rows=2000, n_boot=100, n_sim=5000, concentrations=(3.0, 10.0))


def run(config: Config) -> pd.DataFrame:
    started = time.perf_counter()
    bts, _, _ = read_obd(behavior="bts", max_rows=config.max_rows)
    truth = ope.on_policy_value(bts["click"].to_numpy(), n_boot=config.n_boot, seed=config.seed)
    bts_action, bts_slot = bts["item_id"].to_numpy(), bts["position"].to_numpy() - 1

    with tempfile.TemporaryDirectory(prefix="adsim-ope-") as tmp:
        steps = import_steps() if config.reward_model else ()
        path = import_scenario("obd", None, Path(tmp) / "random", max_rows=config.max_rows, seed=config.seed,
                           steps=steps, progress=False)
        from adsim import Scenario

        scenario = Scenario(path)
        feedback = ope.BanditFeedback.from_scenario(scenario)
        n_actions = feedback.n_actions
        q_models = {"empirical CTR (2-fold)": ope.empirical_ctr(feedback, N_POSITIONS, seed=config.seed)}
        if config.reward_model:
            from reward_models.scorer import RewardScorer

            scorer = RewardScorer.load(path)
            q_models["LightGBM reward model"] = ope.model_q(scorer, feedback.contexts["request_id"].to_numpy(),
                                                            feedback.position, n_actions)

    thompson = ope.thompson_policy(bts_action, bts_slot, n_actions, N_POSITIONS, config.concentrations,
                                   n_sim=config.n_sim, fit_sim=max(config.n_sim // 5, 1000), seed=config.seed)
    policies = {
        "empirical": ope.empirical_position_policy(bts_action, bts_slot, n_actions, N_POSITIONS),
        f"beta (kappa={thompson.concentration:g})": thompson.policy,
    }
    rows = [{"bts_probabilities": "-", "estimator": "logged mean (no correction)", "reward_model": "-",
             **_logged_mean(feedback, config)}]
    for pname, policy in policies.items():
        pi_e = policy.action_probabilities(feedback)
        for qname, q in q_models.items():
            table = ope.evaluate_policy(feedback, pi_e, q, n_boot=config.n_boot, seed=config.seed)
            for r in table.itertuples():
                if r.estimator in ("IPS", "SNIPS") and qname != next(iter(q_models)):
                    continue  # IPS and SNIPS use no reward model: once per policy
                rows.append({"bts_probabilities": pname, "estimator": r.estimator,
                             "reward_model": qname if r.estimator in ("DM", "DR") else "-",
                             "estimate": r.estimate, "ci_low": r.ci_low, "ci_high": r.ci_high})
    out = pd.DataFrame(rows)
    out["on_policy_ctr"] = truth["value"]
    out["on_policy_ci"] = f"[{truth['ci_low']:.4g}, {truth['ci_high']:.4g}]"
    out["relative_error"] = (out["estimate"] - truth["value"]).abs() / truth["value"]
    out["truth_in_ci"] = (out["ci_low"] <= truth["value"]) & (truth["value"] <= out["ci_high"])
    print(f"OPE on OBD in {time.perf_counter() - started:.1f}s", flush=True)
    return out


def _logged_mean(feedback: ope.BanditFeedback, config: Config) -> dict:
    v = ope.on_policy_value(feedback.reward, n_boot=config.n_boot, seed=config.seed)
    return {"estimate": v["value"], "ci_low": v["ci_low"], "ci_high": v["ci_high"]}


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,000 rounds, 100 resamples (tests)")
    add_dataclass_arguments(parser, Config)
    args = parser.parse_args(argv)
    config = dataclass_from_arguments(Config, args, quick() if args.quick else None)
    table = run(config)
    n = config.max_rows or 10_000
    write_report(config.out, "ope_obd", table, title="Off-policy evaluation on the Open Bandit Dataset (BTS from the "
                 "random log)",
                 notes=f"Rounds per log: up to {n}; {config.n_boot} bootstrap resamples, 95% percentile intervals. "
                       "on_policy_ctr: BTS's mean click in its own log (the ground truth). relative_error = "
                       "|estimate - on_policy_ctr| / on_policy_ctr. bts_probabilities: how BTS's action "
                       "probabilities were recovered from its log (see the module docstring). DM intervals resample "
                       "the rounds with the reward model fixed, so they omit its fitting error. With a few dozen "
                       "clicks per log, every other interval is wide: read the relative errors against them.")
    return table


if __name__ == "__main__":
    main()
