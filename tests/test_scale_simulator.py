"""The actor pool returns exactly the single-process simulator's arrays, also after an actor dies mid-call (one
machine; ``tests/cluster`` loses whole nodes)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from adsim import Scenario, build_scenario
from adsim.simulator.requests import RequestStream
from adsim.world.shards import FAULT_DIR_ENV
from envs.distributed import DistributedSimulator, SimulatorWorker

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A tiny bundle with SIDs and LightGBM reward models (about 4 s)."""
    from reward_models.pipeline import default_steps

    return build_scenario(tmp_path_factory.mktemp("sim") / "b", "tiny", seed=5, progress=False, steps=default_steps())


@pytest.fixture(scope="module")
def faults(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def pool(bundle, faults) -> Iterator[DistributedSimulator]:
    """Two actors on a private 2-CPU Ray; they see the fault-injection directory ``faults``."""
    ray_tmp = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must stay under 108 bytes
    with pytest.MonkeyPatch.context() as env:
        env.setenv(FAULT_DIR_ENV, str(faults))
        env.setenv("RAY_TMPDIR", ray_tmp)
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
        try:
            with DistributedSimulator(bundle, num_workers=2) as simulator:
                yield simulator
        finally:
            ray.shutdown()
            shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def local(bundle) -> SimulatorWorker:
    return SimulatorWorker(str(bundle))


@pytest.fixture(scope="module")
def batch(bundle, local):
    """301 requests (a fifth anticipatory) x 6 candidate paths: real ad codes, some with a random last token."""
    requests = RequestStream(Scenario(bundle), "train", seed=0).sample(301, np.random.default_rng(0), arr_ratio=0.2)
    rng = np.random.default_rng(1)
    codes = local.simulator.ad_codes
    paths = codes[rng.integers(0, len(codes), size=(301, 6))]
    paths[:, :2, -1] = rng.integers(0, local.simulator.trie.width, size=(301, 2))
    return requests, paths


def _assert_same(got, expected):
    for name in expected._fields:
        a, b = getattr(got, name), getattr(expected, name)
        assert (a is None and b is None) or (a.dtype == b.dtype and np.array_equal(a, b)), name


@pytest.mark.parametrize("reward_source", ["model", "truth"])
def test_evaluate_and_oracle_equal_the_single_process_simulator(pool, local, batch, reward_source):
    requests, paths = batch
    local_calls, pool_calls = local.simulator.calls, pool.calls
    expected = local.simulator.evaluate(requests, paths, reward_source)
    assert 0 < expected.valid.mean() < 1
    _assert_same(pool.evaluate(requests, paths, reward_source), expected)
    assert pool.calls - pool_calls == local.simulator.calls - local_calls > 0, "pairs scored, added up"
    best, best_ad = local.simulator.oracle(requests, reward_source)
    got_best, got_ad = pool.oracle(requests, reward_source)
    np.testing.assert_array_equal(got_best, best)
    np.testing.assert_array_equal(got_ad, best_ad)


def test_batches_and_explicit_masks_and_tiny_batches(pool, local, batch):
    requests, paths = batch
    allowed = local.simulator.allowed(requests)
    allowed[:, ::3] = False
    expected = local.simulator.evaluate(requests, paths, allowed=allowed)
    _assert_same(pool.evaluate(requests, paths, allowed=allowed), expected)
    halves = [({k: v[:150] for k, v in requests.items()}, paths[:150]),
              ({k: v[150:] for k, v in requests.items()}, paths[150:])]
    for got, (r, p) in zip(pool.evaluate_batches(halves), halves, strict=True):
        _assert_same(got, local.simulator.evaluate(r, p))
    one = {k: v[:1] for k, v in requests.items()}
    _assert_same(pool.evaluate(one, paths[:1]), local.simulator.evaluate(one, paths[:1]))
    np.testing.assert_array_equal(pool.oracle(one)[1], local.simulator.oracle(one)[1])


def test_an_actor_killed_mid_call_is_restarted_and_the_call_retried(pool, local, batch, faults):
    requests, paths = batch
    pids = {m["pid"] for m in pool.memory()}
    marker = faults / "simulator-evaluate.crash"
    marker.touch()
    _assert_same(pool.evaluate(requests, paths), local.simulator.evaluate(requests, paths))
    assert not marker.exists() and marker.with_suffix(".crashed").exists(), "an actor died"
    assert pool.wait_for_workers(60) == 2 and pool.lost[-1] == "ActorDiedError during evaluate"
    assert len({m["pid"] for m in pool.memory()} - pids) == 1, "and was replaced by a fresh process"
    (faults / "simulator-oracle.crash").touch()
    np.testing.assert_array_equal(pool.oracle(requests)[0], local.simulator.oracle(requests)[0])
    assert pool.wait_for_workers(60) == 2 and len(pool.lost) == 2


def test_workers_report_bounded_memory(pool):
    memory = pool.memory()
    assert len(memory) == 2 and all(0 < m["uss_mb"] <= m["rss_mb"] < 2048 for m in memory)
