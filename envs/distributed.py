"""Simulator evaluation on a pool of Ray actors that survives lost workers and nodes, with single-process results.

``DistributedSimulator(scenario, num_workers)`` starts ``num_workers`` actors, spread over the cluster's nodes;
each opens the bundle once (SID trie, eligibility, reward models) and keeps it for its lifetime. A batch of B
requests is cut into contiguous row ranges, one per actor, and the answers are concatenated in order. Every output
row of ``Simulator.evaluate`` and ``oracle`` depends only on its own request and candidates, so the arrays are
exactly the single-process ones, however the rows were cut and wherever they ran. ``evaluate_batches`` instead
hands whole batches to actors in turn, for callers with many small batches (trainers' rollouts, benchmarks), where
cutting each batch would cost more in messages than it saves.

Bundles without a shared file system
    The driver resolves the scenario once: a preset name is found in, or built into, the driver's cache (never on
    the nodes), a bundle directory is validated. The bundle's files (the manifest and every file it lists, with
    their sha256) then go into the Ray object store once (``ship_bundle``: a ``BundleCopy``). The first actor on a
    node writes them into its node's cache, ``$ADSIM_CACHE_DIR/bundles/<manifest sha256>``, checking each file's
    checksum, and every actor on that node opens that copy, its tables memory-mapped from the node's Arrow cache:
    one copy per node whatever its number of actors, and a later pool on the node fetches nothing. A ``pyarrow.fs``
    URI (``s3://``, ``gs://``, ``hdfs://``, ``file://``) is read by each node straight into the same cache instead.
    ``shared_path=True`` opens the driver's path on every node (a shared file system; no copy). The workers'
    environment (``ADSIM_CACHE_DIR`` for example) is given by ``env_vars``, in their ``runtime_env``.

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
    The pool looks after its actors itself; Ray's own actor restarts are off, because a restarting actor holds its
    calls, without a bound, until a CPU is free for it. A call's row ranges all go out at once. When a range fails
    with a Ray system error (the actor's process or node died, or its answer was lost with the node), that actor
    is dropped and the range is cut again over the surviving actors and sent at once. An actor that has work but
    has answered nothing for ``call_timeout_s`` is taken as hung: it is killed and its ranges are re-sent the same
    way. Each lost actor is replaced in the background, at most ``max_restarts`` times over the pool's life, on any
    node with a free CPU, and joins the pool once it has opened the bundle. When no actor is left and no
    replacement is ready within ``call_timeout_s``, the call fails with an ``AdSimError`` saying what was lost.
    Errors of the simulator itself (bad input) are raised as they are, never retried. ``calls`` (pairs scored) is
    added up from the answers the driver used, so re-sent rows are counted once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adsim.data.bundle import MANIFEST, Scenario
from adsim.errors import AdSimError
from adsim.paths import cache_dir
from adsim.ray_session import LOCAL, ray_session
from adsim.simulator.requests import RequestBatch, take
from adsim.simulator.simulator import Evaluation, ProcessRewardConfig, RewardSource, Scorer
from adsim.world.shards import fault_point, worker_env
from envs.context import open_simulator, release_unused_memory
from reward_models.pipeline import ensure_scenario

ScorerFactory = Callable[[Scenario], Scorer]
"""Scenario -> scorer used for both reward sources in place of the bundle's reward models (fakes, tests)."""
BUNDLES = "bundles"
"""Folder of a node's bundle copies in its cache."""
_CHUNK = 1 << 22


def _import(spec: str) -> Any:
    import importlib

    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"expected 'module:name', got {spec!r}")
    return getattr(importlib.import_module(module), name)


# ---------------------------------------------------------------------------------------------- bundles on nodes
@dataclass(frozen=True)
class BundleCopy:
    """A bundle's files in the Ray object store, put there once by the driver (``ship_bundle``)."""

    digest: str
    """sha256 of the bundle's manifest.json, which lists every other file's sha256: the bundle's content."""
    files: tuple[tuple[str, Any], ...]
    """(path in the bundle, ObjectRef of its bytes as a uint8 array), the manifest first."""
    nbytes: int
    """Bytes put into the object store."""


BundleSource = BundleCopy | str
"""Where workers find a bundle: a ``BundleCopy``, a ``pyarrow.fs`` URI, or a path every node can read."""


