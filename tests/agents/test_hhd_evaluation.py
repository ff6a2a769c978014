"""Offline metrics on hand numbers, the popularity baseline, and smoke runs of both benchmarks (the sequence-model
one's Amazon section on the generated stand-in and on the real data)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from adsim.trie import SidTrie
from agents.hhd.evaluation import Popularity, ranking_metrics, target_ranks


def test_ranking_metrics_known_answer():
    ranks = np.array([0, 2, -1, 9])
    m = ranking_metrics(ranks, (1, 3, 10))
    assert m["HR@1"] == 0.25 and m["HR@3"] == 0.5 and m["HR@10"] == 0.75
    np.testing.assert_allclose(m["NDCG@3"], (1 + 1 / np.log2(4)) / 4)
    np.testing.assert_allclose(m["NDCG@10"], (1 + 1 / np.log2(4) + 1 / np.log2(11)) / 4)
    gmv = np.array([10.0, 0.0, 30.0, 60.0])
    v = ranking_metrics(ranks, (3, 10), gmv)
    np.testing.assert_allclose(v["ValueHR@3"], 0.1)
    np.testing.assert_allclose(v["ValueHR@10"], 0.7)
    w = np.log10(1 + gmv)
    np.testing.assert_allclose(v["wNDCG@10"], (w[0] + w[3] / np.log2(11)) / w.sum())


def test_target_ranks_match_paths_not_slots():
    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 0]])  # items 2 and 3 collide
    trie = SidTrie(codes, (2, 2))
    candidates = np.array([[[1, 0], [0, 1], [-1, -1]], [[0, 0], [1, 1], [0, 1]]])
    np.testing.assert_array_equal(target_ranks(trie, candidates, codes[[3, 1]]), [0, 2])
    np.testing.assert_array_equal(target_ranks(trie, candidates, codes[[0, 2]]), [-1, -1])


def test_popularity_ranks_counts_within_the_allowed_items():
    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    pop = Popularity(SidTrie(codes, (2, 2)), np.array([5, 1, 9, 0]))
    allowed = np.array([[True, True, True, True], [True, True, False, False]])
    paths = pop.recommend(allowed, 3)
    np.testing.assert_array_equal(paths[0], [[1, 0], [0, 0], [0, 1]])
    np.testing.assert_array_equal(paths[1], [[0, 0], [0, 1], [-1, -1]])


def run(module: str, tmp_path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", module, "--quick", "--out", str(tmp_path)], env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_sequence_models_benchmark_quick(tmp_path, data_env):
    out = run("benchmarks.sequence_models", tmp_path, data_env)
    assert "Which of the paper's claims hold here" in out
    for name in ("table2", "runs", "amazon"):
        text = (tmp_path / f"{name}.md").read_text()
        assert "python -m benchmarks.sequence_models --quick" in text
        assert (tmp_path / f"{name}.csv").is_file()


def test_decoding_benchmark_quick(tmp_path):
    run("benchmarks.decoding", tmp_path)
    text = (tmp_path / "decoding.md").read_text()
    assert "python -m benchmarks.decoding --quick" in text and "unconstrained" in text
