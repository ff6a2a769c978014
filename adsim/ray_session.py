"""Starting and stopping Ray the same way everywhere: scale-out builds, simulator pools, RLlib, benchmarks, tests.

Ray is imported inside ``ray_session``, never when this module is, so the core stays importable without it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOCAL = "local"
"""The address meaning "a private Ray on this machine" (as None does)."""


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
