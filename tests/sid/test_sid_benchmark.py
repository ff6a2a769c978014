"""Smoke test of ``python -m benchmarks.tokenizers --quick``: it runs, writes CSV + Markdown, states its verdicts
(Amazon items: the generated stand-in and the real data)."""

import os
import subprocess
import sys

import pandas as pd

from adsim.paths import PROJECT_ROOT


def test_tokenizer_benchmark_quick(tmp_path, data_env):
    env = {**data_env, "ADSIM_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    datasets = ["synthetic", "amazon"]
    run = subprocess.run([sys.executable, "-m", "benchmarks.tokenizers", "--quick", "--out", str(tmp_path / "out"),
                          "--datasets", *datasets], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert markdown.splitlines()[2].startswith("Command: `python -m benchmarks.tokenizers --quick")
    assert "Verdicts:" in markdown and "CSID classify-then-bin" in markdown
    results = pd.read_csv(tmp_path / "out" / "results.csv", comment="#")
    assert set(results["dataset"]) == set(datasets)
    assert results["collision_%"].between(0, 100).all()
