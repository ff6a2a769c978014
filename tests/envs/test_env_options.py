"""Gymnasium conventions: every option checked at construction with an AdSimOptionError naming it, ``seed=``
refused for ``world_seed=`` / ``reset(seed=)``, an informative ansi render, ``render_fps``, AdSimFlat-v0."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import adsim  # noqa: F401  (registers the envs)
from adsim.errors import AdSimOptionError
from envs.adsim_env import AdSimEnv
from envs.flat import AdSimFlatEnv
from envs.vector_env import AdSimVectorEnv

BAD = {
    "reward": ("nope", "option reward:"),
    "reward_scale": ("big", "option reward_scale:"),
    "split": ("tarin", "option split:"),
    "illegal_action": ("ignore", "option illegal_action:"),
    "backend": ("gpu", "option backend:"),
    "reward_source": ("oracle", "option reward_source:"),
    "world_seed": (-1, "option world_seed:"),
}


@pytest.mark.parametrize(("option", "value", "message"), [
    *((name, value, message) for name, (value, message) in BAD.items()),
    ("reward_scale", 0.0, "option reward_scale:"),
    ("reward_scale", -2.0, "option reward_scale:"),
    ("process_alphas", (0.2, float("nan")), "option process_alphas:"),
    ("process_alphas", (0.2, -0.1), "option process_alphas:"),
    ("arr_ratio", 1.5, "option arr_ratio:"),
    ("arr_ratio", -0.1, "option arr_ratio:"),
    ("arr_ratio", float("nan"), "option arr_ratio:"),
])
def test_bad_options_fail_at_construction_naming_the_option(env_fixture, option, value, message):
    for make in (lambda kw: AdSimEnv(**kw), lambda kw: AdSimVectorEnv(2, **kw)):
        with pytest.raises(AdSimOptionError, match=message) as caught:
            make(env_fixture.kwargs(**{option: value}))
        assert caught.value.option == option


def test_seed_at_construction_points_to_world_seed_and_reset(env_fixture):
    with pytest.raises(AdSimOptionError, match=r"reset\(seed=.*world_seed") as caught:
        gym.make("AdSim-v0", **env_fixture.kwargs(seed=1))
    assert caught.value.option == "seed"
    with pytest.raises(TypeError, match="unexpected keyword argument 'frameskip'"):
        AdSimEnv(**env_fixture.kwargs(frameskip=4))


def test_truth_rewards_on_a_bundle_without_truth(env_fixture):
    from envs.context import open_context

    no_truth = open_context(env_fixture.path, scorer=env_fixture.context.simulator.scorers["model"], truth=None)
    with pytest.raises(AdSimOptionError, match="option reward_source:.*no 'truth' scorer"):
        AdSimEnv(scenario=env_fixture.path, context=no_truth, reward_source="truth")
    AdSimEnv(scenario=env_fixture.path, context=no_truth)  # the model's rewards are fine


def test_ansi_render_tells_the_episode(env_fixture):
    env = gym.make("AdSim-v0", render_mode="ansi", **env_fixture.kwargs())
    assert env.metadata["render_fps"] > 0
    obs, info = env.reset(seed=0)
    first = env.render()
    assert f"request {info['request_id']}" in first and "user " in first and "level 0: legal [" in first
    done = False
    while not done:
        action = int(np.flatnonzero(obs["action_mask"])[0])
        obs, reward, done, _, info = env.step(action)
    text = env.render()
    depth = env.unwrapped.depth
    assert all(f"level {d}: legal [" in text for d in range(depth)) and "-> chose" in text
    assert f"ad {info['ad_id']}" in text and "pctr" in text and "final_value" in text and "reward" in text


def test_flat_variant_passes_check_env_and_keeps_the_mask(env_fixture):
    env = gym.make("AdSimFlat-v0", **env_fixture.kwargs())
    flat = env.unwrapped if isinstance(env.unwrapped, AdSimFlatEnv) else env
    space = env.observation_space
    assert set(space.spaces) == {"observations", "action_mask"}
    assert isinstance(space["observations"], gym.spaces.Box) and isinstance(space["action_mask"], gym.spaces.Box)
    with pytest.warns(UserWarning, match="different from the unwrapped"):  # a wrapper, by design
        check_env(AdSimFlatEnv(**env_fixture.kwargs()), skip_render_check=True)
    obs, _ = env.reset(seed=0)
    inner = env.unwrapped
    assert np.array_equal(obs["action_mask"] > 0, inner.action_masks())
    assert np.array_equal(flat.get_wrapper_attr("action_masks")(), inner.action_masks())
    assert space["observations"].contains(obs["observations"])
