"""``python -m benchmarks.scale --quick`` runs end to end, reports identical results for every worker count, memory
and object-store peaks, and the cluster estimate."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def test_scale_benchmark_quick(tmp_path):
    ray_tmp = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must stay under 108 bytes
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_TMPDIR": ray_tmp, "RAY_USAGE_STATS_ENABLED": "0"}
    try:
        done = subprocess.run([sys.executable, "-m", "benchmarks.scale", "--quick", "--out", str(tmp_path / "out")],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(tmp_path / "out" / "scale.csv")
    assert set(table["stage"]) == {"build", "evaluate", "oracle"}
    assert set(table["workers"]) == {0, 1, 2}
    pooled = table[table["workers"] > 0]
    assert pooled["identical"].all() and (pooled["worker_peak_uss_mb"] > 0).all()
    # the object store is sampled every 0.5 s: a tiny build can finish between two samples
    assert pooled["object_store_peak_mb"].max() > 0 and (table["driver_peak_rss_mb"] > 0).all()
    estimate = pd.read_csv(tmp_path / "out" / "scale_estimate.csv")
    assert list(estimate["nodes"]) == [0, 8, 16, 32] and (estimate["estimated_s"] >= 0).all()
    assert (estimate["speedup"].iloc[1:] >= 1).all()
    assert "Command: `python -m benchmarks.scale --quick" in (tmp_path / "out" / "scale.md").read_text()
