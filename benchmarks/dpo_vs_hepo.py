"""DPO vs HEPO (GPR Table 3) on a synthetic scenario: the whole chain, several seeds, honest intervals.

    python -m benchmarks.dpo_vs_hepo --preset quick     # tiny world, under 15 minutes on 2 cores
    python -m benchmarks.dpo_vs_hepo --preset full      # small world, longer runs (a GPU or a long night)
    adsim bench dpo-vs-hepo --preset quick              # the same, from the CLI

Per seed: MTP pre-training -> VAFT -> from the same VAFT checkpoint, with the same simulator budget: DPO, HEPO,
HEPO with ARR, HEPO without process rewards, GRPO. Every model is evaluated on the same held-out test requests
(``agents.posttrain.evaluation``) under the reward models and under the world's truth. Output: CSV + Markdown
(mean and 95% t-interval over seeds), a PNG of DPO's and HEPO's learning curves against simulator calls, and
verdicts on GPR's ordering HEPO > DPO > VAFT > MTP, judged per column by ``benchmarks.stats``' rule on the
seed-paired differences.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from adsim.arguments import add_dataclass_arguments, dataclass_from_arguments
from benchmarks.report import write_report
from benchmarks.stats import paired_differences, t_interval

POSTTRAIN = {
    "+DPO": {"method": "dpo"},
    "+HEPO": {"method": "hepo"},
    "+HEPO w/ ARR": {"method": "hepo", "arr_ratio": 0.3},
    "+HEPO w/o process rewards": {"method": "hepo", "process_rewards": False},
    "+GRPO": {"method": "grpo"},
}


@dataclass
class Preset:
    scenario: str = "tiny"
    """World preset or bundle path."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """One whole chain (MTP, VAFT, every post-training method) per seed."""
    n_embd: int = 32
    mtp_steps: int = 150
    vaft_steps: int = 60
    batch_size: int = 64
    """Pre-training and VAFT batch size."""
    iterations: int = 60
    """Post-training iterations of every method."""
    requests_per_iter: int = 16
    candidates: int = 8
    """K candidate paths per request while post-training."""
    lr: float = 1e-4
    """Post-training learning rate."""
    eval_requests: int = 200
    """Held-out test requests every model is scored on."""
    eval_k: int = 8
    """Beam candidates per test request."""


PRESETS = {
    "quick": Preset(),
    "full": Preset(scenario="small", n_embd=64, mtp_steps=600, vaft_steps=200, batch_size=256, iterations=100,
                   requests_per_iter=32, candidates=16, eval_requests=1000, eval_k=40),
    "smoke": Preset(seeds=(0, 1), n_embd=16, mtp_steps=20, vaft_steps=10, batch_size=32, iterations=3,
                    requests_per_iter=4, candidates=4, eval_requests=30, eval_k=4),
}


@dataclass
class Config:
    preset: Literal["quick", "full", "smoke"] = "quick"
    """A ``PRESETS`` entry; the preset options below override single settings of it."""
    out: Path = Path("results/dpo_vs_hepo")
    runs: Path = Path("runs/dpo_vs_hepo")
    """Checkpoints and curves."""
    settings: Preset = field(default_factory=Preset)


def run_seed(cfg: Config, seed: int) -> tuple[list[dict], dict[str, list[dict]]]:
    from agents.hhd.model import HHDConfig
    from agents.hhd.train import TrainConfig, train
    from agents.posttrain.evaluation import EvalSet, evaluate_policy
    from agents.posttrain.train import PolicyEnv, PostTrainConfig
    from agents.posttrain.train import train as posttrain

    p = cfg.settings
    base = cfg.runs / f"seed{seed}"
    rows, curves = [], {}
    test_env = PolicyEnv.open(p.scenario, 0, "test", (0.2, 0.1), TrainConfig().seq)
    evalset = EvalSet.build(test_env, p.eval_requests, p.eval_k, seed)

    def record(name: str, model, seconds: float, calls: int) -> None:
        row = {"model": name, "seed": seed, **evaluate_policy(model, test_env, evalset, p.eval_k),
               "simulator_calls": calls, "train_seconds": round(seconds, 1)}
        rows.append(row)
        print(f"  seed {seed} {name:<28} model avg/oracle {row['model/avg_over_oracle']:.3f} "
              f"truth avg/oracle {row['truth/avg_over_oracle']:.3f}", flush=True)

    # ---------------------------------------------------------------------------------- MTP -> VAFT
    started = time.perf_counter()
    mtp = train(TrainConfig(data=p.scenario, seed=seed, model=HHDConfig(n_embd=p.n_embd), steps=p.mtp_steps,
                            batch_size=p.batch_size, out=str(base / "mtp"), threads=1, log_every=10**9),
                verbose=False)
    record("MTP (base)", mtp.model, time.perf_counter() - started, 0)
    started = time.perf_counter()
    vaft = train(TrainConfig(data=p.scenario, seed=seed, stage="vaft", init_from=str(mtp.checkpoint),
                             steps=p.vaft_steps, batch_size=p.batch_size, out=str(base / "vaft"), threads=1,
                             log_every=10**9), verbose=False)
    record("+VAFT", vaft.model, time.perf_counter() - started, 0)

    # ---------------------------------------------------------------------------------- post-training
    train_env = PolicyEnv.open(p.scenario, 0, "train", (0.2, 0.1), TrainConfig().seq)
    common = PostTrainConfig(init_from=str(vaft.checkpoint), scenario=p.scenario, seed=seed,
                             iterations=p.iterations, requests_per_iter=p.requests_per_iter,
                             candidates=p.candidates, lr=p.lr)
    for name, overrides in POSTTRAIN.items():
        started = time.perf_counter()
        slug = name.strip("+").replace(" ", "_").replace("/", "")
        result = posttrain(replace(common, out=str(base / slug), **overrides), train_env, verbose=False)
        record(name, result.model, time.perf_counter() - started, result.curve[-1]["simulator_calls"])
        curves[name] = result.curve
    return rows, curves


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% t-interval half-width over seeds, per model and metric."""
    metrics = [c for c in runs.columns if c not in ("model", "seed")]
    out = []
    for name, group in runs.groupby("model", sort=False):
        row = {"model": name, "seeds": len(group)}
        for m in metrics:
            interval = t_interval(group[m].to_numpy(dtype=float))
            row[m] = f"{interval.mean:.4g} ± {interval.half_width:.2g}"
        out.append(row)
    return pd.DataFrame(out)


