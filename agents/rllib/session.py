"""Ray for RLlib: the core's ``ray_session`` with torch held to one thread, and a check for leftover Ray daemons."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import torch

from adsim import ray_session as core

RAY_DAEMONS = ("raylet", "gcs_server")


@contextmanager
def ray_session(*args: Any, **kwargs: Any) -> Iterator[None]:
    """``adsim.ray_session.ray_session`` (same arguments and defaults), torch limited to one thread meanwhile.

    RLlib runs the learner and the local EnvRunner in this process next to the Ray workers, and on a small machine
    torch's default thread pool oversubscribes the cores (PPO iterations were about 3x slower with it on 2 busy
    cores). The core cannot do this itself: it never imports torch.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with core.ray_session(*args, **kwargs):
            yield
    finally:
        torch.set_num_threads(threads)


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
