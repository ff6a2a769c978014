"""Sharded log generation: Ray builds equal single-process builds, survive killed workers, keep budgets per shard."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from adsim import Scenario, World, build_scenario
from adsim.cli import add_ray_build_arguments, ray_build_options
from adsim.errors import AdSimError
from adsim.world import preset
from adsim.world.logs import DayMerger, ShardLogger, ShardPlan, generate_logs, retrieval_lists
from adsim.world.shards import FAULT_DIR_ENV, generate_logs_ray

ray = pytest.importorskip("ray")

@pytest.fixture(scope="module", autouse=True)
def faults(tmp_path_factory) -> Iterator[Path]:
    """A private 2-CPU Ray for the module; its workers see the returned fault-injection directory."""
    directory = tmp_path_factory.mktemp("faults")
    ray_tmp = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must stay under 108 bytes
    with pytest.MonkeyPatch.context() as env:
        env.setenv(FAULT_DIR_ENV, str(directory))
        env.setenv("RAY_TMPDIR", ray_tmp)
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
        try:
            yield directory
        finally:
            ray.shutdown()
            shutil.rmtree(ray_tmp, ignore_errors=True)


def _files(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    return build_scenario(tmp_path_factory.mktemp("single") / "b", "tiny", seed=3, progress=False)


def test_ray_build_is_byte_identical_to_the_single_process_build(single, tmp_path):
    sharded = build_scenario(tmp_path / "b", "tiny", seed=3, progress=False, ray_address="local", num_workers=2)
    assert _files(sharded) == _files(single)  # manifest included: nothing records how the logs were run


def test_shard_count_is_part_of_the_data_not_of_the_machine(single, tmp_path):
    three = build_scenario(tmp_path / "seq", "tiny", seed=3, progress=False, n_shards=3)
    assert Scenario(three).manifest["preset"] == "custom" and Scenario(three).config.n_shards == 3
    assert _files(three)["tables/requests.parquet"] != _files(single)["tables/requests.parquet"]
    one_worker = build_scenario(tmp_path / "ray", "tiny", seed=3, progress=False, n_shards=3,
                                ray_address="local", num_workers=1)
    assert _files(one_worker) == _files(three)


def test_a_killed_worker_is_retried_and_the_build_is_complete_and_identical(single, faults, tmp_path):
    planted = [faults / "shard1-day2.crash", faults / "shard0-day5.crash"]
    for marker in planted:
        marker.touch()
    rebuilt = build_scenario(tmp_path / "b", "tiny", seed=3, progress=False, ray_address="local", num_workers=2)
    assert all(not m.exists() and m.with_suffix(".crashed").exists() for m in planted), "both workers died once"
    assert _files(rebuilt) == _files(single)


def test_a_worker_killed_more_often_than_retried_is_an_error(faults):
    world = World(preset("tiny").replace(n_days=3), seed=1)
    (faults / "shard0-day1.crash").touch()
    with pytest.raises(ray.exceptions.WorkerCrashedError):
        list(generate_logs_ray(world, max_retries=0))


def test_days_merge_into_time_order_with_dense_global_ids():
    world = World(preset("tiny").replace(n_days=3, n_shards=3), seed=2)
    plan = ShardPlan.of(world.config, world.users.table)
    assert plan.bounds[0] == 0 and plan.bounds[-1] == world.config.n_users
    np.testing.assert_allclose(plan.budget_share.sum(), 1.0)
    shards = [ShardLogger.of(world, plan, s) for s in range(plan.n_shards)]
    merger, reference = DayMerger(world.config), list(generate_logs(world))
    for day, expected in enumerate(reference):
        lists = retrieval_lists(world, day)
        parts = [shard.day(day, lists) for shard in shards][::-1]  # any arrival order
        got = merger.merge(parts)
        for name in ("requests", "impressions", "organic_events"):
            assert getattr(got, name).equals(getattr(expected, name)), name
    requests = np.concatenate([d.requests["request_id"].to_numpy() for d in reference])
    np.testing.assert_array_equal(requests, np.arange(len(requests)))
    ts = np.concatenate([d.requests["ts"].to_numpy() for d in reference])
    assert np.all(np.diff(ts) >= 0)
    impressions = np.concatenate([d.impressions["impression_id"].to_numpy() for d in reference])
    np.testing.assert_array_equal(impressions, np.arange(len(impressions)))


def test_each_shard_spends_at_most_its_share_of_every_budget(single):
    scenario = Scenario(single)
    plan = ShardPlan.of(scenario.config, scenario.table("users"))
    imp, req = scenario.table("impressions"), scenario.table("requests").set_index("request_id")
    r = req.loc[imp["request_id"]]
    shard = plan.shard_of(r["user_id"].to_numpy())
    spend = imp.assign(day=r["day"].to_numpy(), shard=shard).groupby(["day", "shard", "ad_id"])["cost"].sum()
    budget = scenario.table("ads")["daily_budget"].to_numpy()[spend.index.get_level_values("ad_id")]
    allowed = budget * plan.budget_share[spend.index.get_level_values("shard")]
    assert np.all(spend.to_numpy() <= allowed * (1 + 1e-9))
    assert np.sum(spend.to_numpy() >= allowed * (1 - 1e-9)) > 10, "some budgets do run out"


def test_cli_arguments_map_to_build_options():
    parser = add_ray_build_arguments(argparse.ArgumentParser())
    assert ray_build_options(parser.parse_args([])) == {"ray_address": None, "n_shards": None, "num_workers": None}
    assert ray_build_options(parser.parse_args(["--ray", "--workers", "4", "--shards", "16"])) == {
        "ray_address": "local", "n_shards": 16, "num_workers": 4}
    assert ray_build_options(parser.parse_args(["--ray-address", "auto"]))["ray_address"] == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args(["--ray", "--ray-address", "auto"])
    with pytest.raises(AdSimError, match="--workers needs"):
        ray_build_options(parser.parse_args(["--workers", "2"]))