def verdicts(runs: pd.DataFrame) -> list[str]:
    """GPR's ordering HEPO > DPO > VAFT > MTP, checked per column with seed-paired differences."""
    order = ["+HEPO", "+DPO", "+VAFT", "MTP (base)"]
    columns = [c for c in runs.columns if c.split("/")[-1] in ("ndcg", "opr", "avg_final_value", "max_final_value")]
    lines = []
    for better, worse in zip(order[:-1], order[1:], strict=True):
        for col in columns:
            diff = t_interval(paired_differences(runs[runs["model"] == better].set_index("seed")[col],
                                                 runs[runs["model"] == worse].set_index("seed")[col]))
            if diff.n < 2:
                continue
            lines.append(f"- {better} > {worse} on {col}: {diff.verdict} (paired difference {diff}, {diff.n} seeds)")
    return lines


def plot_curves(curves: dict[str, list[list[dict]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name in ("+DPO", "+HEPO", "+HEPO w/ ARR", "+GRPO"):
        if name not in curves:
            continue
        runs = curves[name]
        x = np.array([r["simulator_calls"] for r in runs[0]])
        y = np.array([[r["final_value_mean"] for r in run] for run in runs])
        ax.plot(x, y.mean(axis=0), label=name)
        if len(runs) > 1:
            ax.fill_between(x, y.min(axis=0), y.max(axis=0), alpha=0.15)
    ax.set_xlabel("simulator calls (scored candidate paths)")
    ax.set_ylabel("mean final_value of sampled candidates")
    ax.set_title("Post-training learning curves (mean, min-max over seeds)")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_arguments(parser, Config, exclude=("settings",))
    add_dataclass_arguments(parser.add_argument_group("preset settings (defaults shown: the quick preset's)"), Preset)
    args = parser.parse_args(argv)
    cfg = dataclass_from_arguments(Config, args)
    settings = dataclass_from_arguments(Preset, args, PRESETS[cfg.preset])
    cfg = replace(cfg, settings=settings)

    started = time.perf_counter()
    rows, curves = [], {}
    for seed in settings.seeds:
        seed_rows, seed_curves = run_seed(cfg, seed)
        rows.extend(seed_rows)
        for name, curve in seed_curves.items():
            curves.setdefault(name, []).append(curve)
    runs = pd.DataFrame(rows)
    cfg.out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(cfg.out / "runs.csv", index=False)
    plot_curves(curves, cfg.out / "learning_curves.png")
    table = summarise(runs)
    keep = ["model", "seeds"] + [c for c in table.columns if c.startswith(("model/", "truth/"))
                                 and c.split("/")[1] in ("ndcg", "opr", "avg_over_oracle", "max_over_oracle",
                                                         "normalised_score")] + ["simulator_calls", "train_seconds"]
    notes = [f"Preset {cfg.preset}: {settings}. Wall time {time.perf_counter() - started:.0f} s.",
             "avg/max_over_oracle: average and best final_value of the K beam candidates divided by the request's "
             "oracle (GPR's normalised avg/max final_value); normalised_score: (avg - random legal) / (oracle - "
             "random legal). 'model' columns use the reward models the policies were trained against, 'truth' "
             "columns the world's true pCTR/pCVR.", "", "GPR reports HEPO > DPO > VAFT > MTP on every column. Here:",
             *verdicts(runs)]
    write_report(cfg.out, "dpo_vs_hepo", table[keep], title="DPO vs HEPO (GPR Table 3) on adsim",
                 notes="\n".join(notes))
    return runs


if __name__ == "__main__":
    main()
