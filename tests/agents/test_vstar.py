"""V-STAR: Sibling-GRPO's advantages on hand numbers, VED's candidates (legal, duplicate-free, seeded, honest
ratios) and a known-answer learning test of Sibling-GRPO with VED on the tiny world."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from test_posttrain_train import (  # noqa: F401 (fixtures)
    _config,
    _requests,
    sampled_value,
    tiny_env,
    vaft_checkpoint,
    vaft_model,
    valuable_env,
)

from agents.posttrain.objectives import group_zscore, sibling_advantages


def test_sibling_advantages_by_hand():
    # 4 candidates, 3 levels; rewards 1, 3, 1, 3 (mean 2, std 1). The tree:
    #   root -> 0 (c0, c1, c2: Q = 5/3) and 1 (c3: Q = 3); siblings' mean 7/3
    #   0 -> 00 (c0, c1: Q = 2) and 01 (c2: Q = 1); mean 3/2.   1 -> 10 (c3) alone
    #   00 -> 000 (c0: 1) and 001 (c1: 3); mean 2.              01 -> 010 (c2), 10 -> 100 (c3) alone
    paths = np.array([[[0, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0]]])
    rewards = np.array([[1.0, 3.0, 1.0, 3.0]])
    expected = [[-2 / 3, 0.5, -1.0], [-2 / 3, 0.5, 1.0], [-2 / 3, -0.5, 0.0], [2 / 3, 0.0, 0.0]]
    np.testing.assert_allclose(sibling_advantages(paths, rewards, eps=0.0), [expected])
    # GRPO would give every level the z-score (-1, 1, -1, 1): the shared prefix 0 gets its candidates' signal too
    np.testing.assert_allclose(group_zscore(rewards, eps=0.0), [[-1.0, 1.0, -1.0, 1.0]])


def test_sibling_advantages_skip_invalid_candidates_and_lone_nodes():
    paths = np.array([[[0, 0, 0], [0, 0, 1], [1, 2, 3], [0, 0, 0]], [[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]]])
    rewards = np.array([[1.0, 3.0, 50.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    valid = np.array([[True, True, False, True], [True] * 4])
    adv = sibling_advantages(paths, rewards, valid, eps=0.0)
    scale = np.std([1.0, 3.0, 1.0])
    np.testing.assert_allclose(adv[0, :, :2], 0.0)  # one branch shared by every valid candidate
    np.testing.assert_allclose(adv[0, :, 2], np.array([-1.0, 1.0, 0.0, -1.0]) / scale)  # duplicates count twice
    np.testing.assert_array_equal(adv[1], 0.0)  # identical paths: no sibling anywhere


@pytest.mark.parametrize("hte", [True, False])
def test_ved_paths_are_legal_new_and_seeded(vaft_model, tiny_env, hte):  # noqa: F811
    from agents.hhd.decoding import valid_paths
    from agents.hhd.value_guided import VEDConfig, ved

    model = vaft_model if hte else copy.deepcopy(vaft_model)
    if not hte:
        model.value = None  # log-prob-only VED
    requests, allowed = _requests(tiny_env, 24, 3)
    k, config = 8, VEDConfig(scouts=0.25)

    def run(seed: int) -> np.ndarray:
        return ved(model, tiny_env.batch(requests), tiny_env.trie.legal(allowed), k, config, 1.0,
                   torch.Generator().manual_seed(seed)).numpy()

    paths = run(0)
    assert paths.shape == (len(allowed), k, 3)
    assert valid_paths(tiny_env.ctx.simulator.trie, paths, allowed).all()
    np.testing.assert_array_equal(paths, run(0))
    assert not np.array_equal(paths, run(1))
    codes = tiny_env.ctx.simulator.ad_codes
    for b in range(len(paths)):  # every branch is a path no earlier candidate took (while any is left)
        legal = len(np.unique(codes[allowed[b]], axis=0))
        scouts = len(np.unique(paths[b, :2], axis=0))
        assert len(np.unique(paths[b], axis=0)) == min(legal, scouts + k - 2)


def test_ved_rollout_scores_its_candidates_under_the_collecting_policy(vaft_model, tiny_env):  # noqa: F811
    from agents.posttrain.train import collect

    requests, _ = _requests(tiny_env, 8, 4)
    roll = collect(vaft_model, tiny_env, requests, 6, 0.7, torch.Generator().manual_seed(0), False, sampler="ved")
    assert roll.valid.all() and roll.paths.shape == (len(roll.valid) * 6, 3)
    with torch.no_grad():
        lp = vaft_model.get_action_and_value(roll.batch, paths=roll.paths,
                                             legal=tiny_env.trie.legal(roll.legal_allowed)).log_probs
    torch.testing.assert_close(roll.behaviour, lp, rtol=0, atol=0)  # the first epoch's ratio is exactly 1


def test_sibling_grpo_with_ved_raises_the_value_of_sampled_candidates(vaft_checkpoint, valuable_env, tmp_path):  # noqa: F811
    """Known answer: one widely eligible ad is worth 100, every other 1; V-STAR's update moves the policy's own
    samples toward it."""
    from agents.hhd.model import HHD
    from agents.posttrain.train import train

    env, _ = valuable_env

    before = sampled_value(HHD.from_checkpoint(vaft_checkpoint)[0], env)
    result = train(_config(vaft_checkpoint, tmp_path, method="sibling_grpo", sampler="ved", iterations=15,
                           requests_per_iter=16, candidates=8, lr=3e-3), env, verbose=False)
    after = sampled_value(result.model, env)
    print(f"mean final_value of sampled candidates: {before:.2f} -> {after:.2f}")
    assert after > 2 * before, (before, after)
    assert result.curve[-1]["charts/distinct_candidates"] > 0.5  # the scouts may repeat; the branches never do


def test_vstar_is_deterministic_and_runs_in_market_mode(vaft_checkpoint, tiny_env, tmp_path):  # noqa: F811
    from agents.posttrain.train import train

    settings = {"method": "sibling_grpo", "sampler": "ved", "iterations": 2}
    a, b = (train(_config(vaft_checkpoint, tmp_path / name, **settings), tiny_env, verbose=False) for name in "ab")
    curve_a, curve_b = (pd.DataFrame(r.curve).drop(columns=["seconds", "charts/SPS"]) for r in (a, b))
    assert curve_a.equals(curve_b)
    market = train(_config(vaft_checkpoint, tmp_path / "m", mode="market", market_budget_scale=1e-3, **settings),
                   tiny_env, verbose=False)
    assert market.curve[-1]["market/overspend"] == 0.0


def test_bad_vstar_configs_are_rejected():
    from agents.hhd.value_guided import VEDConfig
    from agents.posttrain.train import PostTrainConfig

    with pytest.raises(ValueError, match="sampler must be"):
        PostTrainConfig(sampler="beam")
    with pytest.raises(ValueError, match="scouts must be"):
        VEDConfig(scouts=0.0)


def test_cli_takes_the_vstar_and_diffureason_options(vaft_checkpoint, tmp_path, capsys):  # noqa: F811
    import json

    from agents.posttrain.train import main

    main(["--init-from", vaft_checkpoint, "--method", "sibling_grpo", "--sampler", "ved", "--ved.scouts", "0.5",
          "--ved.value-weight", "2", "--frozen", "thinking", "refining", "--iterations", "1", "--requests-per-iter",
          "2", "--candidates", "4", "--out", str(tmp_path)])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["iteration"] == 1 and last["simulator_calls"] == 8


def test_benchmark_quick_writes_its_report(tmp_path):
    from benchmarks.vstar import METHODS, main

    per_request = main(["--quick", "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs")])
    assert set(per_request["method"]) == set(METHODS)
    text = (tmp_path / "out" / "vstar.md").read_text()
    assert "VED > sample" in text and "within-group reward variance" in text
    table = pd.read_csv(tmp_path / "out" / "vstar.csv")
    assert len(table) == len(METHODS)
