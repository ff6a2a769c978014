"""AdSim-v0 speed and memory, and what the personalised trie does to legal actions and beam search.

Every speed is measured against a reference taken in the same process at the same time: the sides of a
comparison run interleaved, a short slice each, over several rounds (the order rotating), and each figure is the
median over rounds of the per-round ratio, so a load swing on a shared machine hits both sides alike:
- single env steps/s of AdSim-v0 (compiled and reference backends, via ``gym.make``) next to CartPole-v1;
- the native vector env against gymnasium's ``SyncVectorEnv`` of as many fast (compiled) single envs;
- ``Simulator.evaluate`` (both backends) against the raw reward-model scorer on the same pairs;
- RSS of one env process on the scenario, and the extra (unique) memory of each additional env process;
- legal ads per request, and valid paths of a beam search with and without the trie (UniVA: 300 vs 48 at 300).

Actions are random legal ones, picked by indexing a pre-drawn random number into the legal set (CartPole's by
the same kind of draw), so the policy costs well under a microsecond on every side.

    python -m benchmarks.env_throughput                 # on the default small scenario (~4 min)
    python -m benchmarks.env_throughput --quick         # tiny, seconds
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
from numba import njit

from benchmarks.report import write_report

MEMORY_PROBE = """
import json, sys, psutil, numpy as np
from envs.adsim_env import AdSimEnv
env = AdSimEnv(scenario=sys.argv[1], world_seed=int(sys.argv[2]))
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
    seed: int = 0
    rounds: int = 7
    """Interleaved rounds per comparison; figures are medians over rounds."""
    seconds: float = 0.5
    """Wall time of one side in one round."""
    vector_sizes: tuple[int, ...] = (64,)
    beam_width: int = 300
    out: Path = Path("results/env_throughput")


