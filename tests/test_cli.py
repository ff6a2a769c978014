"""The ``adsim`` command line, run as a user would: in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys


def _adsim(*args, env=None):
    return subprocess.run([sys.executable, "-m", "adsim.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_help_lists_subcommands():
    out = _adsim("--help")
    assert out.returncode == 0
    for command in ("build", "describe", "validate", "schema"):
        assert command in out.stdout


def test_build_describe_validate(tmp_path):
    bundle = tmp_path / "tiny"
    out = _adsim("build", "--preset", "tiny", "--seed", "3", "--out", str(bundle), "--quiet")
    assert out.returncode == 0, out.stderr
    assert (bundle / "manifest.json").is_file()
    described = _adsim("describe", str(bundle))
    assert described.returncode == 0, described.stderr
    assert "CTR" in described.stdout and "inventory ever shown" in described.stdout
    summary = json.loads(_adsim("describe", str(bundle), "--json").stdout)
    assert summary["rows"]["users"] == 300
    assert _adsim("validate", str(bundle)).returncode == 0
    again = _adsim("build", "--preset", "tiny", "--seed", "3", "--out", str(bundle), "--quiet")
    assert again.returncode == 2 and "already exists" in again.stderr


def test_errors_are_reported_without_traceback(tmp_path):
    out = _adsim("validate", str(tmp_path))
    assert out.returncode == 2
    assert "manifest.json is missing" in out.stderr and "Traceback" not in out.stderr


def test_bench_forwards_to_the_benchmark_module():
    out = _adsim("bench", "dpo-vs-hepo", "--help")
    assert out.returncode == 0 and "--preset" in out.stdout
    bad = _adsim("bench", "no-such-benchmark")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
