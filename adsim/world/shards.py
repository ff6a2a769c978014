"""Scale-out on Ray: the shard-days of ``adsim.world.logs`` run as Ray tasks and merged back into time order.

``generate_logs_ray(world)`` yields exactly what ``adsim.world.logs.generate_logs(world)`` yields, bit for bit:
the units of work (one user shard on one day) and their random streams are the same, only where they run changes.
The sharding, seeding and budget design is in ``adsim.world.logs``.

How it runs
    The driver builds the world's entities once (the users' hidden daily interest vectors are the big part) and
    puts them in the object store: the ad and content catalogue once, each shard's slice of the users once, each
    day's retrieval lists once. One task per shard-day receives them as read-only, zero-copy arrays and returns
    its shard-day (requests, organic events and impressions with shard-local row numbers) through the object
    store. The driver merges each day's
    shards (``DayMerger``: global time order and ids) and the bundle writer streams that day to Parquet, while the
    workers go on with later shard-days. At most ``concurrency + n_shards`` tasks run or wait ahead of the merge,
    so neither side ever holds more than about two days. Only the driver writes files: workers on other machines
    need no shared file system, just ``adsim`` installed.

Memory
    A worker holds one shard-day, the cascade arrays of one chunk (``chunk_size`` x share requests x retrieved
    candidates) and the pages it touches of its shard's users and the catalogue, which are shared by every
    worker on a node (object store). The driver holds the entities and one day of logs.

Retries
    A shard-day is a pure function of its arguments, so a task whose worker process dies is simply run again
    (``max_retries``) and returns the identical result. Nothing is published before every day is merged and
    written (``adsim.data.bundle`` writes into a temporary directory renamed into place), and a build that fails
    for good leaves nothing behind.

Fault injection (tests)
    If ``$ADSIM_FAULT_DIR/<key>.crash`` exists, the task ``<key>`` consumes that file and kills its own worker
    process. Keys: ``shard{s}-day{d}`` here, ``simulator-{method}`` in ``envs.distributed``.

Ray is imported only when a function here runs: the core stays importable without it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from adsim.ray_session import LOCAL, ray_session
from adsim.world.config import WorldConfig
from adsim.world.entities import Ads, Organic, Users
from adsim.world.logs import (
    DayLogs,
    DayMerger,
    ShardDay,
    ShardLogger,
    ShardPlan,
    retrieval_lists,
    shard_world,
    slice_users,
)
from adsim.world.world import World

FAULT_DIR_ENV = "ADSIM_FAULT_DIR"


def crash_if_planted(key: str) -> None:
    """Test hook: kill this process, once, if ``$ADSIM_FAULT_DIR/<key>.crash`` exists (see the module doc)."""
    directory = os.environ.get(FAULT_DIR_ENV)
    if not directory:
        return
    planted = Path(directory) / f"{key}.crash"
    try:
        os.replace(planted, planted.with_suffix(".crashed"))  # atomic: exactly one attempt consumes it
    except FileNotFoundError:
        return
    os._exit(17)


def cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def run_shard_day(config: WorldConfig, seed: int, users: Users, ads: Ads, organic: Organic, shard: int,
                  first_user: int, budget_share: float, day: int, topic_lists: np.ndarray) -> ShardDay:
    """The body of a shard-day task (any process): ``ShardLogger.day`` on the shard's world."""
    crash_if_planted(f"shard{shard}-day{day}")
    world = shard_world(config, seed, users, ads, organic)
    return ShardLogger(world, shard, first_user, budget_share).day(day, topic_lists)


def _contiguous(users: Users) -> Users:
    """A copy whose arrays are contiguous, so the object store hands them to workers without copying."""
    return Users(users.table, *(np.ascontiguousarray(a) for a in (users.interests, users.interest_weights,
                                                                 users.click_bias, users.convert_bias)))


def generate_logs_ray(world: World, address: str | None = LOCAL, num_workers: int | None = None,
                      max_retries: int = 3) -> Iterator[DayLogs]:
    """``generate_logs(world)`` with the shard-days as Ray tasks; yields the identical ``DayLogs``, day by day.

    Args:
        world: the world to log.
        address: ``"local"`` (a private Ray on this machine) or a cluster address; ignored when Ray is already
            initialised in this process (see ``adsim.ray_session``).
        num_workers: shard-days run at once (default: the cluster's CPUs). With ``"local"`` it also sizes the
            private Ray.
        max_retries: times a shard-day is re-run after its worker process dies.
    """
    import ray

    cfg = world.config
    plan = ShardPlan.of(cfg, world.users.table)
    with ray_session(address, num_workers):
        concurrency = num_workers or cluster_cpus()
        task = ray.remote(run_shard_day).options(num_cpus=1, max_retries=max_retries)
        ads, organic = ray.put(world.ads), ray.put(world.organic)
        users = [ray.put(_contiguous(slice_users(world.users, int(plan.bounds[s]), int(plan.bounds[s + 1]))))
                 for s in range(plan.n_shards)]

        order = [(day, shard) for day in range(cfg.n_days) for shard in range(plan.n_shards)]
        submitted = merged = 0
        lists: dict[int, Any] = {}  # the day's retrieval lists, computed here once a day
        running: dict[Any, tuple[int, int]] = {}
        finished: dict[tuple[int, int], Any] = {}

        def top_up() -> None:
            nonlocal submitted
            while (submitted < len(order) and len(running) < concurrency
                   and submitted - merged < concurrency + plan.n_shards):
                day, shard = order[submitted]
                if day not in lists:
                    lists[day] = ray.put(retrieval_lists(world, day))
                ref = task.remote(cfg, world.seed, users[shard], ads, organic, shard, int(plan.bounds[shard]),
                                  float(plan.budget_share[shard]), day, lists[day])
                running[ref] = (day, shard)
                submitted += 1

        merger = DayMerger(cfg)
        for day in range(cfg.n_days):
            keys = [(day, shard) for shard in range(plan.n_shards)]
            while not all(key in finished for key in keys):
                top_up()
                ready, _ = ray.wait(list(running), num_returns=1)
                for ref in ready:
                    finished[running.pop(ref)] = ref
            parts = ray.get([finished.pop(key) for key in keys])
            del lists[day]
            merged += plan.n_shards
            top_up()
            yield merger.merge(parts)


# ---------------------------------------------------------------------------------------------- command line
