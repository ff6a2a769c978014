"""Sharded builds on three nodes: shards bound to nodes, no user state in the driver, identical bundles after a node
is SIGKILLed mid-build, worker settings through ``runtime_env``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from adsim import World, build_scenario
from adsim.world import preset
from adsim.world.logs import generate_logs
from adsim.world.shards import FAULT_DIR_ENV, generate_logs_ray, plant_fault, worker_env
from cluster.simcluster import in_thread

CONFIG = preset("tiny").replace(n_shards=3)
"""Three shards: one home per node."""


def _files(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    return build_scenario(tmp_path_factory.mktemp("single") / "b", config=CONFIG, seed=3, progress=False)


def test_worker_settings_reach_every_node_through_runtime_env(sim_cluster):
    @ray.remote(num_cpus=1)
    def settings() -> tuple[str | None, str | None]:
        return os.environ.get("ADSIM_CACHE_DIR"), os.environ.get(FAULT_DIR_ENV)

    for node in sim_cluster.alive():
        on = NodeAffinitySchedulingStrategy(node, soft=False)
        assert ray.get(settings.options(scheduling_strategy=on).remote()) == (str(sim_cluster.caches[node]), None)
        told = settings.options(scheduling_strategy=on, runtime_env=worker_env({"ADSIM_CACHE_DIR": "/elsewhere"}))
        assert ray.get(told.remote()) == ("/elsewhere", os.environ[FAULT_DIR_ENV]), "what the driver said"


def test_shards_live_on_their_home_nodes_and_the_driver_holds_no_user_state(sim_cluster):
    world = World(CONFIG, seed=3)
    logs = generate_logs_ray(world)
    try:
        days = list(logs)
    finally:
        logs.close()
    assert world.users.interests is None and world.users.interest_weights is None, "generated on a worker"
    assert len(world.users.table) == CONFIG.n_users
    assert sorted(set(logs.homes.values())) == sorted(sim_cluster.alive()), "one shard per node"
    assert all(node == logs.homes[shard] for (_, shard), node in logs.ran_on.items()), "every day at home"
    for got, expected in zip(days, generate_logs(World(CONFIG, seed=3)), strict=True):
        for name in ("requests", "impressions", "organic_events"):
            assert getattr(got, name).equals(getattr(expected, name)), name


def test_sharded_build_is_identical_with_a_node_sigkilled_mid_build(sim_cluster, single, tmp_path):
    victim = sim_cluster.others()[0]
    plant_fault("shard*-day3", "hang", node_id=victim)  # the victim's shard-day 3 hangs there until it dies
    join = in_thread(lambda: build_scenario(tmp_path / "b", config=CONFIG, seed=3, progress=False,
                                            ray_address=sim_cluster.cluster.address))
    try:
        sim_cluster.kill_when(f"shard*-day3@{victim}", victim)
        built = join(120)
    finally:
        sim_cluster.restore()
    assert _files(built) == _files(single)
