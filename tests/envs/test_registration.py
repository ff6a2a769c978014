"""AdSim-v0 is reachable by name, on a bundle built by the full pipeline (logs, SIDs, reward models)."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import adsim  # noqa: F401  (registers AdSim-v0)
from adsim import AdSimDataError
from reward_models.pipeline import ensure_scenario


@pytest.fixture(scope="module")
def tiny_full():
    return ensure_scenario("tiny", seed=0, progress=False)


def test_make_by_name_on_a_preset_and_check_env(tiny_full):
    env = gym.make("AdSim-v0", scenario="tiny")
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0)
    done = False
    while not done:
        obs, reward, done, _, info = env.step(int(np.flatnonzero(obs["action_mask"])[0]))
    assert info["ad_id"] >= 0 and info["final_value"] > 0 and reward > 0
    assert "sid" in tiny_full.manifest and "reward_models" in tiny_full.manifest


def test_module_prefixed_id_and_vector_entry_point(tiny_full):
    env = gym.make("adsim:AdSim-v0", scenario="tiny", reward_source="truth")
    env.reset(seed=1)
    vec = gym.make_vec("AdSim-v0", num_envs=4, vectorization_mode="vector_entry_point", scenario="tiny")
    obs, _ = vec.reset(seed=0)
    assert obs["action_mask"].shape[0] == 4


def test_truth_and_model_rewards_differ_but_agree_in_scale(tiny_full):
    model = gym.make("AdSim-v0", scenario="tiny", reward_scale=1.0).unwrapped
    truth = gym.make("AdSim-v0", scenario="tiny", reward_scale=1.0, reward_source="truth").unwrapped
    values = {"model": [], "truth": []}
    for name, env in (("model", model), ("truth", truth)):
        obs, _ = env.reset(seed=3)
        for _ in range(50):
            done = False
            while not done:
                obs, reward, done, _, info = env.step(int(np.flatnonzero(obs["action_mask"])[-1]))
            values[name].append(info["final_value"])
            obs, _ = env.reset()
    ratio = np.mean(values["model"]) / np.mean(values["truth"])
    assert values["model"] != values["truth"] and 0.2 < ratio < 5


def test_bundle_without_sids_names_the_build_step(tiny_logs):
    with pytest.raises(AdSimDataError, match="adsim build"):
        gym.make("AdSim-v0", scenario=str(tiny_logs))


def test_import_adsim_stays_light():
    code = "import sys, adsim; print(sorted(m for m in ('torch', 'ray') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
