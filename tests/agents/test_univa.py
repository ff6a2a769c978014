"""UniVA: Generation-as-Ranking fuses the value head into the policy, its advantages on hand numbers, its
beam u MCTS-PPO candidates (legal, seeded, no simulator call in the search), the alternating SL batch, and a
known-answer learning test on the tiny world."""

from __future__ import annotations

import copy
import dataclasses

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

from agents.posttrain.objectives import univa_advantages


def test_univa_advantages_by_hand():
    # values v_1..v_3 after each code; gamma 1, lam 0.5; z-scored reward 1 at the end
    v = np.array([[0.2, 0.5, 0.4]])
    out = univa_advantages(np.array([1.0]), v, gamma=1.0, lam=0.5)
    delta = np.array([0.5 - 0.2, 0.4 - 0.5, 1.0 - 0.4])  # (0.3, -0.1, 0.6)
    a3 = delta[2]
    a2 = delta[1] + 0.5 * a3
    a1 = delta[0] + 0.5 * a2
    np.testing.assert_allclose(out.advantages, [[a1, a2, a3]])
    np.testing.assert_allclose(out.returns, [[a1 + 0.2, a2 + 0.5, a3 + 0.4]])
    # lam = 1: every level's target is the reward itself (Monte Carlo); no value head: A_l = (gamma lam)^(L-l) R
    np.testing.assert_allclose(univa_advantages(np.array([1.0]), v, 1.0, 1.0).returns, [[1.0, 1.0, 1.0]])
    np.testing.assert_allclose(univa_advantages(np.array([2.0]), np.zeros((1, 3)), 1.0, 0.5).advantages,
                               [[0.5, 1.0, 2.0]])


def test_gar_adds_the_value_heads_child_values_to_every_levels_logits(vaft_model, tiny_env):  # noqa: F811
    requests, allowed = _requests(tiny_env, 6, 1)
    batch, legal = tiny_env.batch(requests), tiny_env.trie.legal(allowed)
    fused = copy.deepcopy(vaft_model)
    fused.config = dataclasses.replace(fused.config, gar=True)
    with torch.no_grad():
        memory = vaft_model.encode(batch).memory
        prefix = torch.zeros(len(allowed), 0, dtype=torch.long)
        mask = vaft_model.legal_codes(prefix, legal)
        plain = vaft_model.head_log_probs(memory, prefix, mask)
        gar = fused.head_log_probs(memory, prefix, mask)
        value = vaft_model.value.child_values(memory, prefix)
    expected = torch.log_softmax((plain + value[:, None, :]).masked_fill(~mask[:, None], -1e30), dim=-1)
    torch.testing.assert_close(gar.masked_fill(~mask[:, None], 0), expected.masked_fill(~mask[:, None], 0))
    assert not torch.allclose(gar, plain)
    with pytest.raises(ValueError, match="needs hte"):
        from agents.hhd.model import HHDConfig

        HHDConfig(hte=False, gar=True)


def test_univa_candidates_are_legal_seeded_and_cost_no_simulator_call(vaft_model, tiny_env, monkeypatch):  # noqa: F811
    from agents.hhd.decoding import BeamConfig, beam_search, valid_paths
    from agents.posttrain.univa import UniVASampling, univa_candidates

    requests, allowed = _requests(tiny_env, 12, 2)
    sim, k = tiny_env.ctx.simulator, 8
    calls = []
    monkeypatch.setattr(sim, "evaluate", lambda *a, **kw: calls.append(1))  # the search must not score anything
    generator = torch.Generator().manual_seed(0)
    rep = np.repeat(allowed, k, axis=0)
    samples = vaft_model.get_action_and_value(tiny_env.batch(requests, k), legal=tiny_env.trie.legal(rep),
                                              generator=generator).paths.view(len(allowed), k, -1)

    def run(sampling: UniVASampling, seed: int = 0) -> np.ndarray:
        return univa_candidates(vaft_model, tiny_env.batch, tiny_env.trie.legal(allowed), sim, requests, allowed, k,
                                samples, sampling, seed)

    paths = run(UniVASampling(beam_share=0.25, simulations=16))
    assert calls == []
    assert paths.shape == (len(allowed), k, 3)
    assert valid_paths(sim.trie, paths, allowed).all()
    np.testing.assert_array_equal(paths[:, 0], samples[:, 0].numpy())  # candidate 0 is a policy sample
    beam = beam_search(vaft_model, tiny_env.batch(requests), tiny_env.trie.legal(allowed), BeamConfig(beam=2)).paths
    codes = sim.ad_codes
    for b in range(len(paths)):
        have = {tuple(p) for p in paths[b]}
        assert {tuple(p) for p in beam[b] if p[0] >= 0} <= have  # the beam's paths are all in
        legal = len(np.unique(codes[allowed[b]], axis=0))
        assert len(have) == min(legal, k)  # no repeats while distinct legal paths are left
    np.testing.assert_array_equal(paths, run(UniVASampling(beam_share=0.25, simulations=16)))
    no_search = run(UniVASampling(beam_share=0.25, simulations=0))
    assert not np.array_equal(no_search, paths)  # the search's paths replace samples


