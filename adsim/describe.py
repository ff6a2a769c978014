"""A human summary of a scenario bundle: sizes, response rates, bids, exposure and cold start."""

from __future__ import annotations

import numpy as np

from adsim.data.bundle import Scenario


def summarize(scenario: Scenario) -> dict:
    """The numbers ``adsim describe`` prints, as a dict (also used by tests and benchmarks)."""
    users, ads = scenario.table("users"), scenario.table("ads")
    requests, impressions = scenario.table("requests"), scenario.table("impressions")
    clicks = impressions["click"].to_numpy()
    shown = np.unique(impressions["ad_id"].to_numpy())
    new_ad = ads["created_day"].to_numpy()[impressions["ad_id"].to_numpy()] > 0
    bids = ads.groupby("goal", observed=True)["bid"]
    quantiles = bids.quantile([0.5, 0.9, 0.99]).unstack().rename(columns=lambda q: f"p{int(q * 100)}")
    quantiles["max/median"] = bids.max() / quantiles["p50"]
    return {
        "rows": {name: len(scenario.table(name)) for name in
                 ("users", "ads", "organic_items", "organic_events", "requests", "impressions")},
        "days": int(requests["day"].max()) + 1 if len(requests) else 0,
        "split_requests": requests["split"].value_counts().reindex(["train", "valid", "test"]).fillna(0).astype(int)
        .to_dict(),
        "ctr": float(clicks.mean()) if len(clicks) else float("nan"),
        "cvr_per_click": float(impressions.loc[impressions["click"], "conversion"].mean()) if clicks.any() else float(
            "nan"),
        "ctr_by_position": impressions.groupby("position")["click"].mean().to_dict(),
        "bid_quantiles_by_goal": quantiles.round(3).to_dict(orient="index"),
        "inventory_shown_share": len(shown) / max(len(ads), 1),
        "users_by_activity_group": users["activity_group"].value_counts().sort_index().to_dict(),
        "new_ad_share": float((ads["created_day"] > 0).mean()),
        "impressions_on_new_ads": float(new_ad.mean()) if len(new_ad) else float("nan"),
        "total_cost": float(impressions["cost"].sum()),
        "total_gmv": float(impressions["gmv"].sum()),
    }


def render(scenario: Scenario) -> str:
    s = summarize(scenario)
    m = scenario.manifest
    lines = [
        f"scenario {scenario.path}",
        f"  source {m.get('source')}, preset {m.get('preset')}, seed {m.get('seed')}, "
        f"adsim {m.get('package_version')}, generator v{m.get('generator_version')}",
        "  rows: " + ", ".join(f"{k} {v:,}" for k, v in s["rows"].items()),
        f"  days {s['days']}; requests by split " + ", ".join(f"{k} {v:,}" for k, v in s["split_requests"].items()),
        f"  CTR {s['ctr']:.2%}, CVR per click {s['cvr_per_click']:.2%}; CTR by position "
        + ", ".join(f"{k}: {v:.2%}" for k, v in s["ctr_by_position"].items()),
        f"  inventory ever shown by the logging policy: {s['inventory_shown_share']:.1%}",
        f"  ads created after day 0 (cold start): {s['new_ad_share']:.1%} of inventory, "
        f"{s['impressions_on_new_ads']:.1%} of impressions",
        "  users per activity group: " + ", ".join(f"UG{k} {v:,}" for k, v in s["users_by_activity_group"].items()),
        f"  spend {s['total_cost']:,.0f}, GMV {s['total_gmv']:,.0f}",
        "  bid quantiles by goal:",
        "    goal    p50        p90        p99        max/median",
    ]
    for goal, q in s["bid_quantiles_by_goal"].items():
        lines.append(f"    {goal:<6}{q['p50']:<11.3f}{q['p90']:<11.3f}{q['p99']:<11.3f}{q['max/median']:.1f}")
    for key in ("sid", "reward_models"):
        if key in m:
            lines.append(f"  {key}: " + ", ".join(f"{k} {v}" for k, v in m[key].items() if not isinstance(v, dict)))
    if "branching" in m:
        b = m["branching"]
        lines.append(f"  decisions per SID level (random legal walks of {b['requests']} train requests): median legal "
                     f"codes {b['median_legal']}, forced (one legal code) {[f'{x:.0%}' for x in b['forced_share']]}")
    for name in ("pctr", "pcvr"):
        gate = m.get("reward_models", {}).get(name, {}).get("gate")
        if gate:
            lines.append(f"  quality gate {name}: {'passed' if gate['passed'] else 'FAILED'} (held-out AUC "
                         f"{gate['auc']:.3f} +- {gate.get('auc_se', float('nan')):.3f} vs floor {gate['min_auc']}, "
                         f"prediction spread {gate['relative_spread']:.3f} of the mean, {gate['n']:,} rows, "
                         f"{gate['positives']:,} positives)")
    return "\n".join(lines)
