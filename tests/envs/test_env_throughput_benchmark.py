"""The env throughput benchmark runs end to end with tiny settings and reports every figure as a ratio."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd

from benchmarks.env_throughput import random_legal


def test_quick_run_writes_every_table(tmp_path):
    run = subprocess.run([sys.executable, "-m", "benchmarks.env_throughput", "--quick", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    single = pd.read_csv(tmp_path / "single_env.csv")
    assert set(single["env"]) == {"CartPole-v1", "AdSim-v0 compiled", "AdSim-v0 reference"}
    assert (single.set_index("env").loc["CartPole-v1", "x CartPole-v1"]) == 1.0
    vector = pd.read_csv(tmp_path / "vector_env.csv")
    assert (vector["x SyncVectorEnv"] > 0).all() and len(vector) == 3
    for name in ("evaluate", "memory", "trie"):
        assert (tmp_path / f"{name}.md").read_text().startswith("# ")


def test_random_legal_indexes_into_the_legal_set():
    mask = np.array([[0, 1, 0, 1, 1], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=np.int8)
    assert random_legal(mask, np.array([0.0, 0.5, 0.99])).tolist() == [1, 0, 0]
    assert random_legal(mask, np.array([0.5, 0.0, 0.0])).tolist()[0] == 3
    assert random_legal(mask, np.array([0.999, 0.0, 0.0])).tolist()[0] == 4
