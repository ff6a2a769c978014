"""AdSim-v0 speed and memory, and what the personalised trie does to legal actions and beam search.

Measured in one run, so every ratio compares numbers taken on the same machine at the same time:
- single-env steps/s of AdSim-v0 next to CartPole-v1;
- the native vector env against gymnasium's SyncVectorEnv of the same size (N = 16, 64, 256);
- ``Simulator.evaluate`` pairs/s against the raw reward-model scorer on the same pairs;
- RSS of one env process on the scenario, and the extra (unique) memory of each additional env process;
- legal ads per request, and valid paths of a beam search with and without the trie (UniVA: 300 vs 48 at 300).

    python -m benchmarks.env_throughput                 # on the default small scenario
    python -m benchmarks.env_throughput --quick         # tiny, seconds
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from adsim.arguments import add_dataclass_arguments, dataclass_from_arguments
from agents.mcts.paths import RequestTries, random_legal_paths
from benchmarks.report import write_report

MEMORY_PROBE = """
import json, sys, psutil, numpy as np
from envs.adsim_env import AdSimEnv
env = AdSimEnv(scenario=sys.argv[1], seed=int(sys.argv[2]))
obs, _ = env.reset(seed=0)
for _ in range(300):
    obs, r, done, _, _ = env.step(int(np.flatnonzero(obs["action_mask"])[0]))
    if done:
        obs, _ = env.reset()
