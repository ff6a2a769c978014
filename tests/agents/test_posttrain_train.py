"""Post-training end to end on a tiny world: HEPO finds the one valuable ad; runs are deterministic and resumable."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch


class OneValuableAd:
    """A scorer under which exactly one (widely eligible) ad is worth anything: a known-answer reward."""

    def __init__(self, ad: int):
        self.ad = ad

    def score(self, requests, ad_ids):
        from reward_models.value import Scores

        value = np.where(ad_ids == self.ad, 100.0, 1.0)
        ones = np.full(ad_ids.shape, 0.05)
        return Scores(ones, ones, value, value)


@pytest.fixture(scope="module")
def vaft_checkpoint(tmp_path_factory):
    from agents.hhd.model import HHDConfig
    from agents.hhd.train import TrainConfig, train

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("hhd")
    base = train(TrainConfig(data="tiny", model=HHDConfig(n_embd=16), steps=20, batch_size=32, out=str(out / "mtp"),
                             threads=1, log_every=10**9), verbose=False)
    vaft = train(TrainConfig(data="tiny", stage="vaft", init_from=str(base.checkpoint), steps=10, batch_size=32,
                             out=str(out / "vaft"), threads=1, log_every=10**9), verbose=False)
    return str(vaft.checkpoint)


@pytest.fixture(scope="module")
def valuable_env():
    from agents.hhd.sequences import SequenceConfig
    from agents.posttrain.train import PolicyEnv

    scorer = OneValuableAd(-1)
    env = PolicyEnv.open("tiny", 0, "train", (0.2, 0.1), SequenceConfig(), scorer=scorer)
    requests = env.ctx.requests.sample(500, np.random.default_rng(0))
    scorer.ad = int(env.ctx.simulator.allowed(requests).sum(axis=0).argmax())  # the most widely eligible ad
    return env, scorer.ad


def _config(checkpoint, tmp_path, **overrides):
    from agents.posttrain.train import PostTrainConfig

    settings = {"iterations": 3, "requests_per_iter": 4, "candidates": 4, **overrides}
    return PostTrainConfig(init_from=checkpoint, scenario="tiny", out=str(tmp_path), **settings)


def test_hepo_finds_the_single_high_value_path(vaft_checkpoint, valuable_env, tmp_path):
    from agents.posttrain.train import collect, train

    env, ad = valuable_env
    target = env.ctx.simulator.ad_codes[ad]

    def hit_rate(model) -> float:
        requests = env.ctx.requests.sample(64, np.random.default_rng(123))
        roll = collect(model, env, requests, 8, 1.0, torch.Generator().manual_seed(0), False)
        return float((roll.paths.numpy() == target).all(axis=1).mean())

    from agents.hhd.model import HHD

    before = hit_rate(HHD.from_checkpoint(vaft_checkpoint)[0])
    result = train(_config(vaft_checkpoint, tmp_path, method="hepo", iterations=40, requests_per_iter=16,
                           candidates=8, lr=3e-3), env, verbose=False)
    after = hit_rate(result.model)
    assert before < 0.1 and after > 0.5, (before, after)


def test_same_seed_same_curve_and_resume_is_exact(vaft_checkpoint, valuable_env, tmp_path):
    from agents.posttrain.train import train

    env, _ = valuable_env
    for method in ("hepo", "dpo"):
        a = train(_config(vaft_checkpoint, tmp_path / f"{method}-a", method=method), env, verbose=False)
        b = train(_config(vaft_checkpoint, tmp_path / f"{method}-b", method=method), env, verbose=False)
        curve_a, curve_b = (pd.DataFrame(r.curve).drop(columns="seconds") for r in (a, b))
        assert curve_a.equals(curve_b)  # NaN losses (no DPO pairs) compare equal here
        # interrupted after 2 iterations, resumed to 3: identical weights to the uninterrupted run
        half = _config(vaft_checkpoint, tmp_path / f"{method}-c", method=method, iterations=2)
        train(half, env, verbose=False)
        resumed = train(replace(half, iterations=3, resume=True), env, verbose=False)
        for (name, p), q in zip(a.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
            assert torch.equal(p, q), name


def test_bad_configs_are_rejected(vaft_checkpoint, tmp_path):
    from agents.posttrain.train import PostTrainConfig, train

    with pytest.raises(ValueError, match="method must be"):
        PostTrainConfig(method="ppo")
    with pytest.raises(ValueError, match="candidates"):
        PostTrainConfig(candidates=1)
    with pytest.raises(ValueError, match="init_from"):
        train(PostTrainConfig(out=str(tmp_path)), verbose=False)


def test_benchmark_smoke_writes_table_plot_and_verdicts(tmp_path):
    from benchmarks.dpo_vs_hepo import main

    runs = main(["--preset", "smoke", "--seeds", "0", "1", "--out", str(tmp_path / "out"),
                 "--runs", str(tmp_path / "runs")])
    assert set(runs["model"]) >= {"MTP (base)", "+VAFT", "+DPO", "+HEPO", "+GRPO"}
    text = (tmp_path / "out" / "dpo_vs_hepo.md").read_text()
    assert "HEPO > DPO > VAFT > MTP" in text and "+HEPO > +DPO on truth/avg_final_value" in text
    assert (tmp_path / "out" / "learning_curves.png").stat().st_size > 1000
    calls = runs.groupby("model")["simulator_calls"].first()
    assert calls["+DPO"] == calls["+HEPO"] > 0, "every method spends the same simulator budget"


def test_cli_runs_a_short_job(vaft_checkpoint, tmp_path, capsys):
    import json

    from agents.posttrain.train import main

    main(["--init-from", vaft_checkpoint, "--method", "grpo", "--iterations", "1", "--requests-per-iter", "2",
          "--candidates", "2", "--level-coef", "1", "0.5", "0.5", "--out", str(tmp_path)])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["iteration"] == 1 and last["simulator_calls"] == 4
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "curve.csv").is_file()
