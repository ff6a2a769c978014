"""Build time, throughput and peak memory of the synthetic world's logs, per preset.

Each preset builds in a fresh subprocess, so its peak RSS is its own. Budgets on a 2-core, 24 GB machine:
``small`` under 5 minutes within 4 GB; ``medium`` streams its tables and stays within 12 GB.

    python -m benchmarks.build_world                      # tiny, small, medium
    python -m benchmarks.build_world --presets tiny small
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from adsim.arguments import add_dataclass_arguments, dataclass_from_arguments
from benchmarks.report import write_report

BUDGETS = {"small": (300.0, 4096.0), "medium": (None, 12288.0)}
"""preset -> (max seconds, max peak RSS in MB)."""


@dataclass
class Config:
    presets: list[str] = field(default_factory=lambda: ["tiny", "small", "medium"])
    """World presets to build, each in its own process."""
    seed: int = 0
    out: Path = Path("results/build_world")


def build_one(preset: str, seed: int, directory: Path) -> dict:
    """Runs inside the child process."""
    from adsim import build_scenario

    started = time.perf_counter()
    path = build_scenario(directory / preset, preset, seed, progress=False)
    seconds = time.perf_counter() - started
    rows = json.loads((path / "manifest.json").read_text())["rows"]
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return {"seconds": seconds, "rows": rows, "bundle_mb": size / 2**20,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_arguments(parser, Config)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    config = dataclass_from_arguments(Config, args)
    if args.child:
        print(json.dumps(build_one(args.child, config.seed, args.dir)))
        return []

    results = []
    with tempfile.TemporaryDirectory(prefix="adsim-bench-") as tmp:
        for preset in config.presets:
            child = [sys.executable, "-m", "benchmarks.build_world", "--child", preset, "--seed", str(config.seed),
                     "--dir", tmp]
            done = subprocess.run(child, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"building {preset} failed:\n{done.stderr[-3000:]}")
            r = json.loads(done.stdout.strip().splitlines()[-1])
            rows = r["rows"]
            logged = rows["requests"] + rows["impressions"] + rows["organic_events"]
            max_s, max_mb = BUDGETS.get(preset, (None, None))
            within = (max_s is None or r["seconds"] <= max_s) and (max_mb is None or r["peak_rss_mb"] <= max_mb)
            results.append({
                "preset": preset, "users": rows["users"], "ads": rows["ads"], "requests": rows["requests"],
                "impressions": rows["impressions"], "organic_events": rows["organic_events"],
                "seconds": round(r["seconds"], 1), "logged_rows_per_s": round(logged / r["seconds"]),
                "peak_rss_mb": round(r["peak_rss_mb"]), "bundle_mb": round(r["bundle_mb"], 1),
                "budget": f"{max_s or '-'} s / {max_mb or '-'} MB", "within_budget": within,
            })
            print(f"{preset}: {results[-1]}", flush=True)
    write_report(config.out, "build_world", results, title="Synthetic world build: time, throughput, peak memory",
                 notes="Logs only (users, ads, organic items, requests, impressions, organic events); each preset "
                       "in its own process, peak RSS from getrusage.")
    return results


if __name__ == "__main__":
    main()