# ---------------------------------------------------------------------------------------------- timing
def interleaved(sides: dict[str, Callable[[], int]], cfg: Config) -> dict[str, list[float]]:
    """Steps/s of each side in each round; ``step()`` returns the env steps it made. Sides alternate within a
    round and the order rotates between rounds."""
    names = list(sides)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm up (first calls, caches)
        _rate(sides[name], min(cfg.seconds, 0.2))
    for r in range(cfg.rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            rates[name].append(_rate(sides[name], cfg.seconds))
    return rates


def _rate(step: Callable[[], int], seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        n += step()
    return n / (time.perf_counter() - start)


def _ratio(rates: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of a's rate over b's in the same round."""
    return float(np.median(np.asarray(rates[a]) / np.asarray(rates[b])))


class Uniforms:
    """Pre-drawn uniforms in [0, 1), so picking an action costs an index, not an RNG call."""

    def __init__(self, seed: int, n: int = 1 << 16):
        self.values, self.i = np.random.default_rng(seed).random(n), 0

    def next(self) -> float:
        self.i = (self.i + 1) & (len(self.values) - 1)
        return self.values[self.i]

    def rows(self, n: int) -> np.ndarray:
        self.i = (self.i + n) & (len(self.values) - 1)
        return np.take(self.values, np.arange(self.i, self.i + n), mode="wrap")


@njit(cache=True)
def random_legal(mask: np.ndarray, u: np.ndarray) -> np.ndarray:
    """(N,) actions: in each row of an (N, W) mask the legal code at index floor(u * n_legal); 0 if none.

    Compiled, so the policy costs the vector envs about a microsecond a step, not the environment's share."""
    out = np.zeros(mask.shape[0], np.int64)
    for b in range(mask.shape[0]):
        n = 0
        for c in range(mask.shape[1]):
            n += mask[b, c] != 0
        pick = min(int(u[b] * n), n - 1)
        for c in range(mask.shape[1]):
            if mask[b, c] != 0:
                if pick == 0:
                    out[b] = c
                    break
                pick -= 1
    return out


# ---------------------------------------------------------------------------------------------- single env
def _single_stepper(env: gym.Env, uniforms: Uniforms) -> Callable[[], int]:
    state = {"obs": env.reset(seed=0)[0]}

    def step() -> int:
        legal = np.flatnonzero(state["obs"]["action_mask"])
        obs, _, done, _, _ = env.step(int(legal[int(uniforms.next() * len(legal))]))
        state["obs"] = env.reset()[0] if done else obs
        return 1

    return step


def single_env(cfg: Config) -> list[dict]:
    cart = gym.make("CartPole-v1")
    cart.reset(seed=0)
    uniforms = Uniforms(cfg.seed)

    def cart_step() -> int:
        _, _, done, truncated, _ = cart.step(int(uniforms.next() < 0.5))
        if done or truncated:
            cart.reset()
        return 1

    sides = {"CartPole-v1": cart_step}
    for backend in ("compiled", "reference"):
        env = gym.make("AdSim-v0", scenario=cfg.scenario, world_seed=cfg.seed, backend=backend)
        sides[f"AdSim-v0 {backend}"] = _single_stepper(env, Uniforms(cfg.seed))
    rates = interleaved(sides, cfg)
    return [{"env": name, "steps_per_s": round(float(np.median(r))),
             "x CartPole-v1": round(_ratio(rates, name, "CartPole-v1"), 4),
             "x AdSim-v0 reference": round(_ratio(rates, name, "AdSim-v0 reference"), 2)} for name, r in rates.items()]


# ---------------------------------------------------------------------------------------------- vector env
def _vector_stepper(vec, n: int, uniforms: Uniforms) -> Callable[[], int]:
    state = {"obs": vec.reset(seed=0)[0]}

    def step() -> int:
        state["obs"] = vec.step(random_legal(state["obs"]["action_mask"], uniforms.rows(n)))[0]
        return n

    return step


def vector_envs(cfg: Config) -> list[dict]:
    from envs.vector_env import AdSimVectorEnv

    rows = []
    kwargs = {"scenario": cfg.scenario, "world_seed": cfg.seed}
    for n in cfg.vector_sizes:
        sides = {
            "native compiled": AdSimVectorEnv(n, backend="compiled", **kwargs),
            "native reference": AdSimVectorEnv(n, backend="reference", **kwargs),
            "SyncVectorEnv of compiled single envs": gym.vector.SyncVectorEnv(
                [lambda: gym.make("AdSim-v0", backend="compiled", **kwargs)] * n),
        }
        rates = interleaved({name: _vector_stepper(vec, n, Uniforms(cfg.seed)) for name, vec in sides.items()}, cfg)
        for name, r in rates.items():
            rows.append({"num_envs": n, "vector env": name, "steps_per_s": round(float(np.median(r))),
                         "x SyncVectorEnv": round(_ratio(rates, name, "SyncVectorEnv of compiled single envs"), 2),
                         "x native reference": round(_ratio(rates, name, "native reference"), 2)})
    return rows


# ---------------------------------------------------------------------------------------------- evaluate
def _random_legal_paths(sim, allowed: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    sums = sim.trie.allowed_prefix_sums(allowed)
    b = len(allowed)
    paths = np.zeros((b, k, sim.depth), dtype=np.int64)
    for d in range(sim.depth):
        mask = sim.trie.legal_mask(paths[:, :, :d].reshape(b * k, d), np.repeat(sums, k, axis=0))
        scores = np.where(mask, rng.random(mask.shape), -1.0)
        paths[:, :, d] = scores.argmax(axis=1).reshape(b, k)
    return paths


def _evaluate_sides(sim, requests, paths: np.ndarray) -> dict[str, Callable[[], int]]:
    ads, pairs = sim.evaluate(requests, paths).ad_id, paths.shape[0] * paths.shape[1]
    scorer = sim.scorer("model")

    def compiled() -> int:
        sim.evaluate(requests, paths, backend="compiled")
        return pairs

    def reference() -> int:
        sim.evaluate(requests, paths)
        return pairs

    def scorer_alone() -> int:
        scorer.score(requests, ads)
        return pairs

    return {"evaluate compiled": compiled, "evaluate reference": reference, "scorer alone": scorer_alone}


def evaluate_speed(cfg: Config, ctx) -> list[dict]:
    """Pairs/s of ``Simulator.evaluate`` (eligibility computed inside, as the env's last step) against the raw
    reward-model scorer on the resolved pairs."""
    sim = ctx.simulator
    rng = np.random.default_rng(0)
    rows = []
    for b, k in ((1, 1), (1, 40), (64, 40)):
        requests = ctx.requests.sample(b, rng)
        paths = _random_legal_paths(sim, sim.allowed(requests), k, rng)
        rates = interleaved(_evaluate_sides(sim, requests, paths), cfg)
        for name, r in rates.items():
            rows.append({"requests": b, "paths_per_request": k, "call": name,
                         "pairs_per_s": round(float(np.median(r))),
                         "x scorer alone": round(_ratio(rates, name, "scorer alone"), 3),
                         "x evaluate reference": round(_ratio(rates, name, "evaluate reference"), 2)})
    return rows


# ---------------------------------------------------------------------------------------------- memory, trie
def memory(cfg: Config) -> list[dict]:
    probes = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, cfg.scenario, str(cfg.seed)], capture_output=True,
                             text=True, check=True)
        probes.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return [{"measure": "RSS of one env process (MB)", "value": round(probes[0]["rss_mb"]), "budget": 500},
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


NOTES = {
    "single_env": "Targets: AdSim-v0 compiled >= 0.2x CartPole-v1. Medians over interleaved rounds; each ratio is "
                  "the median of the per-round ratios.",
    "vector_env": "Target: native vector env at N=64 >= 10x a SyncVectorEnv of 64 compiled single envs (next-step "
                  "autoreset on both; a step counts num_envs env steps).",
    "evaluate": "Pairs/s; the scorer alone scores the resolved pairs without resolving paths.",
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default=Config.scenario, help="bundle path or preset (default: small)")
    parser.add_argument("--seed", type=int, default=Config.seed)
    parser.add_argument("--rounds", type=int, default=Config.rounds)
    parser.add_argument("--seconds", type=float, default=Config.seconds, help="one side's slice of a round")
    parser.add_argument("--out", type=Path, default=Config.out)
    parser.add_argument("--only", nargs="+", choices=["single_env", "vector_env", "evaluate", "memory", "trie"],
                        help="run only these tables")
    parser.add_argument("--quick", action="store_true", help="tiny scenario, short measurements")
    args = parser.parse_args(argv)
    cfg = Config(scenario=args.scenario, seed=args.seed, rounds=args.rounds, seconds=args.seconds, out=args.out)
    if args.quick:
        cfg = Config(scenario="tiny" if args.scenario == Config.scenario else args.scenario, seed=args.seed,
                     out=args.out, rounds=2, seconds=0.05, vector_sizes=(8,), beam_width=50)

    import envs  # noqa: F401  (registers AdSim-v0)
    from envs.context import open_context

    ctx = open_context(cfg.scenario, cfg.seed)
    tables = {
        "single_env": lambda: single_env(cfg),
        "vector_env": lambda: vector_envs(cfg),
        "evaluate": lambda: evaluate_speed(cfg, ctx),
        "memory": lambda: memory(cfg),
        "trie": lambda: trie_report(cfg, ctx, cfg.out),
    }
    titles = {"single_env": "Single env steps/s", "vector_env": "Native vector env vs SyncVectorEnv",
              "evaluate": "Simulator.evaluate vs the raw reward-model scorer (same pairs)",
              "memory": "Memory per env process", "trie": "Personalised trie: legal ads and beam validity"}
    results = {}
    for name, run in tables.items():
        if args.only and name not in args.only:
            continue
        results[name] = run()
        write_report(cfg.out, name, results[name], title=f"{titles[name]} ({cfg.scenario})",
                     notes=NOTES.get(name, ""))
    return results


if __name__ == "__main__":
    main()