def test_univa_trains_value_head_and_alternates_sl_batches(vaft_checkpoint, tiny_env, tmp_path):  # noqa: F811
    from agents.hhd.model import HHD
    from agents.posttrain.train import train

    before = HHD.from_checkpoint(vaft_checkpoint)[0]
    result = train(_config(vaft_checkpoint, tmp_path, method="univa", sampler="univa", iterations=2,
                           mcts_simulations=8, sl_batch=16, lr=1e-3), tiny_env, verbose=False)
    last = result.curve[-1]
    assert np.isfinite(last["losses/sl_loss"]) and np.isfinite(last["losses/value_loss"])
    assert last["simulator_calls"] == 2 * 4 * 4  # the search spent nothing: K scored paths per request
    assert result.model.config.gar
    for part in ("trunk", "out", "prefix"):  # the critic of v_l (the root value is not one of UniVA's v_l)
        old, new = (dict(m.value.named_parameters()) for m in (before, result.model))
        assert all(not torch.equal(old[n], new[n]) for n in old if n.startswith(part)), part
    reloaded = HHD.from_checkpoint(str(result.checkpoint))[0]
    assert reloaded.config.gar  # the checkpoint serves the fused policy
    # the ablations: no value head (no value loss, policy = generation head), no SL batches
    plain = train(_config(vaft_checkpoint, tmp_path / "plain", method="univa", sampler="univa", iterations=1,
                          mcts_simulations=8, gar=False, sl_batch=0), tiny_env, verbose=False)
    assert not plain.model.config.gar and np.isnan(plain.curve[-1]["losses/value_loss"])
    assert "losses/sl_loss" not in plain.curve[-1]


def test_univa_is_deterministic(vaft_checkpoint, tiny_env, tmp_path):  # noqa: F811
    from agents.posttrain.train import train

    settings = {"method": "univa", "sampler": "univa", "iterations": 2, "mcts_simulations": 8, "sl_batch": 8}
    a, b = (train(_config(vaft_checkpoint, tmp_path / name, **settings), tiny_env, verbose=False) for name in "ab")
    curve_a, curve_b = (pd.DataFrame(r.curve).drop(columns=["seconds", "charts/SPS"]) for r in (a, b))
    assert curve_a.equals(curve_b)


def test_univa_raises_the_value_of_sampled_candidates(vaft_checkpoint, valuable_env, tmp_path):  # noqa: F811
    """Known answer: one widely eligible ad is worth 100, every other 1; UniVA's updates move the policy's own
    samples toward it."""
    from agents.hhd.model import HHD
    from agents.posttrain.train import train

    env, _ = valuable_env

    before = sampled_value(HHD.from_checkpoint(vaft_checkpoint)[0], env)
    result = train(_config(vaft_checkpoint, tmp_path, method="univa", sampler="univa", iterations=15,
                           requests_per_iter=16, candidates=8, lr=3e-3, mcts_simulations=16, sl_batch=16),
                   env, verbose=False)
    after = sampled_value(result.model, env)
    print(f"mean final_value of sampled candidates: {before:.2f} -> {after:.2f}")
    assert after > 2 * before, (before, after)


def test_bad_univa_configs_are_rejected():
    from agents.posttrain.train import PostTrainConfig

    with pytest.raises(ValueError, match="beam_share"):
        PostTrainConfig(beam_share=0.0)
    with pytest.raises(ValueError, match="mcts_simulations"):
        PostTrainConfig(mcts_simulations=-1)
    with pytest.raises(ValueError, match="sl_batch"):
        PostTrainConfig(sl_batch=-2)
