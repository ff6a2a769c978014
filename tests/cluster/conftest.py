"""A simulated three-node Ray cluster for the scale-out tests: ``ray.cluster_utils.Cluster``, three nodes of 1 CPU.

Each node plays a separate machine as far as adsim can tell: its own cache directory (``ADSIM_CACHE_DIR``, set in
the node's own environment when it starts, as a machine's would be), no ``ADSIM_FAULT_DIR`` (only a ``runtime_env``
brings it), and no access to the driver's bundle (``shipped`` deletes it once it is in the object store). A node is
SIGKILLed with ``SimCluster.kill`` and replaced with ``SimCluster.restore``; nodes die fast here (health checks
every second) so the tests stay short.

The cluster lives for the package's tests and leaves nothing behind: Ray is shut down, the nodes are stopped by
``cluster.shutdown()``, and every process the cluster ever started must then be gone: one still exiting after
``EXIT_GRACE_S`` (a killed node's workers can linger) is killed by PID with a warning, and one that survives SIGKILL
fails the run. ``ray stop`` is never used: it would kill every Ray on the machine.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest

ray = pytest.importorskip("ray")

from adsim.world.shards import FAULT_DIR_ENV, clear_faults  # noqa: E402
from cluster.simcluster import FAST_DEATH, N_NODES, Shipped, SimCluster  # noqa: E402  (after the skip)

EXIT_GRACE_S = 15
"""How long the cluster's processes get to exit after shutdown before the ones left are killed by PID."""


@pytest.fixture(scope="package")
def sim_cluster() -> Iterator[SimCluster]:
    from ray.cluster_utils import Cluster

    root = Path(tempfile.mkdtemp(prefix="adsim-cl-"))  # short: Ray's socket paths must stay under 108 bytes
    saved = {key: os.environ.get(key) for key in ("RAY_TMPDIR", FAULT_DIR_ENV)}
    os.environ["RAY_TMPDIR"] = str(root / "ray")
    os.environ.pop(FAULT_DIR_ENV, None)
    state = SimCluster(None, root)
    head = {**state.node_args(), "include_dashboard": False, "_system_config": FAST_DEATH}
    state.cluster = Cluster(initialize_head=True, head_node_args=head, shutdown_at_exit=False)
    state.caches[state.cluster.head_node.node_id] = Path(head["env_vars"]["ADSIM_CACHE_DIR"])
    try:
        for _ in range(N_NODES - 1):
            state.add_node()
        ray.init(address=state.cluster.address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        # from here on the driver sets the fault hook; only runtime_env carries it to the nodes
        os.environ[FAULT_DIR_ENV] = str(root / "faults")
        (root / "faults").mkdir()
        yield state
    finally:
        state.remember_processes()
        ray.shutdown()
        state.cluster.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _, alive = psutil.wait_procs(list(state.started.values()), timeout=EXIT_GRACE_S)
        slow = [p for p in alive if _running(p)]  # a zombie has exited; its (dead) parent just never reaped it
        for process in slow:
            _kill(process)
        _, survivors = psutil.wait_procs(slow, timeout=10)
        shutil.rmtree(root, ignore_errors=True)
        if slow:  # a worker of a SIGKILLed node can linger (over a minute on a loaded machine): killed by PID now
            warnings.warn(f"Ray processes still exiting {EXIT_GRACE_S} s after shutdown, killed: "
                          f"{[p.pid for p in slow]}",
                          stacklevel=1)
        left = [p.pid for p in survivors if _running(p)]
        assert not left, f"Ray processes left behind that survived SIGKILL: {left}"


@pytest.fixture(autouse=True)
def no_leftover_faults(sim_cluster) -> Iterator[None]:
    clear_faults()
    yield
    clear_faults()


@pytest.fixture(scope="package")
def shipped(sim_cluster, tmp_path_factory) -> Shipped:
    from adsim import Scenario, build_scenario
    from adsim.simulator.requests import RequestStream
    from envs.distributed import SimulatorWorker, ship_bundle
    from reward_models.pipeline import default_steps

    path = build_scenario(tmp_path_factory.mktemp("driver-only") / "b", "tiny", seed=5, progress=False,
                          steps=default_steps())
    simulator = SimulatorWorker(str(path)).simulator
    requests = RequestStream(Scenario(path), "train", seed=0).sample(240, np.random.default_rng(0), arr_ratio=0.2)
    rng = np.random.default_rng(1)
    paths = simulator.ad_codes[rng.integers(0, len(simulator.ad_codes), size=(240, 5))]
    paths[:, :2, -1] = rng.integers(0, simulator.trie.width, size=(240, 2))
    expected = {}
    for source in ("model", "truth"):
        expected["evaluate", source] = simulator.evaluate(requests, paths, source)
        expected["oracle", source] = simulator.oracle(requests, source)
    copy = ship_bundle(path)
    shutil.rmtree(path)  # no worker can have read it from here: it is gone
    return Shipped(copy, path, requests, paths, expected)


def _kill(process: psutil.Process) -> None:
    try:
        process.kill()
    except psutil.NoSuchProcess:
        pass


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
