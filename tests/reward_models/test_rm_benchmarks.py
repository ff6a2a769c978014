"""Smoke runs of the reward-model benchmarks as the README runs them (``python -m``), on the tiny preset; the
Open Bandit part on the generated stand-in and on the real sample."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from adsim.paths import PROJECT_ROOT


def _run(module: str, out: Path, env: dict[str, str] | None = None) -> str:
    env = env or dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-m", module, "--quick", "--out", str(out)], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_reward_models_benchmark_quick(tmp_path, data_env):
    stdout = _run("benchmarks.reward_models", tmp_path, data_env)
    assert "Command: `python -m benchmarks.reward_models --quick" in stdout
    for name in ("metrics.csv", "truth.csv", "calibration.csv", "open_bandit.csv", "report.md", "reliability.png"):
        assert (tmp_path / name).stat().st_size > 0
    obd = pd.read_csv(tmp_path / "open_bandit.csv")
    assert set(obd["model"]) == {"LightGBM pCTR", "base rate (train CTR)"} and obd["auc"].notna().all()
    report = (tmp_path / "report.md").read_text()
    assert "never shown" in report and "Open Bandit" in report


def test_reward_scoring_benchmark_quick(tmp_path):
    stdout = _run("benchmarks.reward_scoring", tmp_path)
    table = pd.read_csv(tmp_path / "reward_scoring.csv")
    assert set(table["call"]) == {"RewardScorer.score", "Simulator.evaluate"}
    assert {"1x1", "1x40", "128x32"} <= set(table["layout"])
    assert (table[["x_reference", "x_forests", "forests_x_booster"]] > 0).all().all()
    assert "x_reference of evaluate at 4096" in stdout
    goals = pd.read_csv(tmp_path / "targets.csv", keep_default_na=False)
    assert len(goals) == 3 and (tmp_path / "targets.md").is_file() and (tmp_path / "targets.json").is_file()
    assert goals["verdict"].map(lambda v: v == "met" or v.startswith("short: ")).all()
    assert ((goals["verdict"] == "met") == (goals["cause"] == "")).all()  # a shortfall always has a cause