def ship_bundle(path: str | Path) -> BundleCopy:
    """Put the bundle at ``path`` (validated by the caller) into the object store of this Ray session."""
    import ray

    root = Path(path)
    manifest = (root / MANIFEST).read_bytes()
    files = []
    for name in [MANIFEST, *sorted(json.loads(manifest).get("files", {}))]:
        size = (root / name).stat().st_size
        data = np.asarray(np.memmap(root / name, dtype=np.uint8, mode="r")) if size else np.zeros(0, np.uint8)
        files.append((name, ray.put(data)))  # copied into the object store without a heap copy here
    return BundleCopy(hashlib.sha256(manifest).hexdigest(), tuple(files),
                      sum((root / name).stat().st_size for name, _ in files))


def is_uri(source: object) -> bool:
    return isinstance(source, str) and "://" in source


def local_bundle(source: BundleSource) -> Path:
    """This node's directory of the bundle ``source``: a path as it is, else the node's cached copy (made on first
    use, every file's sha256 checked)."""
    if isinstance(source, BundleCopy):
        import ray

        refs = dict(source.files)
        return _materialize(source.digest, list(refs), lambda name: iter([ray.get(refs[name])]))
    if is_uri(source):
        from pyarrow import fs

        filesystem, base = fs.FileSystem.from_uri(source)
        base = base.rstrip("/")

        def chunks(name: str) -> Iterator[bytes]:
            with filesystem.open_input_stream(f"{base}/{name}") as stream:
                while block := stream.read(_CHUNK):
                    yield block

        manifest = b"".join(chunks(MANIFEST))
        names = [MANIFEST, *sorted(json.loads(manifest).get("files", {}))]
        return _materialize(hashlib.sha256(manifest).hexdigest(), names, chunks)
    return Path(source)


