"""Honest evaluation of the reward models on a scenario's held-out test split.

Two questions, because the world's truth is known:

1. How good are the models on the logs? AUC, log loss and calibration (ECE, predicted/observed by decile) of
   pCTR on the test impressions and pCVR on the test clicks.
2. How wrong is the reward where RL will look? Error against the true pCTR, pCVR and final_value on the logged
   (request, ad) pairs, and on ads drawn uniformly from each test request's eligible ads (targeting and
   ``created_day`` respected), most of which the logging policy never showed. The gap between the two is the
   simulator's blind spot. Both are broken down by user activity group and for new ads.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from adsim.data import Scenario
from reward_models.bundle import RewardModelsConfig, bundle_sid_codes, train_reward_models
from reward_models.metrics import calibration_table, classification_metrics, truth_errors
from reward_models.scorer import RewardScorer, TruthScorer
from reward_models.value import Scores

TRUTH_TARGETS = ("pctr", "pcvr", "final_value")


def sample_eligible_ads(scenario: Scenario, request_ids: np.ndarray, per_request: int, rng: np.random.Generator,
                        draws: int = 64, rounds: int = 20) -> np.ndarray:
    """(B, per_request) ads drawn uniformly (with replacement) among each request's eligible ads; -1 if none.

    Eligible: the ad's age, gender and region targeting admit the user, and the ad is live on the request's day.
    """
    ads, users, requests = scenario.table("ads"), scenario.table("users"), scenario.table("requests")
    user = requests["user_id"].to_numpy()[request_ids]
    day = requests["day"].to_numpy()[request_ids].astype(np.int64)
    age, gender, region = (users[c].to_numpy()[user].astype(np.int64)[:, None]
                           for c in ("age_bucket", "gender", "region"))
    masks = [ads[c].to_numpy().astype(np.int64) for c in ("target_age_mask", "target_gender_mask",
                                                          "target_region_mask")]
    created = ads["created_day"].to_numpy()
    out = np.full((len(request_ids), per_request), -1, dtype=np.int64)
    filled = np.zeros(len(request_ids), dtype=np.int64)
    for _ in range(rounds):
        need = np.flatnonzero(filled < per_request)
        if len(need) == 0:
            break
        cand = rng.integers(0, len(ads), size=(len(need), draws))
        ok = ((masks[0][cand] >> age[need]) & (masks[1][cand] >> gender[need]) & (masks[2][cand] >> region[need])
              & 1).astype(bool) & (created[cand] <= day[need, None])
        slot = np.cumsum(ok, axis=1) - 1 + filled[need, None]
        r, c = np.nonzero(ok & (slot < per_request))
        out[need[r], slot[r, c]] = cand[r, c]
        filled[need] = np.minimum(filled[need] + ok.sum(axis=1), per_request)
    return out


def _groups(scenario: Scenario, user: np.ndarray, ad: np.ndarray, day: np.ndarray) -> dict[str, np.ndarray]:
    """Row masks of the reported groups: all, each activity group, and new ads."""
    activity = scenario.table("users")["activity_group"].to_numpy()[user]
    created = scenario.table("ads")["created_day"].to_numpy().astype(np.int64)[ad]
    groups = {"all": np.ones(len(ad), dtype=bool)}
    groups.update({f"UG{g}": activity == g for g in range(1, 6)})
    groups["new ads (created after day 0)"] = created > 0
    groups["new ads (first 2 days live)"] = (created > 0) & (day - created < 2)
    return groups


def _truth_rows(sample: str, model: Scores, truth: Scores, groups: dict[str, np.ndarray]) -> list[dict]:
    rows = []
    for target in TRUTH_TARGETS:
        predicted, true = getattr(model, target).ravel(), getattr(truth, target).ravel()
        for group, mask in groups.items():
            errors = truth_errors(predicted[mask], true[mask])
            if target == "final_value":
                errors["logit_rmse"] = float("nan")  # not a probability
            rows.append({"target": target, "sample": sample, "group": group, **errors})
    return rows


def evaluate_scorer(scenario: Scenario, scorer: RewardScorer, max_requests: int = 20_000, per_request: int = 4,
                    seed: int = 0) -> dict[str, pd.DataFrame]:
    """Test-split metrics, calibration deciles and errors against the truth (see the module docstring)."""
    truth = TruthScorer(scenario, scorer.value_config)
    requests, imp = scenario.table("requests"), scenario.table("impressions")
    test_requests = np.flatnonzero(requests["split"].astype(str).to_numpy() == "test")
    imp = imp[np.isin(imp["request_id"].to_numpy(), test_requests)]
    req_id, ad = imp["request_id"].to_numpy(), imp["ad_id"].to_numpy()
    user, day = requests["user_id"].to_numpy(), requests["day"].to_numpy().astype(np.int64)

    # ---- 1. the logged test impressions: labels and truth at the logged slot
    position = imp["position"].to_numpy()[:, None]
    logged = scorer.score(req_id, ad[:, None], position)
    logged_truth = truth.score(req_id, ad[:, None], position)
    click, conversion = imp["click"].to_numpy(), imp["conversion"].to_numpy()
    pctr, pcvr = logged.pctr[:, 0], logged.pcvr[:, 0]
    metrics = pd.DataFrame([
        {"target": "pctr", "rows": "test impressions", **classification_metrics(click, pctr)},
        {"target": "pcvr", "rows": "test clicks", **classification_metrics(conversion[click], pcvr[click])},
    ])
    calibration = pd.concat([
        calibration_table(click, pctr).assign(target="pctr"),
        calibration_table(conversion[click], pcvr[click]).assign(target="pcvr"),
    ], ignore_index=True)
    rows = _truth_rows("logged", logged, logged_truth, _groups(scenario, user[req_id], ad, day[req_id]))

    # ---- 2. ads drawn uniformly among each request's eligible ones, at the top slot
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(test_requests, size=min(max_requests, len(test_requests)), replace=False))
    sampled = sample_eligible_ads(scenario, pick, per_request, rng)
    keep = (sampled >= 0).all(axis=1)
    pick, sampled = pick[keep], sampled[keep]
    uniform, uniform_truth = scorer.score(pick, sampled), truth.score(pick, sampled)
    pair_request = np.repeat(pick, per_request)
    groups = _groups(scenario, user[pair_request], sampled.ravel(), day[pair_request])
    shown = np.isin(sampled.ravel(), scenario.table("impressions")["ad_id"].unique())
    rows += _truth_rows("uniform eligible", uniform, uniform_truth, groups)
    rows += _truth_rows("uniform, never shown in the logs", uniform, uniform_truth,
                        {name: mask & ~shown for name, mask in groups.items()})
    return {"metrics": metrics, "calibration": calibration, "truth": pd.DataFrame(rows)}


def evaluate_rewards(scenario_path: str | Path | Scenario, out_dir: str | Path | None = None,
                     config: RewardModelsConfig | None = None, max_requests: int = 20_000,
                     seed: int = 0) -> dict[str, pd.DataFrame]:
    """Evaluate a bundle's reward models (training default ones first if the bundle has none).

    Args:
        scenario_path: a bundle directory (or an open Scenario).
        out_dir: if given, the tables are written there as CSV, a Markdown report and a reliability plot;
            models trained here go to ``out_dir / "models"``.
        config: for models trained here.
        max_requests: test requests drawn for the uniform-eligible sample (4 ads each).
        seed: of that draw.

    Returns:
        ``metrics`` (AUC, log loss, ECE ...), ``calibration`` (deciles) and ``truth`` (errors against the truth
        by sample and group) DataFrames.
    """
    scenario = scenario_path if isinstance(scenario_path, Scenario) else Scenario(scenario_path)
    with tempfile.TemporaryDirectory() as tmp:
        models = scenario.path / "reward_models"
        if not models.is_dir():
            models = Path(out_dir) / "models" if out_dir is not None else Path(tmp) / "models"
            train_reward_models(scenario, models, config, bundle_sid_codes(scenario.path))
        results = evaluate_scorer(scenario, RewardScorer.load(models, scenario), max_requests, seed=seed)
    if out_dir is not None:
        write_report(results, Path(out_dir), title=f"Reward models on {scenario.path}")
    return results


# ------------------------------------------------------------------------------------------------- output
def _markdown(df: pd.DataFrame) -> str:
    return df.to_markdown(index=False, floatfmt=".4g")


def truth_summary(truth: pd.DataFrame) -> pd.DataFrame:
    """Relative MAE and predicted/true ratio per target, logged vs never shown side by side (group 'all')."""
    top = truth[truth["group"] == "all"]
    table = top.pivot_table(index="target", columns="sample", values=["relative_mae", "predicted_over_true"],
                            sort=False)
    table.columns = [f"{metric}: {sample}" for metric, sample in table.columns]
    return table.reset_index()


def report_markdown(results: dict[str, pd.DataFrame], title: str, header: str = "") -> str:
    truth = results["truth"]
    columns = ["target", "sample", "group", "n", "mean_true", "mean_predicted", "predicted_over_true", "mae",
               "relative_mae", "logit_rmse", "correlation"]
    parts = [f"# {title}", header,
             "## Held-out test split (logged)", _markdown(results["metrics"]),
             "## Calibration by decile of the prediction", _markdown(results["calibration"]),
             "## Error against the true probabilities: logged vs never shown", _markdown(truth_summary(truth)),
             "## Error against the truth by sample and group", _markdown(truth[columns])]
    for name, table in results.items():
        if name not in ("metrics", "calibration", "truth"):
            parts += [f"## {name}", _markdown(table)]
    return "\n\n".join(p for p in parts if p) + "\n"


def reliability_plot(tables: dict[str, pd.DataFrame], path: Path) -> None:
    """Predicted vs observed rate per decile, one panel per table (columns ``predicted``, ``observed``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tables), figsize=(4.2 * len(tables), 4), squeeze=False)
    for ax, (name, table) in zip(axes[0], tables.items(), strict=True):
        top = max(table["predicted"].max(), table["observed"].max()) * 1.05
        ax.plot([0, top], [0, top], color="grey", lw=1, ls="--")
        ax.plot(table["predicted"], table["observed"], "o-")
        ax.set(title=name, xlabel="mean predicted", ylabel="observed rate", xlim=(0, top), ylim=(0, top))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(results: dict[str, pd.DataFrame], out_dir: Path, title: str, header: str = "") -> None:
    """``<name>.csv`` per table, ``report.md`` and ``reliability.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, df in results.items():
        df.to_csv(out_dir / f"{name}.csv", index=False)
    (out_dir / "report.md").write_text(report_markdown(results, title, header))
    calibration = results["calibration"]
    reliability_plot({f"{t} (test)": calibration[calibration["target"] == t] for t in calibration["target"].unique()},
                     out_dir / "reliability.png")
