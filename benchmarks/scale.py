"""Scale-out on Ray: build and evaluation speed-ups with 1 and 2 Ray workers against the single process, the
driver's peak memory and the object store's, and a paper estimate for ``large`` on 8, 16 and 32 nodes.

One run, one machine: builds the preset's logs in this process, then as Ray tasks with each worker count
(checking the bundles are byte-identical), then evaluates candidate paths with the single-process simulator and
with a ``DistributedSimulator`` pool of each size (checking the arrays are identical). Memory is sampled every
0.1 s: this (driver) process's resident memory, each Ray worker process's resident and unique (USS: not shared
with other processes, so without the object store pages) memory, and (every 0.5 s) the bytes held in the object
stores of all nodes, as ``ray status`` reports them.

The estimate (``scale_estimate``) times the pieces of a ``large`` build on a stand-in shard, a world of one shard's
users with the whole catalogue: the users' generation per user-day, shard-days, a day's retrieval lists, and the
driver's merge and Parquet write of a shard-day. It adds them up for a cluster of ``cpus_per_node``-CPU nodes
linked at ``network_gbit_s`` (see ``estimate``); it is arithmetic on measured costs, not a run.

    python -m benchmarks.scale                          # small preset, 1 and 2 workers
    python -m benchmarks.scale --preset medium --stages build
    python -m benchmarks.scale --quick                  # tiny and small batches: a smoke test

On a cluster, start Ray (``ray start --head`` on one machine, ``ray start --address=HEAD:6379`` on the others,
adsim installed everywhere) and run this on the head with ``--ray-address auto --workers 8 16 32``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from adsim.arguments import add_dataclass_arguments, dataclass_from_arguments
from benchmarks.report import write_report


@dataclass
class Config:
    preset: str = "small"
    """World to build and evaluate on (``tiny`` with --quick; keep to ``medium`` at most on one machine)."""
    seed: int = 0
    workers: list[int] = field(default_factory=lambda: [1, 2])
    """Ray worker counts to compare with the single process."""
    ray_address: str = "local"
    """``local``: a private Ray with max(workers) CPUs on this machine; else a cluster address."""
    eval_batches: int = 8
    eval_requests: int = 2048
    """Requests per evaluation batch (each with ``candidates`` paths)."""
    candidates: int = 16
    oracle_requests: int = 128
    """Requests per oracle batch (each scores every ad)."""
    repeats: int = 2
    """Each measurement is repeated; the best time is reported (the least disturbed by other jobs)."""
    stages: tuple[Literal["build", "evaluate", "estimate"], ...] = ("build", "evaluate", "estimate")
    """What to measure: building the logs, evaluating candidate paths (and the oracle), the cluster estimate."""
    estimate_preset: str = "large"
    """World of the paper estimate."""
    estimate_nodes: list[int] = field(default_factory=lambda: [8, 16, 32])
    cpus_per_node: int = 8
    """CPUs of each node of the estimated cluster (one shard-day task at a time each)."""
    network_gbit_s: float = 10.0
    """Bandwidth of each node's network link (the users' slices to their homes, the shard-days into the driver)."""
    estimate_days: int = 2
    """Shard-days timed on the stand-in shard (days spread over the preset's)."""
    out: Path = Path("results/scale")


QUICK = dict(preset="tiny", eval_batches=4, eval_requests=256, oracle_requests=64, repeats=1, estimate_preset="tiny",
             estimate_days=1)
"""--quick: the tiny preset and small batches (a smoke test)."""


class MemorySampler:
    """Peak resident memory of this process and of its Ray worker processes, and peak bytes in the object stores of
    all nodes, sampled in a thread."""

    AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")

    def __init__(self, period_s: float = 0.1):
        self.period_s = period_s
        self.driver_rss = self.worker_rss = self.worker_uss = self.object_store = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _workers(self):
        import psutil

        for process in psutil.Process().children(recursive=True):
            try:
                name = (process.cmdline() or [""])[0]
            except psutil.Error:
                continue
            if name.startswith("ray::") and not name.startswith(self.AGENTS):
                yield process

    @staticmethod
    def object_store_mb() -> float:
        """MB in the object stores of all nodes, as ``ray status`` reports them (the raylets' last report, about
        every second); 0 without Ray."""
        import ray

        if not ray.is_initialized():
            return 0.0
        from ray.autoscaler.v2.sdk import get_cluster_status

        usage = get_cluster_status(ray.get_runtime_context().gcs_address).cluster_resource_usage
        return sum(u.used for u in usage if u.resource_name == "object_store_memory") / 2**20

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        tick = 0
        while not self._stop.is_set():
            self.driver_rss = max(self.driver_rss, me.memory_info().rss / 2**20)
            for process in self._workers():
                try:
                    info = process.memory_full_info()
                except psutil.Error:
                    continue
                self.worker_rss = max(self.worker_rss, info.rss / 2**20)
                self.worker_uss = max(self.worker_uss, info.uss / 2**20)
            if tick % 5 == 0:  # a round trip to the GCS: every 0.5 s
                try:
                    self.object_store = max(self.object_store, self.object_store_mb())
                except Exception:  # Ray busy or shutting down: this sample is skipped
                    pass
            tick += 1
            self._stop.wait(self.period_s)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(run, repeats: int):
    """Best wall time of ``repeats`` calls of ``run`` (the least disturbed by other jobs), its last result, and
    the memory peaks over all calls."""
    best, result = float("inf"), None
    with MemorySampler() as memory:
        for _ in range(repeats):
            started = time.perf_counter()
            result = run()
            best = min(best, time.perf_counter() - started)
    return best, result, memory


def _row(stage: str, mode: str, workers: int, measured, work: float, unit: str, identical: bool | None = None
         ) -> dict:
    seconds, _, memory = measured
    pooled = workers > 0
    return {"stage": stage, "mode": mode, "workers": workers, "seconds": round(seconds, 2),
            "throughput": round(work / seconds), "unit": unit, "driver_peak_rss_mb": round(memory.driver_rss),
            "worker_peak_rss_mb": round(memory.worker_rss) if pooled else None,
            "worker_peak_uss_mb": round(memory.worker_uss) if pooled else None,
            "object_store_peak_mb": round(memory.object_store, 1) if pooled else None, "identical": identical}


def _files(path: Path) -> dict[str, str]:
    """sha256 of every file of a bundle: compared instead of the bytes, which would sit in the driver's memory."""
    from adsim.data.bundle import sha256

    return {p.relative_to(path).as_posix(): sha256(p) for p in sorted(path.rglob("*")) if p.is_file()}


def bench_build(cfg: Config, tmp: Path) -> list[dict]:
    import json

    from adsim import build_scenario

    def build(name: str, **ray) -> Path:
        return build_scenario(tmp / name, cfg.preset, cfg.seed, progress=False, overwrite=True, **ray)

    single = measure(lambda: build("single"), cfg.repeats)
    counts = json.loads((single[1] / "manifest.json").read_text())["rows"]
    logged = counts["requests"] + counts["impressions"] + counts["organic_events"]
    rows = [_row("build", "single process", 0, single, logged, "logged rows/s")]
    reference = _files(single[1])
    for workers in cfg.workers:
        sharded = measure(lambda w=workers: build(f"ray{w}", ray_address=cfg.ray_address, num_workers=w),
                          cfg.repeats)
        rows.append(_row("build", "ray tasks", workers, sharded, logged, "logged rows/s",
                         _files(sharded[1]) == reference))
    return rows


def _batches(cfg: Config, bundle: Path, simulator, n_requests: int, n_batches: int) -> list:
    from adsim import Scenario
    from adsim.simulator.requests import RequestStream

    stream = RequestStream(Scenario(bundle), "train", seed=cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    codes = simulator.ad_codes
    return [(stream.sample(n_requests, rng, arr_ratio=0.2), codes[rng.integers(0, len(codes),
                                                                              size=(n_requests, cfg.candidates))])
            for _ in range(n_batches)]


def _same(got: list, expected: list) -> bool:
    return all((x is None and y is None) or np.array_equal(x, y)
               for g, e in zip(got, expected, strict=True) for x, y in zip(g, e, strict=True))


def bench_evaluation(cfg: Config, tmp: Path) -> list[dict]:
    from adsim import build_scenario
    from envs.distributed import DistributedSimulator, SimulatorWorker, ship_bundle
    from reward_models.pipeline import default_steps

    bundle = build_scenario(tmp / "eval", cfg.preset, cfg.seed, progress=False, steps=default_steps())
    copy = ship_bundle(bundle)  # into the object store once, for every pool
    sim = SimulatorWorker(str(bundle)).simulator
    batches = _batches(cfg, bundle, sim, cfg.eval_requests, cfg.eval_batches)
    oracle_batches = [r for r, _ in _batches(cfg, bundle, sim, cfg.oracle_requests, 2)]
    pairs = cfg.eval_batches * cfg.eval_requests * cfg.candidates
    oracle_pairs = len(oracle_batches) * cfg.oracle_requests * sim.eligibility.n_ads
    paths, ads = "candidate paths/s", "(request, ad) pairs/s"

    sim.evaluate(*batches[0])  # warm-up: lazily built feature caches
    evaluate = measure(lambda: [sim.evaluate(r, p) for r, p in batches], cfg.repeats)
    oracle = measure(lambda: [sim.oracle(r) for r in oracle_batches], cfg.repeats)
    rows = [_row("evaluate", "single process", 0, evaluate, pairs, paths),
            _row("oracle", "single process", 0, oracle, oracle_pairs, ads)]
    for workers in cfg.workers:
        with DistributedSimulator(copy, workers, ray_address=cfg.ray_address) as pool:
            pool.evaluate(*batches[0])
            split = measure(lambda: [pool.evaluate(r, p) for r, p in batches], cfg.repeats)
            whole = measure(lambda: pool.evaluate_batches(batches), cfg.repeats)
            best = measure(lambda: [pool.oracle(r) for r in oracle_batches], cfg.repeats)
        rows += [_row("evaluate", "actor pool, batch split", workers, split, pairs, paths,
                      _same(split[1], evaluate[1])),
                 _row("evaluate", "actor pool, whole batches", workers, whole, pairs, paths,
                      _same(whole[1], evaluate[1])),
                 _row("oracle", "actor pool, batch split", workers, best, oracle_pairs, ads, _same(best[1], oracle[1]))]
    return rows


# ---------------------------------------------------------------------------------------------- the estimate
@dataclass
class ShardCosts:
    """Seconds and bytes of the pieces of a sharded build, timed on a stand-in shard (``measure_shard_costs``)."""

    users_s_per_user_day: float
    """The users task: generating one user's hidden state for one day."""
    shard_day_s: float
    """One shard-day task (requests, organic events, the cascade)."""
    lists_s: float
    """The driver's retrieval lists of one day."""
    merge_write_s: float
    """The driver's merge and Parquet write of one shard-day's rows."""
    shard_day_mb: float
    """A shard-day's rows as DataFrames (what comes back through the object store)."""
    users_mb_per_user: float
    """One user's hidden state over all days (what the users task puts into the object store)."""


def measure_shard_costs(config, seed: int, days: int) -> ShardCosts:
    """Time a stand-in shard of ``config``: a world of ``n_users / n_shards`` users (same distributions, its own
    draws) with the whole catalogue, on ``days`` days spread over the preset's."""
    import io
    import math

    import pyarrow as pa
    import pyarrow.parquet as pq

    from adsim.data.schema import arrow_schema
    from adsim.world import World
    from adsim.world.logs import DayMerger, ShardLogger, retrieval_lists

    n_users = math.ceil(config.n_users / config.n_shards)
    world = World(config.replace(n_users=n_users, n_shards=1), seed)
    started = time.perf_counter()
    users = world.users
    users_s = time.perf_counter() - started
    world.ads, world.organic  # noqa: B018  (the catalogue, generated once by the driver: not timed)
    logger = ShardLogger(world, 0, 0, 1.0 / config.n_shards)
    merger = DayMerger(world.config)
    lists_s = shard_s = merge_s = rows_mb = 0.0
    for day in np.linspace(0, config.n_days - 1, days).round().astype(int):
        t0 = time.perf_counter()
        lists = retrieval_lists(world, int(day))
        t1 = time.perf_counter()
        part = logger.day(int(day), lists)
        t2 = time.perf_counter()
        merged = merger.merge([part])
        for name in ("requests", "impressions", "organic_events"):
            table = pa.Table.from_pandas(getattr(merged, name), schema=arrow_schema(name), preserve_index=False)
            pq.write_table(table, io.BytesIO())
        t3 = time.perf_counter()
        lists_s, shard_s, merge_s = lists_s + t1 - t0, shard_s + t2 - t1, merge_s + t3 - t2
        rows_mb += sum(getattr(part, n).memory_usage(deep=True).sum() for n in ("requests", "impressions",
                                                                               "organic_events")) / 2**20
    hidden = sum(a.nbytes for a in (users.interests, users.interest_weights, users.click_bias, users.convert_bias))
    return ShardCosts(users_s / (n_users * config.n_days), shard_s / days, lists_s / days, merge_s / days,
                      rows_mb / days, hidden / 2**20 / n_users)


def estimate(cfg: Config, costs: ShardCosts, config) -> list[dict]:
    """A ``config`` build on each of ``cfg.estimate_nodes`` nodes, from ``costs`` (see the notes of the report).

    users (serial, one task) + the users' slices over the users node's link + max(workers: ceil(S x D / CPUs) x
    shard-day + D x lists / CPUs, driver: S x D x (merge + write) + every shard-day's rows over the driver's link)
    + one day's lists and one shard-day (the pipeline filling).
    """
    import math

    shards, days = config.n_shards, config.n_days
    link_mb_s = cfg.network_gbit_s * 1e9 / 8 / 2**20
    users_s = costs.users_s_per_user_day * config.n_users * days
    users_mb = costs.users_mb_per_user * config.n_users
    driver_s = shards * days * (costs.merge_write_s + costs.shard_day_mb / link_mb_s)
    single_s = users_s + shards * days * costs.shard_day_s + days * (costs.lists_s + shards * costs.merge_write_s)
    rows = [{"nodes": 0, "cpus": 1, "estimated_s": round(single_s, 1), "speedup": 1.0,
             "bottleneck": "single process", "users_task_s": round(users_s, 1), "users_object_store_mb": 0,
             "driver_day_of_logs_mb": round(shards * costs.shard_day_mb, 1), "network_s": 0}]
    for nodes in cfg.estimate_nodes:
        cpus = nodes * cfg.cpus_per_node
        workers_s = math.ceil(shards * days / cpus) * costs.shard_day_s + days * costs.lists_s / cpus
        network_s = users_mb / link_mb_s
        total = users_s + network_s + max(workers_s, driver_s) + costs.lists_s + costs.shard_day_s
        rows.append({"nodes": nodes, "cpus": cpus, "estimated_s": round(total, 1),
                     "speedup": round(single_s / total, 1),
                     "bottleneck": "shard-day tasks" if workers_s >= driver_s else "driver merge + write",
                     "users_task_s": round(users_s, 1), "users_object_store_mb": round(users_mb, 1),
                     "driver_day_of_logs_mb": round(shards * costs.shard_day_mb, 1), "network_s": round(network_s, 1)})
    return rows


def bench_estimate(cfg: Config) -> tuple[list[dict], str]:
    from adsim.world import preset

    config = preset(cfg.estimate_preset)
    costs = measure_shard_costs(config, cfg.seed, cfg.estimate_days)
    measured = ", ".join(f"{k} {v:.3g}" for k, v in vars(costs).items())
    notes = (f"A paper estimate for `{cfg.estimate_preset}` ({config.n_users} users, {config.n_shards} shards x "
             f"{config.n_days} days), not a run. Costs measured on this machine (one core) on a stand-in shard, a "
             f"world of {config.n_users // config.n_shards} users with the whole catalogue ({cfg.estimate_days} "
             f"shard-day(s)): {measured}. Assumed: {cfg.cpus_per_node} CPUs per node, as fast as this one, a "
             f"{cfg.network_gbit_s:g} Gbit/s link per node. `estimated_s` = users task (one task: the world's users "
             "are one random stream) + the users' slices over the users node's link (`network_s`) + max(shard-day "
             "and retrieval-list tasks over all CPUs, the driver's merge and Parquet write of every shard-day plus "
             "their rows over its link) + one day's lists and one shard-day (the pipeline filling). `bottleneck`: "
             "the larger of the two. Not counted: Ray start, the catalogue's generation and the "
             "SID and reward-model steps. `users_object_store_mb`: the hidden user state the workers hold (never "
             "the driver); `driver_day_of_logs_mb`: one merged day, what the driver holds.")
    return estimate(cfg, costs, config), notes


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny preset, small batches (tests)")
    add_dataclass_arguments(parser, Config)
    args = parser.parse_args(argv)
    cfg = dataclass_from_arguments(Config, args, Config(**QUICK) if args.quick else None)

    import ray

    from adsim.ray_session import ray_session

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="adsim-scale-") as tmp:
        os.environ.setdefault("RAY_TMPDIR", str(Path(tmp) / "ray"))
        started = time.perf_counter()
        with ray_session(cfg.ray_address, max(cfg.workers)):
            ray_start = time.perf_counter() - started
            cpus = int(ray.cluster_resources().get("CPU", 0))
            rows = ((bench_build(cfg, Path(tmp)) if "build" in cfg.stages else [])
                    + (bench_evaluation(cfg, Path(tmp)) if "evaluate" in cfg.stages else []))
    for row in rows:
        base = next(r for r in rows if r["stage"] == row["stage"] and r["mode"] == "single process")
        row["speedup"] = round(row["throughput"] / base["throughput"], 2)
    notes = (f"Preset `{cfg.preset}`, seed {cfg.seed}; {os.cpu_count()} CPU cores on this machine (1-minute load "
             f"average {load:.1f} when the run started: other jobs' share of the cores), Ray with {cpus} CPUs "
             f"(started in {ray_start:.1f} s, not counted). workers 0 = the single-process path. `seconds`: the best "
             f"of {cfg.repeats} runs; `speedup`: throughput over the single process's. `identical`: the Ray build's "
             "files, or the pool's arrays, equal the single process's byte for byte. Build rows include the world's "
             "generation (the users: in the process for the single one, in a Ray task for Ray builds) and the "
             "merge of each day's shards; evaluation uses the bundle's SIDs and LightGBM "
             f"reward models ({cfg.eval_requests} requests x {cfg.candidates} paths per batch; the oracle scores "
             f"every ad for {cfg.oracle_requests} requests per batch). Memory: peak resident (RSS) of the driver "
             "process, and of the busiest Ray worker process, with its unique part (USS: without the shared "
             "object-store pages), and the peak bytes in the object stores of all nodes (the Ray build: the users' "
             "hidden state, the catalogue and the shard-days in flight; the pools: the bundle's files and the "
             "batches). The sharded build's driver holds no user state (it is generated by a Ray task and stays in "
             "the object store); its driver peak is the catalogue and about one day of logs.")
    if rows:
        write_report(cfg.out, "scale", rows, title="Scale-out on Ray: throughput and memory per worker", notes=notes)
    if "estimate" in cfg.stages:
        estimated, estimate_notes = bench_estimate(cfg)
        write_report(cfg.out, "scale_estimate", estimated, notes=estimate_notes,
                     title=f"Paper estimate: a sharded `{cfg.estimate_preset}` build on 8-32 nodes")
    return rows


if __name__ == "__main__":
    main()
