"""The simulator pool on three nodes: each node opens its own copy of a bundle the driver no longer has, and
``evaluate`` / ``oracle`` return the single-process arrays with a node SIGKILLed mid-call or a worker hung."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adsim.data.bundle import MANIFEST
from adsim.world.shards import plant_fault
from cluster.simcluster import assert_same, in_thread
from envs.distributed import BUNDLES, DistributedSimulator


@pytest.fixture(scope="module")
def pool(sim_cluster, shipped) -> Iterator[DistributedSimulator]:
    """Three actors, one per node, on the shipped bundle."""
    sim_cluster.restore()
    with DistributedSimulator(shipped.copy, 3, call_timeout_s=30, max_restarts=10) as simulator:
        yield simulator


def _call(pool, shipped, method: str, source: str = "model"):
    if method == "evaluate":
        return pool.evaluate(shipped.requests, shipped.paths, source)
    return pool.oracle(shipped.requests, source)


def test_every_node_opens_its_own_copy_and_none_reads_the_drivers_path(sim_cluster, shipped, pool):
    assert not shipped.driver_path.exists()
    memory = pool.memory()
    assert sorted(m["node_id"] for m in memory) == sorted(sim_cluster.alive()), "one actor per node"
    for m in memory:
        copy = sim_cluster.caches[m["node_id"]] / BUNDLES / shipped.copy.digest[:32]
        assert m["bundle"] == str(copy) and (copy / MANIFEST).is_file(), "in the node's own cache"
    for method in ("evaluate", "oracle"):
        for source in ("model", "truth"):
            assert_same(_call(pool, shipped, method, source), shipped.expected[method, source])


@pytest.mark.parametrize("method", ["evaluate", "oracle"])
def test_identical_answers_with_a_node_sigkilled_mid_call(sim_cluster, shipped, pool, method):
    victim = sim_cluster.others()[0]
    lost = len(pool.lost)
    plant_fault(f"simulator-{method}", "hang", node_id=victim)  # the victim's actor hangs in the call
    join = in_thread(lambda: _call(pool, shipped, method))
    try:
        sim_cluster.kill_when(f"simulator-{method}@{victim}", victim)
        got = join(60)
    finally:
        sim_cluster.restore()
    assert_same(got, shipped.expected[method, "model"])
    assert len(pool.lost) == lost + 1 and method in pool.lost[-1]
    assert pool.wait_for_workers(60) == 3, "the replacement started once the new node had a free CPU"
    assert_same(_call(pool, shipped, method), shipped.expected[method, "model"])


def test_a_hung_worker_is_timed_out_and_its_rows_go_to_the_others(shipped, pool):
    lost = len(pool.lost)
    plant_fault("simulator-evaluate", "hang")
    pool.call_timeout_s = 3
    try:
        assert_same(_call(pool, shipped, "evaluate"), shipped.expected["evaluate", "model"])
    finally:
        pool.call_timeout_s = 30
    assert pool.lost[lost:] == ["no answer to evaluate for 3 s"]
    assert pool.wait_for_workers(60) == 3


def test_whole_batches_survive_a_crashed_worker(shipped, pool):
    lost = len(pool.lost)
    plant_fault("simulator-evaluate", "crash")
    cuts = [(0, 100), (100, 170), (170, 240)]
    batches = [({k: v[a:b] for k, v in shipped.requests.items()}, shipped.paths[a:b]) for a, b in cuts]
    expected = shipped.expected["evaluate", "model"]
    for got, (a, b) in zip(pool.evaluate_batches(batches), cuts, strict=True):
        assert_same(got, type(expected)(*(None if x is None else x[a:b] for x in expected)))
    assert len(pool.lost) == lost + 1 and pool.wait_for_workers(60) == 3
