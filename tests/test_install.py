"""The installed `adsim` command finds adsim's own `benchmarks` package from any working directory (torchrl ships a
stray top-level `benchmarks/` folder that shadows it under a strict editable install)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def test_adsim_bench_lists_the_benchmarks_from_another_directory(tmp_path):
    adsim = shutil.which("adsim") or str(Path(sys.executable).with_name("adsim"))
    if not Path(adsim).exists():
        pytest.fail("the adsim command is not installed: install the project as the README says")
    done = subprocess.run([adsim, "bench"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "dpo-vs-hepo" in done.stdout


def test_every_nested_conftest_lives_in_a_package():
    """A nested conftest outside a package is imported as the module ``conftest`` too and shadows the root one, which
    tests import fixtures from (``from conftest import TruthLikeScorer``)."""
    root = Path(__file__).parent
    loose = [str(p.relative_to(root)) for p in root.rglob("conftest.py")
             if p.parent != root and not (p.parent / "__init__.py").is_file()]
    assert not loose, f"add an __init__.py beside {loose}"
