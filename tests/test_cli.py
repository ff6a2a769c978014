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


def test_bench_without_a_name_lists_every_benchmark_with_its_duration():
    from benchmarks import CATALOGUE

    out = _adsim("bench")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for name, bench in CATALOGUE.items():
        line = next(x for x in lines if x.split()[:1] == [name])
        assert bench.duration in line and bench.about in line


def test_user_errors_end_in_one_line_naming_the_argument(tmp_path):
    cases = [
        (("build", "--preset", "tinyy", "--out", str(tmp_path / "a")), "--preset"),
        (("build", "--preset", "tiny", "--seed", "-1", "--out", str(tmp_path / "b"), "--quiet"), "--seed"),
        (("validate", str(tmp_path / "nowhere")), str(tmp_path / "nowhere")),
        (("import", "--format", "csv", str(tmp_path / "none.csv"), "--mapping", str(tmp_path / "m.yaml"),
          "--out", str(tmp_path / "c")), str(tmp_path)),
    ]
    for args, named in cases:
        out = _adsim(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert "Traceback" not in out.stderr and named in out.stderr.strip().splitlines()[-1], (args, out.stderr)


def test_validate_accepts_a_preset_name(tmp_path):
    import os

    env = {**os.environ, "ADSIM_CACHE_DIR": str(tmp_path / "cache")}
    out = _adsim("validate", "tiny", "--seed", "5", env=env)
    assert out.returncode == 0 and "valid" in out.stdout, out.stderr


def test_schema_piped_into_head_ends_quietly():
    out = subprocess.run(f"{sys.executable} -m adsim.cli schema | head -n 1", shell=True, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() and "Traceback" not in out.stderr
    assert "BrokenPipe" not in out.stderr
