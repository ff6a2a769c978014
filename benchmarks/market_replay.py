"""Market replay: the baselines replayed over whole days in which their own wins spend the advertisers' budgets.

    python -m benchmarks.market_replay                   # small, the test day (a scorer pass over every pair)
    python -m benchmarks.market_replay --quick           # tiny, all 7 days

Policies (``agents.market``): the logging cascade (its logged ads, top slot first), greedy eCPM, greedy eCPM with
probabilistic pacing, and greedy eCPM under AdSim-v0's per-request rule (budgets as they ran out in the logs,
nothing capped). Each is replayed day by day under billing draws from the reward models and from the truth, the
same draws for every policy of a day (``adsim.simulator.market``: GSP prices, CPM billed per impression, every
other goal per click, budgets capped, spent ads out of the auction).

Columns, means per day: ``revenue`` (what the platform charged, with its 95 % t half-width over days),
``advertiser_value`` (bids on realised goal events), ``served`` (share of requests shown an ad),
``utilisation`` (spend over the daily budgets of the ads live that day), ``utilisation_shown`` (over the ads shown
at least once), ``exhausted_ads``, ``constrained`` (share of requests whose top-ranked ad was out of budget),
``capped`` (charges cut at a budget), ``overspend`` (spend beyond the budgets) and ``overspent_ads``.

The overspend table sets the per-request greedy policy (what AdSim-v0 pays it) against the same policy in market
mode: ``paid_per_request`` and ``paid_in_market`` per day, their ratio, the overspend per day and its share of
what was paid per-request.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from adsim.arguments import add_dataclass_arguments, dataclass_from_arguments
from adsim.simulator.kernels import Backend
from adsim.simulator.market import Market, MarketConfig, MarketDay, Pacing, requests_of_day
from adsim.simulator.requests import as_batch, logged_requests
from agents.market import GREEDY, PACED, PER_REQUEST, market_baselines, replay_day
from benchmarks.report import write_report
from benchmarks.stats import paired_differences, t_interval

SOURCES = ("model", "truth")


@dataclass
class Config:
    scenario: str = "small"
    """Bundle path or preset name."""
    world_seed: int = 0
    split: Literal["train", "valid", "test", "all"] = "test"
    """Whose days are replayed ("all": every day of the logs)."""
    days: int | None = None
    """The split's first days only (None: all of them)."""
    max_requests: int | None = None
    """Each day's first requests only (None: the whole day)."""
    budget_scale: float = 1.0
    """Every daily budget times this."""
    slack: float = 0.1
    """The pacing rule's slack: an ad this far ahead of the clock (share of its budget) stops bidding."""
    seed: int = 0
    """Seeds the billing draws (with the day)."""
    pairs_per_book: int = 100_000
    """Request x ad pairs scored at once."""
    backend: Backend = "compiled"
    scorer_factory: str | None = None
    """module:name of a Scenario -> Scorer callable replacing the reward models and the truth (fakes, tests)."""
    out: Path = Path("results/market_replay")

    @classmethod
    def quick(cls, **overrides) -> Config:
        return cls(**{"scenario": "tiny", "split": "all", **overrides})


def run(config: Config) -> pd.DataFrame:
    """One row per (billing source, policy, day)."""
    from agents.rllib.env import open_env_context

    ctx, _ = open_env_context({"scenario": config.scenario, "world_seed": config.world_seed,
                               "scorer_factory": config.scorer_factory})
    requests = as_batch(logged_requests(ctx.scenario, None if config.split == "all" else config.split))
    days = np.unique(requests["day"])[: config.days]
    baselines = market_baselines(ctx.scenario, Pacing(config.slack))
    created = ctx.scenario.table("ads")["created_day"].to_numpy()
    rows = []
    for billing in (s for s in SOURCES if ctx.simulator.scorers.get(s) is not None):
        market = Market(ctx.simulator, MarketConfig(billing, config.budget_scale, backend=config.backend))
        for day in days:
            replayed = replay_day(market, requests_of_day(requests, int(day), config.max_requests), baselines,
                                  [config.seed, int(day)], config.pairs_per_book)
            rows += [{"billing": billing, "policy": name, "day": int(day), **_day_row(d, created <= day)}
                     for name, d in replayed.items()]
        print(f"market replay: {billing} billing, {len(days)} days", flush=True)
    return pd.DataFrame(rows)


