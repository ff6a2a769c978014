"""Scale-out on Ray: build and evaluation throughput with 1 and 2 Ray workers against the single process.

One run, one machine: builds the preset's logs in this process, then as Ray tasks with each worker count
(checking the bundles are byte-identical), then evaluates candidate paths with the single-process simulator and
with a ``DistributedSimulator`` pool of each size (checking the arrays are identical). Memory is sampled every
0.1 s: this (driver) process's resident memory, and each Ray worker process's resident and unique (USS: not
shared with other processes, so without the object store pages) memory.

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
    stages: tuple[Literal["build", "evaluate"], ...] = ("build", "evaluate")
    """What to measure: building the logs, evaluating candidate paths (and the oracle)."""
    out: Path = Path("results/scale")


QUICK = dict(preset="tiny", eval_batches=4, eval_requests=256, oracle_requests=64, repeats=1)
"""--quick: the tiny preset and small batches (a smoke test)."""


class MemorySampler:
    """Peak resident memory of this process and of its Ray worker processes, sampled in a thread."""

    AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")

    def __init__(self, period_s: float = 0.1):
        self.period_s = period_s
        self.driver_rss = self.worker_rss = self.worker_uss = 0.0
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

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            self.driver_rss = max(self.driver_rss, me.memory_info().rss / 2**20)
            for process in self._workers():
                try:
                    info = process.memory_full_info()
                except psutil.Error:
                    continue
                self.worker_rss = max(self.worker_rss, info.rss / 2**20)
                self.worker_uss = max(self.worker_uss, info.uss / 2**20)
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
            "worker_peak_uss_mb": round(memory.worker_uss) if pooled else None, "identical": identical}


def _files(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


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
    from envs.distributed import DistributedSimulator, SimulatorWorker
    from reward_models.pipeline import default_steps

    bundle = build_scenario(tmp / "eval", cfg.preset, cfg.seed, progress=False, steps=default_steps())
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
        with DistributedSimulator(bundle, workers, ray_address=cfg.ray_address) as pool:
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
             "files, or the pool's arrays, equal the single process's byte for byte. Build rows include the driver's "
             "world generation and the merge of each day's shards; evaluation uses the bundle's SIDs and LightGBM "
             f"reward models ({cfg.eval_requests} requests x {cfg.candidates} paths per batch; the oracle scores "
             f"every ad for {cfg.oracle_requests} requests per batch). Memory: peak resident (RSS) of the driver "
             "process, and of the busiest Ray worker process, with its unique part (USS: without the shared "
             "object-store pages).")
    write_report(cfg.out, "scale", rows, title="Scale-out on Ray: throughput and memory per worker", notes=notes)
    return rows


if __name__ == "__main__":
    main()