info = psutil.Process().memory_full_info()
print(json.dumps({"rss_mb": info.rss / 2**20, "uss_mb": info.uss / 2**20}))
"""


@dataclass
class Config:
    scenario: str = "small"
    """Bundle path or preset."""
    seed: int = 0
    seconds: float = 3.0
    """Wall time per throughput measurement."""
    vector_sizes: tuple[int, ...] = (16, 64, 256)
    beam_width: int = 300
    out: Path = Path("results/env_throughput")


def _steps_per_second(step, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        n += step()
    return n / (time.perf_counter() - start)


def single_env(cfg: Config) -> list[dict]:
    env = gym.make("AdSim-v0", scenario=cfg.scenario, seed=cfg.seed).unwrapped
    state = {"obs": env.reset(seed=0)[0]}

    def adsim_step() -> int:
        obs, _, done, _, _ = env.step(int(env.np_random.choice(np.flatnonzero(state["obs"]["action_mask"]))))
        state["obs"] = env.reset()[0] if done else obs
        return 1

    cart = gym.make("CartPole-v1")
    cart.reset(seed=0)

    def cart_step() -> int:
        _, _, done, truncated, _ = cart.step(cart.action_space.sample())
        if done or truncated:
            cart.reset()
        return 1

    adsim = _steps_per_second(adsim_step, cfg.seconds)
    cartpole = _steps_per_second(cart_step, cfg.seconds)
    return [{"env": "AdSim-v0 (random legal actions)", "steps_per_s": round(adsim)},
            {"env": "CartPole-v1 (random actions)", "steps_per_s": round(cartpole)},
            {"env": "ratio AdSim / CartPole", "steps_per_s": round(adsim / cartpole, 4)}]


def _first_legal(mask: np.ndarray) -> np.ndarray:
    return np.where(mask.any(axis=1), mask.argmax(axis=1), 0).astype(np.int64)


def vector_envs(cfg: Config) -> list[dict]:
    from envs.vector_env import AdSimVectorEnv

    rows = []
    for n in cfg.vector_sizes:
        native = AdSimVectorEnv(n, scenario=cfg.scenario, seed=cfg.seed)
        sync = gym.vector.SyncVectorEnv([lambda: gym.make("AdSim-v0", scenario=cfg.scenario, seed=cfg.seed)] * n)
        speeds = {}
        for name, vec in (("native", native), ("sync", sync)):
            state = {"obs": vec.reset(seed=0)[0]}

            def step(vec=vec, state=state, n=n) -> int:
                state["obs"] = vec.step(_first_legal(state["obs"]["action_mask"]))[0]
                return n

            speeds[name] = _steps_per_second(step, cfg.seconds)
        rows.append({"num_envs": n, "native_steps_per_s": round(speeds["native"]),
                     "sync_steps_per_s": round(speeds["sync"]), "ratio": round(speeds["native"] / speeds["sync"], 1)})
    return rows


def evaluate_speed(cfg: Config, ctx) -> list[dict]:
    sim = ctx.simulator
    rng = np.random.default_rng(0)
    rows = []
    for b, k in ((1, 40), (64, 40)):
        requests = ctx.requests.sample(b, rng)
        allowed = sim.allowed(requests)
        paths = random_legal_paths(RequestTries(sim, requests, allowed), rng, k)
        ev = sim.evaluate(requests, paths, allowed=allowed)
        ads = ev.ad_id
        reps = max(1, int(2000 / b))
        start = time.perf_counter()
        for _ in range(reps):
            sim.evaluate(requests, paths, allowed=allowed)
        t_eval = (time.perf_counter() - start) / reps
        start = time.perf_counter()
        for _ in range(reps):
            sim.scorer("model").score(requests, ads)
        t_raw = (time.perf_counter() - start) / reps
        rows.append({"requests": b, "paths_per_request": k, "evaluate_pairs_per_s": round(b * k / t_eval),
                     "scorer_pairs_per_s": round(b * k / t_raw), "ratio": round(t_eval / t_raw, 2)})
    return rows


def memory(cfg: Config) -> list[dict]:
    probes = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, cfg.scenario, str(cfg.seed)], capture_output=True,
                             text=True, check=True)
        probes.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return [{"measure": "RSS of one env process (MB)", "value": round(probes[0]["rss_mb"]), "budget": 1536},
            {"measure": "unique memory of an additional env process (MB)", "value": round(probes[1]["uss_mb"]),
             "budget": 300}]


def trie_report(cfg: Config, ctx, out: Path) -> list[dict]:
    """Legal ads per request, and valid beams with vs without the personalised trie."""
    sim = ctx.simulator
    rng = np.random.default_rng(1)
    requests = ctx.requests.sample(200, rng)
    allowed = sim.allowed(requests)
    legal_ads = allowed.sum(axis=1)
    _histogram(legal_ads, out / "legal_ads_per_request.png")

    # a level-factorised popularity model that knows nothing of the trie (as an untrained decoder would)
    imp = ctx.scenario.table("impressions")
    codes = sim.ad_codes[imp["ad_id"].to_numpy()]
    logp = [np.log(np.bincount(codes[:, d], minlength=sim.trie.width) + 1.0) for d in range(sim.depth)]
    width = min(cfg.beam_width, sim.trie.n_paths)
    sums = sim.trie.allowed_prefix_sums(allowed[:20])
    valid = {"without trie": [], "with trie": []}
    for r in range(20):
        for name in valid:
            beams, scores = np.zeros((1, 0), dtype=np.int64), np.zeros(1)
            for d in range(sim.depth):
                cand = scores[:, None] + logp[d][None, :]
                if name == "with trie":
                    mask = sim.trie.legal_mask(beams, np.repeat(sums[r : r + 1], len(beams), axis=0))
                    cand = np.where(mask, cand, -np.inf)
                flat = np.argsort(-cand, axis=None, kind="stable")[:width]
                flat = flat[np.isfinite(cand.ravel()[flat])]
                beams = np.concatenate([beams[flat // sim.trie.width], (flat % sim.trie.width)[:, None]], axis=1)
                scores = cand.ravel()[flat]
            ev = sim.evaluate({k: v[r : r + 1] for k, v in requests.items()}, beams[None], allowed=allowed[r : r + 1])
            valid[name].append(int(ev.valid.sum()))
    return [
        {"measure": "legal ads per request: p5 / median / p95",
         "value": " / ".join(str(int(np.percentile(legal_ads, q))) for q in (5, 50, 95))},
        {"measure": "legal share of the inventory (median)", "value": f"{np.median(legal_ads) / allowed.shape[1]:.1%}"},
        {"measure": f"valid paths among {width} beams, without trie (mean)",
         "value": f"{np.mean(valid['without trie']):.1f}"},
        {"measure": f"valid paths among {width} beams, with trie (mean)",
         "value": f"{np.mean(valid['with trie']):.1f}"},
    ]


def _histogram(values: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(values, bins=30, color="#4c72b0")
    ax.set_xlabel("ads a request may legally receive (targeting, liveness, budget)")
    ax.set_ylabel("requests")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_arguments(parser, Config)
    parser.add_argument("--quick", action="store_true", help="tiny scenario, short measurements")
    args = parser.parse_args(argv)
    quick = Config(scenario="tiny", seconds=0.3, vector_sizes=(16,), beam_width=50)
    cfg = dataclass_from_arguments(Config, args, quick if args.quick else None)

    import envs  # noqa: F401  (registers AdSim-v0)
    from envs.context import open_context

    ctx = open_context(cfg.scenario, cfg.seed)
    results = {
        "single_env": single_env(cfg),
        "vector_env": vector_envs(cfg),
        "evaluate": evaluate_speed(cfg, ctx),
        "memory": memory(cfg),
        "trie": trie_report(cfg, ctx, cfg.out),
    }
    titles = {"single_env": "Single env steps/s", "vector_env": "Native vector env vs SyncVectorEnv",
              "evaluate": "Simulator.evaluate vs the raw reward-model scorer (same pairs)",
              "memory": "Memory per env process", "trie": "Personalised trie: legal ads and beam validity"}
    for name, rows in results.items():
        write_report(cfg.out, name, rows, title=f"{titles[name]} ({cfg.scenario})")
    return results


if __name__ == "__main__":
    main()
