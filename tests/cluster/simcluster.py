"""The simulated cluster's handle, the shipped bundle and small helpers of the ``tests/cluster`` tests."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import ray

from adsim.world.shards import FAULT_DIR_ENV, triggered_faults

N_NODES = 3
FAST_DEATH = {"health_check_period_ms": 1000, "health_check_timeout_ms": 1000, "health_check_failure_threshold": 4}
"""A SIGKILLed node is declared dead in about 4 s instead of Ray's default of about 30 s."""


@dataclass
class SimCluster:
    cluster: Any
    root: Path
    caches: dict[str, Path] = field(default_factory=dict)
    """node id -> the node's own ADSIM_CACHE_DIR."""
    started: dict[int, psutil.Process] = field(default_factory=dict)
    """Every process the cluster started (pid -> process), collected before each kill and at the end."""
    _count: int = 0

    @property
    def head_id(self) -> str:
        return self.cluster.head_node.node_id

    def node_args(self) -> dict:
        self._count += 1
        cache = self.root / f"node{self._count}" / "cache"
        return {"num_cpus": 1, "object_store_memory": 100 * 2**20, "env_vars": {"ADSIM_CACHE_DIR": str(cache)}}

    def add_node(self) -> str:
        args = self.node_args()
        saved = os.environ.pop(FAULT_DIR_ENV, None)  # a node started now must not inherit the test's setting
        try:
            node = self.cluster.add_node(**args)
        finally:
            if saved is not None:
                os.environ[FAULT_DIR_ENV] = saved
        self.caches[node.node_id] = Path(args["env_vars"]["ADSIM_CACHE_DIR"])
        self.cluster.wait_for_nodes()
        return node.node_id

    def alive(self) -> list[str]:
        return [n["NodeID"] for n in ray.nodes() if n["Alive"]]

    def others(self) -> list[str]:
        """The alive nodes that are not the head (the head cannot be killed: it holds the cluster's state)."""
        return [n for n in self.alive() if n != self.head_id]

    def remember_processes(self) -> None:
        for process in psutil.Process().children(recursive=True):
            self.started.setdefault(process.pid, process)

    def kill(self, node_id: str) -> None:
        """SIGKILL every process of a (non-head) node, as a machine that loses power."""
        node = next(n for n in self.cluster.worker_nodes if n.node_id == node_id)
        self.remember_processes()
        self.cluster.remove_node(node, allow_graceful=False)
        deadline = time.monotonic() + 30
        while node_id in self.alive() and time.monotonic() < deadline:
            time.sleep(0.2)

    def restore(self) -> None:
        """Back to ``N_NODES`` alive nodes."""
        while len(self.alive()) < N_NODES:
            self.add_node()

    def kill_when(self, marker: str, node_id: str, timeout_s: float = 60) -> None:
        """Wait until the planted fault ``marker`` fired on ``node_id`` (a process hangs there), then kill that node."""
        deadline = time.monotonic() + timeout_s
        while marker not in triggered_faults():
            assert time.monotonic() < deadline, f"fault {marker} never fired"
            time.sleep(0.1)
        assert triggered_faults()[marker]["node_id"] == node_id
        self.kill(node_id)


def in_thread(call: Callable[[], Any]) -> Callable[[float], Any]:
    """Run ``call`` in a thread now; the returned function joins it (with a timeout) and returns or raises."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as error:  # re-raised in the joining thread
            box["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join(timeout_s: float) -> Any:
        thread.join(timeout_s)
        assert not thread.is_alive(), f"the call did not return within {timeout_s} s"
        if "error" in box:
            raise box["error"]
        return box["value"]

    return join


@dataclass
class Shipped:
    """A tiny bundle with SIDs and reward models that only the driver ever had on disk, now in the object store."""

    copy: Any
    driver_path: Path
    requests: dict
    paths: np.ndarray
    expected: dict
    """(method, reward_source) -> the single-process simulator's answer on ``requests`` (and ``paths``)."""


def assert_same(got, expected) -> None:
    """Equal arrays, dtypes included: an ``Evaluation`` field by field, or a tuple of arrays."""
    pairs = ([(getattr(got, n), getattr(expected, n)) for n in expected._fields] if hasattr(expected, "_fields")
             else list(zip(got, expected, strict=True)))
    for a, b in pairs:
        assert (a is None and b is None) or (a.dtype == b.dtype and np.array_equal(a, b))
