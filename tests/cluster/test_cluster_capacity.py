"""When no worker can be had, the pool says so with an ``AdSimError`` in bounded time instead of waiting forever."""

from __future__ import annotations

import time

import pytest
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from adsim.errors import AdSimError
from adsim.world.shards import plant_fault
from cluster.simcluster import in_thread
from envs.distributed import DistributedSimulator


@ray.remote(num_cpus=1)
class Blocker:
    """Holds a CPU of one node."""

    def ping(self) -> bool:
        return True


def test_a_lost_node_with_every_other_cpu_taken_is_an_error_not_a_hang(sim_cluster, shipped):
    sim_cluster.restore()
    victim, other = sim_cluster.others()[:2]
    blockers = [Blocker.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote()
                for node in (sim_cluster.head_id, other)]
    ray.get([b.ping.remote() for b in blockers])
    try:
        with DistributedSimulator(shipped.copy, 1, call_timeout_s=4, max_restarts=3) as pool:
            assert pool.memory()[0]["node_id"] == victim, "the only free CPU"
            plant_fault("simulator-evaluate", "hang", node_id=victim)
            join = in_thread(lambda: pool.evaluate(shipped.requests, shipped.paths))
            sim_cluster.kill_when(f"simulator-evaluate@{victim}", victim)
            started = time.monotonic()
            with pytest.raises(AdSimError, match=r"no simulator worker left: 1 lost .*found no free CPU within 4 s"):
                join(60)
            assert time.monotonic() - started < 30
    finally:
        for blocker in blockers:
            ray.kill(blocker)
        sim_cluster.restore()


def test_workers_lost_beyond_max_restarts_is_an_error(shipped):
    with DistributedSimulator(shipped.copy, 1, call_timeout_s=10, max_restarts=0) as pool:
        plant_fault("simulator-oracle", "crash")
        with pytest.raises(AdSimError, match=r"no simulator worker left: 1 lost .*max_restarts spent"):
            pool.oracle(shipped.requests)