def _day_row(day: MarketDay, live: np.ndarray) -> dict[str, float]:
    s = day.summary()
    spend, budget, shown = s["spend"], s["budget"], s["shown"] > 0
    return {"requests": s["requests"], "served": s["served"] / max(s["requests"], 1), "revenue": s["revenue"],
            "advertiser_value": s["advertiser_value"], "utilisation": spend[live].sum() / budget[live].sum(),
            "utilisation_shown": spend[shown].sum() / max(budget[shown].sum(), 1e-12),
            "exhausted_ads": s["exhausted_ads"], "constrained": s["constrained_requests"] / max(s["requests"], 1),
            "capped": s["capped_charges"], "overspend": s["overspend"],
            "overspent_ads": int((spend > budget).sum())}


def summarise(per_day: pd.DataFrame) -> pd.DataFrame:
    """Per (billing, policy): means over days, the revenue's and value's 95 % t half-widths."""
    rows = []
    for (billing, policy), g in per_day.groupby(["billing", "policy"], sort=False):
        revenue, value = t_interval(g["revenue"]), t_interval(g["advertiser_value"])
        means = g.drop(columns=["billing", "policy", "day"]).mean()
        rows.append({"billing": billing, "policy": policy, "days": len(g), "requests": means["requests"],
                     "revenue": revenue.mean, "revenue_ci": revenue.half_width, "advertiser_value": value.mean,
                     "value_ci": value.half_width,
                     **means.drop(["requests", "revenue", "advertiser_value"]).to_dict()})
    return pd.DataFrame(rows)


def overspend(per_day: pd.DataFrame) -> pd.DataFrame:
    """Per billing source: greedy eCPM paid per request (AdSim-v0's rule) against greedy eCPM in market mode."""
    rows = []
    for billing, g in per_day.groupby("billing", sort=False):
        per_request, market = (g[g["policy"] == p].set_index("day") for p in (PER_REQUEST, GREEDY))
        paid, in_market = per_request["revenue"].mean(), market["revenue"].mean()
        rows.append({"billing": billing, "days": len(per_request), "paid_per_request": paid,
                     "paid_in_market": in_market, "ratio": paid / in_market if in_market else np.nan,
                     "overspend": per_request["overspend"].mean(),
                     "overspend_share": per_request["overspend"].sum() / max(per_request["revenue"].sum(), 1e-12),
                     "overspent_ads": per_request["overspent_ads"].mean(),
                     "market_overspend": market["overspend"].max()})
    return pd.DataFrame(rows)


def pacing_verdicts(per_day: pd.DataFrame) -> str:
    """Does pacing beat plain greedy eCPM (paired by day, ``benchmarks.stats``' rule)?"""
    lines = []
    for billing, g in per_day.groupby("billing", sort=False):
        paced, greedy = (g[g["policy"] == p].set_index("day") for p in (PACED, GREEDY))
        for column in ("revenue", "advertiser_value"):
            gain = t_interval(paired_differences(paced[column], greedy[column]))
            lines.append(f"{billing} billing, {column}: pacing - greedy {gain} per day ({gain.verdict}, "
                         f"{gain.n} days)")
    return "; ".join(lines)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny scenario, all 7 days")
    add_dataclass_arguments(parser, Config)
    args = parser.parse_args(argv)
    config = dataclass_from_arguments(Config, args, Config.quick() if args.quick else None)
    per_day = run(config)
    settings = ", ".join(f"{k}={v}" for k, v in asdict(config).items() if k != "out")
    table = summarise(per_day)
    write_report(config.out, "market_replay", table, "Market replay: baselines over whole days, budgets binding",
                 notes=f"{pacing_verdicts(per_day)}.\n\nSettings: {settings}.")
    write_report(config.out, "overspend", overspend(per_day),
                 "Per-request (AdSim-v0) overspend: greedy eCPM paid without a ledger vs in market mode",
                 notes="paid_per_request: what greedy eCPM is charged per day when eligibility follows the budgets "
                       "as they ran out in the logs (AdSim-v0) and nothing is capped; paid_in_market: the same "
                       "policy when its own wins spend the budgets. overspend: spend beyond the daily budgets per "
                       f"day; market_overspend: the most in any market day (0 by construction).\n\nSettings: "
                       f"{settings}.")
    write_report(config.out, "market_replay_days", per_day, "Market replay, per day",
                 notes=f"Settings: {settings}.")
    return table


if __name__ == "__main__":
    main()
