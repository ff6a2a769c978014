"""Starting and stopping Ray the same way in scripts, benchmarks and tests, without leaving processes behind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

RAY_DAEMONS = ("raylet", "gcs_server")


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = 2, temp_dir: str | Path | None = None,
                **init_kwargs) -> Iterator[None]:
    """``ray.init`` ... ``ray.shutdown``, torch limited to one thread in this process meanwhile. Inside an already
    running Ray session (a test fixture, a notebook) it neither starts nor stops Ray.

    Args:
        address: an existing cluster ("auto" or "ray://..."); then ``num_cpus`` and ``temp_dir`` are the
            cluster's business and ignored. None starts a local instance.
        num_cpus: CPUs of the local instance (2 on a laptop-sized machine).
        temp_dir: Ray's session directory root for a local instance (default: Ray's, ``/tmp/ray``).
        **init_kwargs: anything else ``ray.init`` takes.

    One torch thread per process: RLlib runs the learner and the local EnvRunner in this process next to the
    Ray workers, and on a small machine torch's default thread pool oversubscribes the cores (PPO iterations
    were about 3x slower with it on 2 busy cores).
    """
    import ray
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if ray.is_initialized():
            yield
        else:
            yield from _local_or_cluster(ray, address, num_cpus, temp_dir, init_kwargs)
    finally:
        torch.set_num_threads(threads)


def _local_or_cluster(ray, address, num_cpus, temp_dir, init_kwargs) -> Iterator[None]:
    kwargs = {"include_dashboard": False, "log_to_driver": False, **init_kwargs}
    environ = {"RAY_USAGE_STATS_ENABLED": os.environ.get("RAY_USAGE_STATS_ENABLED", "0")}
    if address is None:
        kwargs["num_cpus"] = num_cpus
        if temp_dir is not None:
            kwargs["_temp_dir"] = environ["RAY_TMPDIR"] = str(Path(temp_dir).resolve())
    else:
        kwargs["address"] = address
    saved = {k: os.environ.get(k) for k in environ}
    os.environ.update(environ)
    try:
        ray.init(**kwargs)
        try:
            yield
        finally:
            ray.shutdown()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def leftover_ray_processes(temp_dir: str | Path) -> list[psutil.Process]:
    """Ray daemons (raylet, GCS) still running whose command line names ``temp_dir`` (one local session's)."""
    marker = str(Path(temp_dir).resolve())
    out = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            name = proc.info["name"] or ""
            cmdline = " ".join(proc.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if any(d in name or d in cmdline.split(" ")[0] for d in RAY_DAEMONS) and marker in cmdline:
            out.append(proc)
    return out
