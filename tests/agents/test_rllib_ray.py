"""Everything that needs Ray, on one local instance per module: masked PPO for two iterations, the trained
module as a decoder and as MCTS-PPO's prior/value function, checkpoints, a 2-trial Tune sweep, MCTS as a Tune
trainable with RLlib's metric names, surviving a killed EnvRunner, and both benchmarks' --quick runs."""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np
import pytest
import ray
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.utils.torch_utils import FLOAT_MIN

from agents.mcts import MCTS, MCTSConfig, RequestTries, held_out_requests  # noqa: E402
from agents.rllib.config import build_algo, ppo_config  # noqa: E402
from agents.rllib.mcts_trainable import MCTSTrainable  # noqa: E402
from agents.rllib.module import AdSimTorchRLModule  # noqa: E402
from agents.rllib.policy import ModulePolicy, load_module  # noqa: E402
from envs.adsim_env import AdSimEnv  # noqa: E402


@pytest.fixture(scope="module")
def ray_tmp(tmp_path_factory):
    """One local Ray instance for the module (2 CPUs), all its files under a temp dir; no daemon survives."""
    from conftest import TruthLikeScorer, private_ray

    tmp = tmp_path_factory.mktemp("ray")
    # remote workers cannot import the tests' conftest: ship the stand-in scorer class by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[TruthLikeScorer.__module__])
    with private_ray(tmp):
        yield tmp


@pytest.fixture(scope="module")
def env_config(env_fixture):
    from conftest import TruthLikeScorer

    return {"scenario": env_fixture.path, "scorer_factory": TruthLikeScorer}


@pytest.fixture(scope="module")
def full_bundle(tmp_path_factory):
    """A tiny bundle with trained reward models: the real loader opens it in every Ray worker, no fakes."""
    from adsim import build_scenario
    from reward_models.pipeline import default_steps

    return build_scenario(tmp_path_factory.mktemp("full") / "bundle", "tiny", seed=3, progress=False,
                          steps=default_steps())


def _module(env):
    return AdSimTorchRLModule(observation_space=env.observation_space, action_space=env.action_space,
                              model_config={"embed_dim": 16, "hidden": 32})


def _batch(env, n, seed):
    obs, _ = env.reset(seed=seed)
    rows = []
    for _ in range(n):
        rows.append(obs)
        obs, _, done, _, _ = env.step(int(env.np_random.choice(np.flatnonzero(obs["action_mask"]))))
        if done:
            rows.append(obs)  # the terminal observation: all-zero mask
            obs, _ = env.reset()
    return {k: torch.as_tensor(np.stack([r[k] for r in rows])) for k in rows[0]}


def test_module_masks_illegal_codes_and_never_makes_nan(env_fixture):
    env = AdSimEnv(**env_fixture.kwargs())
    module = _module(env)
    obs = _batch(env, 12, seed=0)
    out = module.forward_train({Columns.OBS: obs})
    logits = out[Columns.ACTION_DIST_INPUTS]
    mask = obs["action_mask"] > 0
    assert logits.shape == mask.shape
    assert (logits[~mask] == FLOAT_MIN).all() and (logits[mask] > FLOAT_MIN).all()
    assert (~mask).all(dim=1).any()  # the batch holds terminal observations with no legal code
    probs = torch.softmax(logits, dim=-1)
    assert torch.isfinite(probs).all()
    assert (probs[mask.any(dim=1)][~mask[mask.any(dim=1)]] < 1e-30).all()
    values = module.compute_values({Columns.OBS: obs}, out[Columns.EMBEDDINGS])
    assert values.shape == (len(mask),) and torch.isfinite(values).all()
    torch.testing.assert_close(values, module.compute_values({Columns.OBS: obs}))
    (probs.sum() + values.sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)


