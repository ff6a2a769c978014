"""The env throughput benchmark runs end to end with tiny settings, reports every figure as a ratio and states
every target (met, or the shortfall with its profiled cause); its trivial reference env has AdSim-v0's spaces.
The rllib table (Ray) is smoke-tested in tests/agents/test_rllib_ray.py."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd

from benchmarks.env_throughput import SINGLE_PROFILE, VECTOR_PROFILE, profile_shares, random_legal
from benchmarks.trivial_env import TrivialMaskedEnv


def test_quick_run_writes_every_table(tmp_path):
    run = subprocess.run([sys.executable, "-m", "benchmarks.env_throughput", "--quick", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    single = pd.read_csv(tmp_path / "single_env.csv")
    assert set(single["env"]) == {"CartPole-v1", "AdSim-v0 compiled", "AdSim-v0 reference"}
    assert (single.set_index("env").loc["CartPole-v1", "x CartPole-v1"]) == 1.0
    vector = pd.read_csv(tmp_path / "vector_env.csv")
    assert (vector["x SyncVectorEnv"] > 0).all() and len(vector) == 3
    for name in ("evaluate", "memory", "trie", "profile", "targets"):
        assert (tmp_path / f"{name}.md").read_text().startswith("# ")
        assert (tmp_path / f"{name}.json").is_file()
    assert not (tmp_path / "rllib.csv").exists()  # --quick leaves Ray out unless --only names it
    parts = pd.read_csv(tmp_path / "profile.csv")
    assert set(parts["part"]) == set(SINGLE_PROFILE) | set(VECTOR_PROFILE)
    assert (parts["share"] > 0).all(), "a profiled function was renamed: update SINGLE_PROFILE / VECTOR_PROFILE"
    goals = pd.read_csv(tmp_path / "targets.csv", keep_default_na=False).set_index("target")
    assert len(goals) == 5
    rllib = next(t for t in goals.index if t.startswith("RLlib"))
    assert goals.loc[rllib, "measured"] == "not measured in this run"
    measured = goals.drop(index=rllib)
    assert measured["verdict"].map(lambda v: v == "met" or v.startswith("short: ")).all()
    assert ((measured["verdict"] == "met") == (measured["cause"] == "")).all()  # a shortfall always has a cause


def test_random_legal_indexes_into_the_legal_set():
    mask = np.array([[0, 1, 0, 1, 1], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=np.int8)
    assert random_legal(mask, np.array([0.0, 0.5, 0.99])).tolist() == [1, 0, 0]
    assert random_legal(mask, np.array([0.5, 0.0, 0.0])).tolist()[0] == 3
    assert random_legal(mask, np.array([0.999, 0.0, 0.0])).tolist()[0] == 4


def test_profile_shares_are_of_the_profiled_time():
    def inner():
        return sum(range(20_000))

    def outer():
        for _ in range(20):
            inner()

    shares = profile_shares(outer, {"inner": ("test_env_throughput_benchmark.inner",), "none": ("x.missing",)})
    assert 0.5 < shares["inner"] <= 1.0 and shares["none"] == 0.0


def test_trivial_env_has_adsim_spaces_and_episodes(env_fixture):
    from envs.adsim_env import AdSimEnv

    adsim = AdSimEnv(context=env_fixture.context)
    env = TrivialMaskedEnv({"observation_space": adsim.observation_space, "action_space": adsim.action_space,
                            "depth": adsim.depth})
    assert env.observation_space == adsim.observation_space and env.action_space == adsim.action_space
    for _ in range(3):
        obs, _ = env.reset()
        for level in range(adsim.depth):
            assert env.observation_space.contains(obs) and obs["level"][0] == level and obs["action_mask"].any()
            obs, reward, terminated, truncated, info = env.step(int(np.flatnonzero(obs["action_mask"])[0]))
            assert terminated == (level == adsim.depth - 1) and not truncated
        assert reward == 1.0 and info["final_value"] == 1.0 and not obs["action_mask"].any()
