"""``adsim.ray_session``: what it passes to ``ray.init``, that it always shuts down, and that it leaves a running Ray
alone (a fake ``ray`` module: no Ray is started here; ``tests/agents/test_rllib_ray.py`` starts a real one)."""

from __future__ import annotations

import os
import sys
import types

import pytest

from adsim.ray_session import ray_session

SET = ("RAY_USAGE_STATS_ENABLED", "RAY_TMPDIR")
"""The variables ray_session sets for a private Ray (and restores after)."""


def ray_environ() -> dict[str, str]:
    return {k: os.environ[k] for k in SET if k in os.environ}


@pytest.fixture
def fake_ray(monkeypatch):
    calls: list = []
    ray = types.SimpleNamespace(initialized=False)
    ray.is_initialized = lambda: ray.initialized

    def init(**kwargs):
        calls.append(("init", kwargs, ray_environ()))
        ray.initialized = True

    def shutdown():
        calls.append(("shutdown",))
        ray.initialized = False

    ray.init, ray.shutdown, ray.calls = init, shutdown, calls
    monkeypatch.setitem(sys.modules, "ray", ray)
    for name in SET:
        monkeypatch.delenv(name, raising=False)
    return ray


def test_a_private_ray_gets_the_documented_defaults_and_the_environment_is_restored(fake_ray, tmp_path):
    with ray_session(num_cpus=3, temp_dir=tmp_path / "r"):
        assert fake_ray.initialized
    (_, kwargs, environ), shutdown = fake_ray.calls
    assert kwargs == {"include_dashboard": False, "log_to_driver": False, "configure_logging": False, "num_cpus": 3,
                      "_temp_dir": str((tmp_path / "r").resolve())}
    assert environ == {"RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": str((tmp_path / "r").resolve())}
    assert shutdown == ("shutdown",) and ray_environ() == {}


def test_local_means_a_private_ray_and_other_addresses_join_a_cluster(fake_ray):
    with ray_session("local"):
        pass
    with ray_session("auto", num_cpus=8, temp_dir="/ignored", log_to_driver=True):
        pass
    first, second = fake_ray.calls[0][1], fake_ray.calls[2][1]
    assert first["num_cpus"] is None and "address" not in first  # None: every core of the machine
    assert second == {"include_dashboard": False, "log_to_driver": True, "configure_logging": False,
                      "address": "auto"}


def test_it_shuts_down_on_errors_and_leaves_a_running_ray_alone(fake_ray):
    with pytest.raises(RuntimeError), ray_session():
        raise RuntimeError("boom")
    assert [c[0] for c in fake_ray.calls] == ["init", "shutdown"] and not fake_ray.initialized
    fake_ray.initialized = True
    with ray_session(num_cpus=1):
        pass
    assert len(fake_ray.calls) == 2 and fake_ray.initialized


def test_worker_runtime_env_sets_what_it_is_given_and_forwards_what_the_driver_has(monkeypatch):
    from adsim.ray_session import worker_runtime_env

    monkeypatch.setenv("ADSIM_FAULT_DIR", "/faults")
    monkeypatch.delenv("ADSIM_UNSET", raising=False)
    assert worker_runtime_env() == {}
    forwarded = worker_runtime_env(forward=("ADSIM_FAULT_DIR", "ADSIM_UNSET"))
    assert forwarded == {"env_vars": {"ADSIM_FAULT_DIR": "/faults"}}
    assert worker_runtime_env({"ADSIM_CACHE_DIR": "/c", "ADSIM_FAULT_DIR": "/mine"}, forward=("ADSIM_FAULT_DIR",)) == {
        "env_vars": {"ADSIM_CACHE_DIR": "/c", "ADSIM_FAULT_DIR": "/mine"}}