def test_ppo_trains_two_iterations_and_the_module_decodes_legal_paths(ray_tmp, env_config, env_fixture):
    config = ppo_config(env_config, num_envs_per_env_runner=16, train_batch_size=256, minibatch_size=128,
                        num_epochs=1, model={"embed_dim": 16, "hidden": 32})
    algo = build_algo(config, ray_tmp / "logs")
    try:
        for _ in range(2):
            result = algo.train()
        runners = result["env_runners"]
        assert np.isfinite(runners["episode_return_mean"])
        # episode_len_max can read L + 1: RLlib 2.60 counts one step too many for an episode that straddles two
        # sample() calls (a metrics quirk; the env itself raises on a step after termination)
        assert runners["episode_len_min"] == env_fixture.context.simulator.depth
        assert runners["final_value"] > 0
        module = algo.get_module()
        checkpoint = algo.save(str(ray_tmp / "ckpt")).checkpoint.path
    finally:
        algo.stop()

    ctx = env_fixture.context
    tries = RequestTries(ctx.simulator, held_out_requests(ctx, "test", 40))
    policy = ModulePolicy(module, ctx)
    paths = policy.act(tries)
    ev = ctx.simulator.evaluate(tries.requests, paths[:, None, :], allowed=tries.allowed)
    assert ev.valid.all()
    restored = ModulePolicy(load_module(checkpoint), ctx)
    np.testing.assert_array_equal(restored.act(tries), paths)

    # MCTS-PPO: the module's policy as priors and its value head as the node evaluator
    scale = ctx.reward_scale(AdSimEnv(**env_fixture.kwargs()).options.reward_scale)
    search = MCTS(ctx.simulator, MCTSConfig(num_simulations=16), prior_value=policy, value_scale=scale)
    assert search.puct
    result = search.search(tries.requests)
    assert (result.path >= 0).all() and np.isfinite(result.value).all()


def test_a_killed_env_runner_is_restarted_and_training_goes_on(ray_tmp, env_config):
    config = ppo_config(env_config, num_env_runners=2, num_envs_per_env_runner=8, train_batch_size=256,
                        minibatch_size=128, num_epochs=1, model={"embed_dim": 16, "hidden": 32},
                        delay_between_env_runner_restarts_s=0.0)
    algo = build_algo(config, ray_tmp / "logs")
    try:
        algo.train()
        group = algo.env_runner_group
        pids = group.foreach_env_runner(lambda runner: os.getpid(), local_env_runner=False)
        assert len(pids) == 2
        os.kill(pids[0], signal.SIGKILL)
        result = algo.train()  # samples with the surviving runner while Ray restarts the other
        assert np.isfinite(result["env_runners"]["episode_return_mean"])
        deadline = time.monotonic() + 45
        while group.num_healthy_remote_env_runners() < 2 and time.monotonic() < deadline:
            time.sleep(1.0)
            result = algo.train()  # each iteration probes the failed runner and brings it back once it answers
        assert np.isfinite(result["env_runners"]["episode_return_mean"])
        assert group.num_remote_worker_restarts() >= 1
        assert group.num_healthy_remote_env_runners() == 2
    finally:
        algo.stop()


def test_two_trial_tune_sweep_on_a_bundle_with_reward_models(ray_tmp, full_bundle):
    from ray import tune

    config = ppo_config({"scenario": str(full_bundle)}, num_envs_per_env_runner=16, train_batch_size=256,
                        minibatch_size=128, num_epochs=1, model={"embed_dim": 16, "hidden": 32})
    config.training(lr=tune.grid_search([3e-4, 1e-3]))
    results = tune.Tuner(config.algo_class, param_space=config, run_config=tune.RunConfig(
        storage_path=str(ray_tmp / "tune"), stop={"training_iteration": 2}, verbose=0)).fit()
    assert config.env == "AdSim-v0"  # envs.registration.register_rllib's creator: AdSimEnv(**env_config)
    assert len(results) == 2 and not results.errors
    for result in results:
        assert result.metrics["training_iteration"] == 2
        assert np.isfinite(result.metrics["env_runners"]["episode_return_mean"])
        assert result.metrics["env_runners"]["final_value"] > 0
    best = results.get_best_result(metric="env_runners/final_value", mode="max")
    assert best.config["lr"] in (3e-4, 1e-3)