def _materialize(digest: str, names: Sequence[str], read: Callable[[str], Iterable]) -> Path:
    """Write files ``names``, the manifest first (``read(name)`` yields a file's bytes), into this node's copy of
    bundle ``digest``, each checked against the manifest's sha256 (the manifest against ``digest``)."""
    dest = cache_dir() / BUNDLES / digest[:32]
    if (dest / MANIFEST).is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        expected: dict[str, str] = {}
        for name in names:
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            sha = hashlib.sha256()
            with open(target, "wb") as f:
                for block in read(name):
                    sha.update(block)
                    f.write(block)
            if name == MANIFEST:
                expected = {**json.loads(target.read_bytes()).get("files", {}), MANIFEST: digest}
            if name in expected and sha.hexdigest() != expected[name]:
                raise AdSimError(f"bundle {digest[:12]}: {name} arrived with another sha256 than its manifest's")
        missing = set(expected) - set(names)
        if missing:
            raise AdSimError(f"bundle {digest[:12]}: files listed in its manifest were not sent: {sorted(missing)}")
        try:
            os.replace(tmp, dest)
        except OSError:  # another actor of this node finished the same copy first
            if not (dest / MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _resolve(scenario: BundleSource | Path, seed: int, shared_path: bool) -> BundleSource:
    """On the driver: the source the workers get for ``scenario`` (see the module doc)."""
    if isinstance(scenario, BundleCopy):
        return scenario
    if is_uri(scenario):
        from pyarrow import fs

        filesystem, base = fs.FileSystem.from_uri(scenario)
        if filesystem.get_file_info(f"{base.rstrip('/')}/{MANIFEST}").type != fs.FileType.File:
            raise AdSimError(f"not an adsim bundle: {scenario} has no {MANIFEST}")
        return scenario
    path = ensure_scenario(str(scenario), seed=seed).path.expanduser().resolve()
    return str(path) if shared_path else ship_bundle(path)


# ---------------------------------------------------------------------------------------------- one worker
class SimulatorWorker:
    """One bundle's simulator in one process: the state an actor of the pool holds.

    Args:
        bundle: a ``BundleSource`` (``local_bundle``): a bundle with SIDs, and reward models unless
            ``scorer_factory`` is given.
        scorer_factory: optional ``ScorerFactory`` or its ``"module:name"`` import path.
        process_alphas: ``ProcessRewardConfig.alphas``.
    """

    def __init__(self, bundle: BundleSource, scorer_factory: ScorerFactory | str | None = None,
                 process_alphas: tuple[float, ...] = ProcessRewardConfig().alphas):
        fault_point("simulator-open")
        scenario = Scenario(local_bundle(bundle), validate=False)  # validated by the driver, or checksummed here
        scorer = truth = None
        if scorer_factory is not None:
            factory = _import(scorer_factory) if isinstance(scorer_factory, str) else scorer_factory
            scorer = truth = factory(scenario)
        self.path = scenario.path
        self.simulator = open_simulator(scenario, tuple(process_alphas), scorer, truth)
        release_unused_memory()

    def ready(self) -> int:
        return self.simulator.eligibility.n_ads

    def evaluate(self, requests: RequestBatch, paths: np.ndarray, reward_source: RewardSource = "model",
                 allowed: np.ndarray | None = None) -> tuple[Evaluation, int]:
        """``Simulator.evaluate`` and the pairs it scored."""
        fault_point("simulator-evaluate")
        before = self.simulator.calls
        return self.simulator.evaluate(requests, paths, reward_source, allowed), self.simulator.calls - before

    def oracle(self, requests: RequestBatch, reward_source: RewardSource = "model",
               allowed: np.ndarray | None = None) -> tuple[tuple[np.ndarray, np.ndarray], int]:
        fault_point("simulator-oracle")
        before = self.simulator.calls
        return self.simulator.oracle(requests, reward_source, allowed), self.simulator.calls - before

    def memory(self) -> dict:
        """This process's id and node, the bundle it opened, and its resident, unique (not shared) and peak resident
        memory in MB."""
        import resource

        import psutil

        process = psutil.Process()
        info = process.memory_full_info()
        return {"pid": process.pid, "node_id": _node_id(), "bundle": str(self.path), "rss_mb": info.rss / 2**20,
                "uss_mb": info.uss / 2**20, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _node_id() -> str | None:
    import sys

    ray = sys.modules.get("ray")
    return ray.get_runtime_context().get_node_id() if ray is not None and ray.is_initialized() else None


# ---------------------------------------------------------------------------------------------- the pool
@dataclass
class _Job:
    """One batch of a call: its requests, the per-row arrays sliced alike, and the answers by first row."""

    requests: RequestBatch
    per_row: dict[str, np.ndarray | None]
    parts: dict[int, Any] = field(default_factory=dict)

    def piece(self, start: int, stop: int) -> tuple[RequestBatch, dict]:
        rows = np.arange(start, stop)
        return take(self.requests, rows), {k: None if v is None else v[start:stop] for k, v in self.per_row.items()}

    def answers(self) -> list:
        return [self.parts[start] for start in sorted(self.parts)]


def _system_errors() -> tuple[type[BaseException], ...]:
    """Ray errors that say where a call ran went away, not that the call is wrong: its rows are re-sent."""
    from ray import exceptions

    return (exceptions.RayActorError, exceptions.WorkerCrashedError, exceptions.ObjectLostError,
            exceptions.NodeDiedError)


class DistributedSimulator:
    """``Simulator.evaluate`` / ``oracle`` over a pool of Ray actors, returning the single-process arrays.

    Args:
        scenario: a bundle directory, a preset name (found in or built into this process's cache), a ``pyarrow.fs``
            URI, or a ``BundleCopy`` (``ship_bundle``: one copy shared by several pools).
        num_workers: actors in the pool (one CPU each), spread over the nodes.
        seed: the preset's seed, when ``scenario`` is a preset name.
        scorer_factory: see ``SimulatorWorker``; must be importable in the workers.
        process_alphas: see ``SimulatorWorker``.
        ray_address: used only if Ray is not initialised yet: ``"local"`` starts a private Ray with
            ``num_workers`` CPUs, another address joins that cluster (see ``adsim.ray_session``).
        max_restarts: actors started, over the pool's life, to replace lost ones.
        call_timeout_s: how long an actor with work may go without answering before it is taken as hung, and how
            long a call waits for a replacement when no actor is left (also the bound on starting the pool).
        env_vars: the workers' environment, in their ``runtime_env`` (with ``$ADSIM_FAULT_DIR`` when set here).
        shared_path: open the driver's bundle path on every node (a shared file system) instead of a copy.

    Use as a context manager, or call ``close()``: the actors (and a Ray this object started) stop there.
    """

    def __init__(self, scenario: BundleSource | Path, num_workers: int = 2, *, seed: int = 0,
                 scorer_factory: ScorerFactory | str | None = None,
                 process_alphas: Sequence[float] = ProcessRewardConfig().alphas, ray_address: str | None = LOCAL,
                 max_restarts: int = 3, call_timeout_s: float = 300.0, env_vars: Mapping[str, str] | None = None,
                 shared_path: bool = False):
        import ray

        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        self.num_workers = num_workers
        self.call_timeout_s = call_timeout_s
        self.restarts_left = max_restarts
        self.calls = 0
        """Pairs scored so far, over all workers."""
        self.lost: list[str] = []
        """Why each lost actor was dropped, in order."""
        self.actors: list = []
        self._starting: dict[Any, Any] = {}  # ready() ref -> actor not yet ready
        self._turn = 0
        self._stack = ExitStack()
        self._stack.enter_context(ray_session(ray_address, num_workers))
        try:
            self.bundle = _resolve(scenario, seed, shared_path)
            self._actor = ray.remote(SimulatorWorker).options(
                num_cpus=1, max_restarts=0, max_task_retries=0, scheduling_strategy="SPREAD",
                runtime_env=worker_env(env_vars) or None)
            self._args = (self.bundle, scorer_factory, tuple(process_alphas))
            for _ in range(num_workers):
                self._start_actor()
            if self.wait_for_workers(call_timeout_s) < num_workers:
                raise AdSimError(f"only {len(self.actors)} of {num_workers} simulator workers started within "
                                 f"{call_timeout_s:.0f} s (not enough free CPUs in the cluster?); lost: {self.lost}")
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------------------------------ actors
    def _start_actor(self) -> None:
        actor = self._actor.remote(*self._args)
        self._starting[actor.ready.remote()] = actor

    def _adopt(self, ref: Any) -> None:
        """A starting actor answered ``ready``: it joins the pool, or, if it died on the way, is replaced."""
        import ray

        actor = self._starting.pop(ref)
        try:
            ray.get(ref)
        except _system_errors() as error:
            self._drop(actor, f"died while opening the bundle ({type(error).__name__})")
        except BaseException:
            ray.kill(actor, no_restart=True)
            raise
        else:
            self.actors.append(actor)

    def _lose(self, actor: Any, why: str) -> None:
        """Drop a pool actor, once (its other ranges fail too), and replace it."""
        if any(actor is a for a in self.actors):
            self.actors = [a for a in self.actors if a is not actor]
            self._drop(actor, why)

    def _drop(self, actor: Any, why: str) -> None:
        import ray

        self.lost.append(why)
        ray.kill(actor, no_restart=True)
        if self.restarts_left > 0:
            self.restarts_left -= 1
            self._start_actor()

    def wait_for_workers(self, timeout_s: float | None = None) -> int:
        """Wait until ``num_workers`` actors are ready, or ``timeout_s`` passed, or none is starting; how many are."""
        import ray

        deadline = time.monotonic() + (self.call_timeout_s if timeout_s is None else timeout_s)
        while len(self.actors) < self.num_workers and self._starting:
            ready, _ = ray.wait(list(self._starting), num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            for ref in ready:
                self._adopt(ref)
            if not ready:
                break
        return len(self.actors)

    def _live(self) -> list:
        """The ready actors (adopting replacements that became ready); waits ``call_timeout_s`` for one if none."""
        import ray

        if self._starting:
            ready, _ = ray.wait(list(self._starting), num_returns=len(self._starting), timeout=0)
            for ref in ready:
                self._adopt(ref)
        if not self.actors:
            self.wait_for_workers(self.call_timeout_s)
        if not self.actors:
            waiting = (f"{len(self._starting)} replacement(s) found no free CPU within {self.call_timeout_s:.0f} s"
                       if self._starting else "no replacement is left to start (max_restarts spent)")
            raise AdSimError(f"no simulator worker left: {len(self.lost)} lost ({'; '.join(self.lost[-5:])}); "
                             f"{waiting}")
        return list(self.actors)

    # ------------------------------------------------------------------------------------------ calls
    def _run(self, method: str, jobs: list[_Job], reward_source: RewardSource, split: bool) -> list[list]:
        """Answer every job with ``method``, each cut over the live actors (``split``) or whole to one in turn;
        rows whose actor is lost or hung are cut again over the others (see the module doc)."""
        import ray

        inflight: dict[Any, tuple[int, int, int, Any]] = {}  # ref -> (job, start, stop, actor)
        heard: dict[int, float] = {}  # id(actor) -> last answer, or when it got work while idle

        def send(j: int, start: int, stop: int, cut: bool) -> None:
            live = self._live()
            if cut:
                bounds = [r for r in np.array_split(np.arange(start, stop), len(live)) if len(r)]
                ranges = [(int(r[0]), int(r[-1]) + 1) for r in bounds] or [(start, stop)]
            else:
                ranges = [(start, stop)]
            for i, (lo, hi) in enumerate(ranges):
                if cut:  # range i to actor i
                    actor = live[i % len(live)]
                else:
                    actor, self._turn = live[self._turn % len(live)], self._turn + 1
                if not any(a is actor for *_, a in inflight.values()):
                    heard[id(actor)] = time.monotonic()
                requests, per_row = jobs[j].piece(lo, hi)
                ref = getattr(actor, method).remote(requests, reward_source=reward_source, **per_row)
                inflight[ref] = (j, lo, hi, actor)

        for j, job in enumerate(jobs):
            send(j, 0, len(job.requests["user_id"]), split)
        while inflight:
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=min(1.0, self.call_timeout_s))
            if ready:
                rest = [r for r in inflight if r not in ready]
                ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0] if rest else []
            for ref in ready:
                j, lo, hi, actor = inflight.pop(ref)
                try:
                    result, calls = ray.get(ref)
                except _system_errors() as error:
                    self._lose(actor, f"{type(error).__name__} during {method}")
                    send(j, lo, hi, True)
                    continue
                heard[id(actor)] = time.monotonic()
                jobs[j].parts[lo] = result
                self.calls += calls
            now = time.monotonic()
            hung = {id(a): a for *_, a in inflight.values() if now - heard[id(a)] > self.call_timeout_s}
            for actor in hung.values():
                self._lose(actor, f"no answer to {method} for {self.call_timeout_s:.0f} s")
                for ref in [r for r, (*_, a) in inflight.items() if a is actor]:
                    j, lo, hi, _ = inflight.pop(ref)
                    send(j, lo, hi, True)
        return [job.answers() for job in jobs]

    def evaluate(self, requests: RequestBatch, paths: np.ndarray, reward_source: RewardSource = "model",
                 allowed: np.ndarray | None = None) -> Evaluation:
        """``Simulator.evaluate`` of (B, K, L) ``paths``, the B rows split over the workers."""
        job = _Job(requests, {"paths": np.asarray(paths), "allowed": None if allowed is None else np.asarray(allowed)})
        return _concat_evaluations(self._run("evaluate", [job], reward_source, split=True)[0])

    def oracle(self, requests: RequestBatch, reward_source: RewardSource = "model",
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``Simulator.oracle``, the rows split over the workers."""
        job = _Job(requests, {"allowed": None if allowed is None else np.asarray(allowed)})
        parts = self._run("oracle", [job], reward_source, split=True)[0]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def evaluate_batches(self, batches: Iterable[tuple[RequestBatch, np.ndarray]],
                         reward_source: RewardSource = "model",
                         allowed: Sequence[np.ndarray | None] | None = None) -> list[Evaluation]:
        """``Simulator.evaluate`` of many (requests, paths) batches, whole batches dealt to the actors in turn."""
        jobs = [_Job(requests, {"paths": np.asarray(paths),
                                "allowed": None if allowed is None or allowed[i] is None else np.asarray(allowed[i])})
                for i, (requests, paths) in enumerate(batches)]
        return [_concat_evaluations(parts) for parts in self._run("evaluate", jobs, reward_source, split=False)]

    def memory(self) -> list[dict]:
        """Each ready worker's ``SimulatorWorker.memory()``."""
        import ray

        return ray.get([a.memory.remote() for a in self._live()], timeout=self.call_timeout_s)

    # ------------------------------------------------------------------------------------------ lifetime
    def close(self) -> None:
        import ray

        for actor in [*getattr(self, "actors", []), *getattr(self, "_starting", {}).values()]:
            ray.kill(actor, no_restart=True)
        self.actors, self._starting = [], {}
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
