"""The env on bad input: a scenario option that names no usable bundle, and ``set_state`` with malformed or
inconsistent snapshots (both backends), each an AdSimError naming the option or the state key; a refused snapshot
leaves the env exactly as it was (the next step is the step it would have taken)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from reliability_support import _private_cache, refused  # noqa: F401  (fixtures)

from adsim.errors import AdSimDataError, AdSimOptionError, AdSimStateError
from envs.adsim_env import AdSimEnv


def test_scenario_that_is_not_a_bundle(tmp_path):
    with refused(tmp_path, AdSimDataError, str(tmp_path / "nowhere"), "no such bundle directory"):
        AdSimEnv(scenario=str(tmp_path / "nowhere"))


def test_scenario_with_a_broken_manifest(tmp_path):
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "manifest.json").write_text("[]")
    with refused(tmp_path, AdSimDataError, "manifest.json", "JSON object"):
        AdSimEnv(scenario=str(tmp_path / "bundle"))


def test_preset_with_a_negative_seed_names_the_option(private_cache):
    with refused(private_cache.parent, AdSimOptionError, "option world_seed:"):
        AdSimEnv(scenario="tiny", world_seed=-1)


@pytest.fixture(params=["reference", "compiled"])
def played(request, env_fixture):
    """An env one legal step into an episode, its snapshot, and the step the snapshot leads to."""
    env = AdSimEnv(**env_fixture.kwargs(backend=request.param))
    obs, _ = env.reset(seed=4)
    obs, *_ = env.step(int(np.flatnonzero(obs["action_mask"])[0]))
    state = env.get_state()
    action = int(np.flatnonzero(obs["action_mask"])[-1])
    after = env.step(action)
    env.set_state(state)
    return env, state, action, after, request.param


def _episodes(state, backend):
    return state["episodes"] if backend == "reference" else state["episodes"]["arrays"]


def _put(name, value_of):
    """Replace episode array ``name`` with ``value_of(the array)``."""
    def breaker(state, env, backend):
        arrays = _episodes(state, backend)
        arrays[name] = value_of(arrays[name])
        return state

    return breaker


def _set_item(name, index, value):
    def breaker(state, env, backend):
        _episodes(state, backend)[name][index] = value
        return state

    return breaker


def _not_a_dict(state, env, backend):
    return [1, 2]


def _drop_episodes(state, env, backend):
    state.pop("episodes")
    return state


def _rng(value):
    def breaker(state, env, backend):
        state["rng"] = value
        return state

    return breaker


def _illegal_code(state, env, backend):
    """A code at the current level that leads to no ad the request may see."""
    obs = env.set_state(copy.deepcopy(state))
    arrays = _episodes(state, backend)
    arrays["prefix"][0, int(obs["level"][0])] = int(np.flatnonzero(obs["action_mask"] == 0)[0])
    if backend == "compiled":  # keep the kernels' bookkeeping in step, so the path itself is what is wrong
        arrays["level"][0] += 1
        arrays["obs_level"][0, 0] = min(int(arrays["level"][0]), arrays["prefix"].shape[1] - 1)
    return state


def _other_features(state, env, backend):
    if backend == "reference":
        state["episodes"]["features"]["user"] += 1
    else:
        state["episodes"]["arrays"]["user"] += 1
    return state


def _unknown_request(state, env, backend):
    if backend == "reference":
        state["episodes"]["requests"]["request_id"][0] = 10**9
    else:
        state["episodes"]["arrays"]["table_row"][0] = 10**9
    return state


CASES = {  # name: (break the snapshot, state key named, needle)
    "not a dict": (_not_a_dict, None, "must be a dict"),
    "episodes missing": (_drop_episodes, None, "keys ['episodes', 'rng']"),
    "rng garbage": (_rng({"bit_generator": "PCG64", "state": 3}), "rng", "not a valid PCG64 state"),
    "rng of another generator": (_rng({"bit_generator": "MT19937"}), "rng", "PCG64 bit generator state"),
    "prefix wrong shape": (_put("prefix", lambda a: a[:, :1]), "prefix", "of shape"),
    "prefix wrong dtype": (_put("prefix", lambda a: a.astype(np.int32)), "prefix", "must be int64"),
    "prefix a list": (_put("prefix", lambda a: a.tolist()), "prefix", "numpy array"),
    "code out of range": (_set_item("prefix", (0, 0), 10**6), "prefix", "outside -1.."),
    "code after an open level": (_set_item("prefix", (0, -1), 0), "prefix", "after an open level"),
    "path to no eligible ad": (_illegal_code, "prefix", "leads to no ad"),
    "mask of another prefix": (_put("mask", lambda a: ~a), "mask", "legal mask is not its prefix's"),
    "done with legal actions": (_set_item("done", 0, True), "mask", "is done but still has legal actions"),
    "features of another request": (_other_features, None, "features are not those"),
    "request not of this env": (_unknown_request, None, "request"),
}
def _edited_request(state, env, backend):
    state["episodes"]["requests"]["user_id"][0] += 1
    return state


def _edited_node(state, env, backend):
    state["episodes"]["arrays"]["node"][0] += 1
    return state


CASES["request edited"] = (_edited_request, "user_id", "differs from its request's")
CASES["trie node edited"] = (_edited_node, "node", "trie node disagrees")
BACKEND_CASES = {"request edited": "reference", "trie node edited": "compiled"}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_snapshot_is_refused_and_the_env_is_unchanged(played, case):
    env, state, action, after, backend = played
    if BACKEND_CASES.get(case, backend) != backend:
        pytest.skip(f"{case}: a {BACKEND_CASES[case]} state field")
    breaker, key, needle = CASES[case]
    bad = breaker(copy.deepcopy(state), env, backend)
    with refused(None, AdSimStateError, needle, *([key] if key else [])):
        env.set_state(bad)
    again = env.step(action)  # the refused snapshot changed nothing
    assert again[1] == after[1] and again[2] == after[2] and again[4] == after[4]
