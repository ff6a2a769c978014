"""Simulator evaluation on a pool of Ray actors: ``evaluate`` and ``oracle`` spread over workers, same results.

``DistributedSimulator(scenario_path, num_workers)`` starts ``num_workers`` actors; each opens the bundle once
(SID trie, eligibility, reward models; tables memory-mapped from the shared Arrow cache, so a node's actors share
their pages) and keeps it for its lifetime. A batch of B requests is cut into contiguous row ranges, one per
actor, and the answers are concatenated in order. Every output row of ``Simulator.evaluate`` and ``oracle``
depends only on its own request and candidates, so the arrays are exactly the single-process ones.
``evaluate_batches`` instead hands whole batches to actors in turn, for callers with many small batches
(trainers' rollouts, benchmarks), where cutting each batch would cost more in messages than it saves.

Actor pool, not Ray Data
    The callers are trainers and benchmarks holding batches of a few thousand (request, path) rows in memory,
    wanting the answer back in order within milliseconds. An actor pool answers a call with one message per
    actor and keeps the expensive state (LightGBM boosters, the trie, eligibility arrays) loaded between calls.
    Ray Data (``map_batches`` with an actor pool strategy) is built for streaming a large dataset through a
    pipeline: it adds a streaming executor, block conversion of (B, K, L) tensors and per-call start-up, and
    gives no benefit for in-memory batches. It is the better tool for scoring a whole logged table offline
    (e.g. OPE over every impression of a ``large`` bundle), where ``SimulatorWorker`` can serve as its callable
    class unchanged.

Fault tolerance
    Actors are started with ``max_restarts`` and ``max_task_retries``: when an actor's process dies during a
    call, Ray restarts it (it reopens the bundle) and re-runs the call, which, being deterministic, returns the
    same arrays. The ``calls`` counter (pairs scored) is added up in the driver from answers actually returned,
    so a retried call is counted once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from adsim.data.bundle import Scenario
from adsim.ray_session import LOCAL, ray_session
from adsim.simulator.requests import RequestBatch, take
from adsim.simulator.simulator import Evaluation, ProcessRewardConfig, RewardSource, Scorer
from adsim.world.shards import crash_if_planted
from envs.context import open_simulator, release_unused_memory

ScorerFactory = Callable[[Scenario], Scorer]
"""Scenario -> scorer used for both reward sources in place of the bundle's reward models (fakes, tests)."""


def _import(spec: str) -> Any:
    import importlib

    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"expected 'module:name', got {spec!r}")
    return getattr(importlib.import_module(module), name)