def test_mcts_runs_as_a_tune_trainable_with_rllib_metric_names(ray_tmp, env_config):
    from ray import tune

    space = {"env_config": env_config, "num_simulations": tune.grid_search([4, 64]), "requests_per_iteration": 32}
    results = tune.Tuner(MCTSTrainable, param_space=space, run_config=tune.RunConfig(
        storage_path=str(ray_tmp / "tune"), stop={"training_iteration": 2}, verbose=0)).fit()
    assert not results.errors
    by_budget = {r.config["num_simulations"]: r.metrics for r in results}
    for metrics in by_budget.values():
        for key in ("env_runners/episode_return_mean", "env_runners/final_value", "env_runners/episode_len_mean",
                    "env_runners/num_env_steps_sampled_lifetime"):
            assert np.isfinite(metrics[key])
        assert metrics["env_runners/num_env_steps_sampled_lifetime"] == 2 * 32 * 3
    # same requests (same seed) for both budgets: more simulations find better ads
    assert by_budget[64]["env_runners/final_value"] > by_budget[4]["env_runners/final_value"]


def test_env_throughput_rllib_table_quick(ray_tmp):
    """PPO iterations on AdSim-v0 and on the trivial masked env, side by side in this module's Ray (tiny preset,
    0 env runners under --quick), and the RLlib row of targets.md."""
    import pandas as pd

    from benchmarks.env_throughput import main

    out = ray_tmp / "env_throughput"
    main(["--quick", "--only", "rllib", "--out", str(out)])
    table = pd.read_csv(out / "rllib.csv").set_index("env")
    assert list(table.index) == ["AdSim-v0", "trivial masked env"]
    assert (table["s_per_iteration"] > 0).all() and table.loc["trivial masked env", "x trivial masked env"] == 1.0
    goals = pd.read_csv(out / "targets.csv", keep_default_na=False).set_index("target")
    row = goals.loc[next(t for t in goals.index if t.startswith("RLlib"))]
    assert row["measured"] == f"{table.loc['AdSim-v0', 'x trivial masked env']:.3g}x"
    assert row["verdict"] == "met" or row["verdict"].startswith("short: ")
    assert ray.is_initialized()  # the module's Ray was used, and left running


@pytest.mark.parametrize("name", ["rllib_tune", "baselines"])
def test_benchmark_quick_runs_write_csv_and_markdown(ray_tmp, env_fixture, name):
    import importlib

    out = ray_tmp / name
    main = importlib.import_module(f"benchmarks.{name}").main
    main(["--quick", "--scenario", env_fixture.path, "--scorer-factory", "conftest:TruthLikeScorer",
          "--out", str(out)])
    tables = sorted(p.name for p in out.iterdir())
    reports = ["rllib_tune", "rllib_tune_trials"] if name == "rllib_tune" else ["baselines"]
    assert tables == sorted(f"{r}{suffix}" for r in reports for suffix in (".csv", ".json", ".md"))
    import pandas as pd

    table = pd.read_csv(out / f"{name}.csv").set_index("policy")
    assert table.loc["oracle", "normalised_model"] == pytest.approx(1.0)
    assert table.loc["random legal", "normalised_model"] == pytest.approx(0.0)
    assert (table["final_value_model"] <= table.loc["oracle", "final_value_model"] + 1e-9).all()
    if name == "baselines":
        mcts = table.loc[["MCTS 16", "MCTS 64", "MCTS 256"], "normalised_model"].to_numpy()
        assert (np.diff(mcts) >= 0).all() and mcts[-1] > 0.95
