"""Benchmark output: every table as CSV and Markdown, headed by the command, commit, versions and wall time that
made it, so every number quoted in the README can be traced to a file (``benchmarks.readme`` copies them there).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pandas as pd

_STARTED = time.perf_counter()
_INVOCATION: list[str] | None = None
"""Set by ``benchmarks.run`` (``adsim bench NAME ...``), so the report shows the command the user typed."""
PACKAGES = ("numpy", "pandas", "lightgbm", "numba", "torch", "ray", "gymnasium")


def set_invocation(argv: list[str]) -> None:
    """Record the command line (``["adsim", "bench", NAME, *args]``) and restart the wall-time clock."""
    global _INVOCATION, _STARTED
    _INVOCATION, _STARTED = list(argv), time.perf_counter()


def command_line() -> str:
    if _INVOCATION is not None:
        return " ".join(shlex.quote(a) for a in _INVOCATION)
    main = sys.modules.get("__main__")
    module = getattr(getattr(main, "__spec__", None), "name", None) or (
        "benchmarks." + Path(sys.argv[0]).stem if sys.argv and sys.argv[0].endswith(".py") else "benchmarks.?")
    return " ".join(["python", "-m", module, *(shlex.quote(a) for a in sys.argv[1:])])


def _commit() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return sha + ("+uncommitted changes" if dirty else "")


def provenance() -> dict:
    """Where a result comes from: command, commit, adsim and generator versions, libraries, machine, wall time."""
    from adsim import __version__
    from adsim.data.bundle import GENERATOR_VERSION
    from adsim.simulator.simulator import SIMULATOR_VERSION

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "command": command_line(),
        "commit": _commit(),
        "adsim": __version__,
        "generator_version": GENERATOR_VERSION,
        "simulator_version": SIMULATOR_VERSION,
        "python": platform.python_version(),
        "versions": versions,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "wall_time_s": round(time.perf_counter() - _STARTED, 1),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def provenance_lines(info: dict) -> str:
    libs = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    return (f"Command: `{info['command']}`  \nCommit {info['commit']}, adsim {info['adsim']}, generator "
            f"v{info['generator_version']}, simulator v{info.get('simulator_version', 1)}, Python {info['python']} "
            f"({libs}), {info['machine']}, wall time "
            f"{info['wall_time_s']:.0f} s, finished {info['finished']}.")


def write_report(out: Path, name: str, rows: list[dict] | pd.DataFrame, title: str, notes: str = "") -> Path:
    """Write ``name.csv``, ``name.md`` (provenance header, table, notes) and ``name.json`` (the provenance) into
    ``out``; print the Markdown; return the .md path. Files are written to a temporary name, then renamed."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    info = provenance()
    table = df.to_markdown(index=False, floatfmt=".4g")
    text = f"# {title}\n\n{provenance_lines(info)}\n\n{table}\n"
    if notes:
        text += f"\n{notes}\n"
    for suffix, write in ((".csv", lambda f: df.to_csv(f, index=False)), (".md", lambda f: f.write_text(text)),
                          (".json", lambda f: f.write_text(json.dumps(info, indent=1) + "\n"))):
        tmp = out / f".{name}{suffix}.tmp"
        write(tmp)
        os.replace(tmp, out / f"{name}{suffix}")
    print(text)
    return out / f"{name}.md"