class SimulatorWorker:
    """One bundle's simulator in one process: the state an actor of the pool holds.

    Args:
        scenario_path: the bundle (with SIDs, and reward models unless ``scorer_factory`` is given).
        scorer_factory: optional ``ScorerFactory`` or its ``"module:name"`` import path.
        process_alphas: ``ProcessRewardConfig.alphas``.
    """

    def __init__(self, scenario_path: str, scorer_factory: ScorerFactory | str | None = None,
                 process_alphas: tuple[float, ...] = ProcessRewardConfig().alphas):
        scenario = Scenario(scenario_path, validate=False)  # the driver validated it
        scorer = truth = None
        if scorer_factory is not None:
            factory = _import(scorer_factory) if isinstance(scorer_factory, str) else scorer_factory
            scorer = truth = factory(scenario)
        self.simulator = open_simulator(scenario, tuple(process_alphas), scorer, truth)
        release_unused_memory()

    def ready(self) -> int:
        return self.simulator.eligibility.n_ads

    def evaluate(self, requests: RequestBatch, paths: np.ndarray, reward_source: RewardSource = "model",
                 allowed: np.ndarray | None = None) -> tuple[Evaluation, int]:
        """``Simulator.evaluate`` and the pairs it scored."""
        crash_if_planted("simulator-evaluate")
        before = self.simulator.calls
        return self.simulator.evaluate(requests, paths, reward_source, allowed), self.simulator.calls - before

    def oracle(self, requests: RequestBatch, reward_source: RewardSource = "model",
               allowed: np.ndarray | None = None) -> tuple[tuple[np.ndarray, np.ndarray], int]:
        crash_if_planted("simulator-oracle")
        before = self.simulator.calls
        return self.simulator.oracle(requests, reward_source, allowed), self.simulator.calls - before

    def memory(self) -> dict:
        """This process's id, resident and unique (not shared) memory, and peak resident memory, in MB."""
        import resource

        import psutil

        process = psutil.Process()
        info = process.memory_full_info()
        return {"pid": process.pid, "rss_mb": info.rss / 2**20, "uss_mb": info.uss / 2**20,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


class DistributedSimulator:
    """``Simulator.evaluate`` / ``oracle`` over a pool of Ray actors, returning the single-process arrays.

    Args:
        scenario_path: the bundle directory (validated once, here).
        num_workers: actors in the pool (one CPU each).
        scorer_factory: see ``SimulatorWorker``; must be importable in the workers.
        process_alphas: see ``SimulatorWorker``.
        ray_address: used only if Ray is not initialised yet: ``"local"`` starts a private Ray with
            ``num_workers`` CPUs, another address joins that cluster (see ``adsim.ray_session``).
        max_restarts: times an actor is restarted, and a call retried, after its process dies.

    Use as a context manager, or call ``close()``: the actors (and a Ray this object started) stop there.
    """

    def __init__(self, scenario_path: str | Path, num_workers: int = 2, *,
                 scorer_factory: ScorerFactory | str | None = None,
                 process_alphas: Sequence[float] = ProcessRewardConfig().alphas, ray_address: str | None = LOCAL,
                 max_restarts: int = 3):
        import ray

        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        path = str(Path(scenario_path).expanduser().resolve())
        Scenario(path, validate=True)
        self.num_workers = num_workers
        self.calls = 0
        """Pairs scored so far, over all workers."""
        self._stack = ExitStack()
        self._stack.enter_context(ray_session(ray_address, num_workers))
        actor = ray.remote(SimulatorWorker).options(num_cpus=1, max_restarts=max_restarts,
                                                     max_task_retries=max_restarts)
        self.actors = [actor.remote(path, scorer_factory, tuple(process_alphas)) for _ in range(num_workers)]
        try:
            ray.get([a.ready.remote() for a in self.actors])
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------------------------------ calls
    def _scatter(self, method: str, requests: RequestBatch, reward_source: RewardSource,
                 **per_row: np.ndarray | None) -> list:
        """Call ``method`` on one contiguous row range per actor (per-row arrays sliced alike); answers in order."""
        import ray

        n = len(requests["user_id"])
        pieces = [rows for rows in np.array_split(np.arange(n), self.num_workers) if len(rows)] or [np.arange(0)]
        refs = [getattr(actor, method).remote(take(requests, rows), reward_source=reward_source,
                                              **{k: None if v is None else np.asarray(v)[rows]
                                                 for k, v in per_row.items()})
                for actor, rows in zip(self.actors, pieces, strict=False)]
        answers = ray.get(refs)
        self.calls += sum(calls for _, calls in answers)
        return [result for result, _ in answers]

    def evaluate(self, requests: RequestBatch, paths: np.ndarray, reward_source: RewardSource = "model",
                 allowed: np.ndarray | None = None) -> Evaluation:
        """``Simulator.evaluate`` of (B, K, L) ``paths``, the B rows split over the workers."""
        return _concat_evaluations(self._scatter("evaluate", requests, reward_source, paths=np.asarray(paths),
                                                 allowed=allowed))

    def oracle(self, requests: RequestBatch, reward_source: RewardSource = "model",
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``Simulator.oracle``, the rows split over the workers."""
        parts = self._scatter("oracle", requests, reward_source, allowed=allowed)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def evaluate_batches(self, batches: Iterable[tuple[RequestBatch, np.ndarray]],
                         reward_source: RewardSource = "model",
                         allowed: Sequence[np.ndarray | None] | None = None) -> list[Evaluation]:
        """``Simulator.evaluate`` of many (requests, paths) batches, whole batches dealt to the actors in turn."""
        import ray

        refs = []
        for i, (requests, paths) in enumerate(batches):
            mask = None if allowed is None else allowed[i]
            refs.append(self.actors[i % self.num_workers].evaluate.remote(
                take(requests, np.arange(len(requests["user_id"]))), np.asarray(paths), reward_source, mask))
        answers = ray.get(refs)
        self.calls += sum(calls for _, calls in answers)
        return [result for result, _ in answers]

    def memory(self) -> list[dict]:
        """Each worker's ``SimulatorWorker.memory()``."""
        import ray

        return ray.get([a.memory.remote() for a in self.actors])

    # ------------------------------------------------------------------------------------------ lifetime
    def close(self) -> None:
        import ray

        for actor in getattr(self, "actors", []):
            ray.kill(actor, no_restart=True)
        self.actors = []
        self._stack.close()

    def __enter__(self) -> DistributedSimulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _concat_evaluations(parts: Sequence[Evaluation]) -> Evaluation:
    fields = {}
    for name in Evaluation._fields:
        values = [getattr(p, name) for p in parts]
        fields[name] = None if values[0] is None else np.concatenate(values)
    return Evaluation(**fields)
