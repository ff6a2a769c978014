"""Starting and stopping Ray the same way everywhere: scale-out builds, simulator pools, RLlib, benchmarks, tests.

Ray is imported inside ``ray_session``, never when this module is, so the core stays importable without it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOCAL = "local"
"""The address meaning "a private Ray on this machine" (as None does)."""


def worker_runtime_env(env_vars: Mapping[str, str] | None = None, forward: Iterable[str] = ()) -> dict:
    """The ``runtime_env`` that configures adsim's Ray tasks and actors on every node, whoever started the node.

    A worker inherits the environment of its node's raylet, fixed when that node joined the cluster: a variable
    set later on the driver never reaches it. A ``runtime_env`` travels with each task or actor instead.

    Args:
        env_vars: variables to set in the workers (``ADSIM_CACHE_DIR``: where a worker keeps its node's copies of
            bundles and Arrow tables).
        forward: names copied from this (the driver's) environment where set there, unless ``env_vars`` sets them.
    """
    values = {name: os.environ[name] for name in forward if name in os.environ}
    values.update(env_vars or {})
    return {"env_vars": values} if values else {}


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None, temp_dir: str | Path | None = None,
                **init_kwargs: Any) -> Iterator[None]:
    """``ray.init`` ... ``ray.shutdown`` around the block, leaving no Ray behind.

    A Ray already initialised in this process (a test fixture, a notebook, a Tune trial) is used as it is and left
    running. Otherwise Ray starts without its dashboard, without forwarding worker output to this process (it stays
    in the session's logs) and without touching Python logging, and with usage statistics off unless
    ``RAY_USAGE_STATS_ENABLED`` says otherwise.

    Args:
        address: None or ``"local"`` start a private single-machine Ray; anything else joins that cluster
            (``"auto"``, ``"ray://head:10001"``, ``"head:6379"``), whose CPUs and directories are its own business.
        num_cpus: CPUs of a private Ray (default None: every core of the machine).
        temp_dir: root of a private Ray's session directory (default None: Ray's, ``/tmp/ray``).
        **init_kwargs: anything else ``ray.init`` takes; overrides the defaults above.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    environ = {"RAY_USAGE_STATS_ENABLED": os.environ.get("RAY_USAGE_STATS_ENABLED", "0")}
    if address in (None, LOCAL):
        kwargs["num_cpus"] = num_cpus
        if temp_dir is not None:
            kwargs["_temp_dir"] = environ["RAY_TMPDIR"] = str(Path(temp_dir).resolve())
    else:
        kwargs["address"] = address
    saved = {key: os.environ.get(key) for key in environ}
    os.environ.update(environ)
    try:
        ray.init(**{**kwargs, **init_kwargs})
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
