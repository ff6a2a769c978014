"""AdSim-v0 speed and memory, and what the personalised trie does to legal actions and beam search.

Every speed is measured against a reference taken in the same process at the same time: the sides of a
comparison run interleaved, a short slice each, over several rounds (the order rotating), and each figure is the
median over rounds of the per-round ratio, so a load swing on a shared machine hits both sides alike:
- single env steps/s of AdSim-v0 (compiled and reference backends, via ``gym.make``) next to CartPole-v1;
- the native vector env against gymnasium's ``SyncVectorEnv`` of as many fast (compiled) single envs;
- ``Simulator.evaluate`` (both backends) against the raw reward-model scorer on the same pairs;
- RSS of one env process on the scenario, and the extra (unique) memory of each additional env process;
- legal ads per request, and valid paths of a beam search with and without the trie (UniVA: 300 vs 48 at 300);
- seconds per RLlib PPO iteration (the project's masked module, 2 env runners, train batch 2,000) on AdSim-v0 and
  on ``benchmarks.trivial_env``, a masked env of the same spaces that does next to nothing per step (``rllib``).

``targets.md`` states each target of the fast-simulator issue, the measured ratio and "met", or the shortfall with
its cause: where the time goes, from a cProfile of the same env taken in the same run (cProfile inflates the share of
Python calls against compiled kernels; the shares are of the profiled time).

Actions are random legal ones, picked by indexing a pre-drawn random number into the legal set (CartPole's by
the same kind of draw), so the policy costs well under a microsecond on every side.

    python -m benchmarks.env_throughput                 # on the default small scenario (~3 min)
    python -m benchmarks.env_throughput --quick         # tiny, seconds (no rllib table unless --only names it)
    python -m benchmarks.env_throughput --only rllib    # one table (targets.md then marks the others unmeasured)
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
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
    profile_steps: int = 20_000
    """Single-env steps (and a 64th of that in vector steps) under cProfile for the causes in targets.md."""
    rllib_env_runners: int = 2
    rllib_batch: int = 2_000
    """PPO train batch (env steps per iteration)."""
    rllib_rounds: int = 7
    """Interleaved PPO iterations per env (after one warm-up iteration each)."""
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


def profile_shares(run: Callable[[], object], groups: dict[str, tuple[str, ...]]) -> dict[str, float]:
    """Share of ``run()``'s profiled time spent inside each group of functions (cumulative time; names are
    ``module_file_stem.function``, e.g. ``kernels.step_rows``). A group's functions must not call each other."""
    profile = cProfile.Profile()
    profile.enable()
    run()
    profile.disable()
    stats = pstats.Stats(profile).stats  # {(file, line, function): (calls, primitive calls, tottime, cumtime, _)}
    total = sum(entry[2] for entry in stats.values())
    cumulative: dict[str, float] = {}
    for (file, _, function), entry in stats.items():
        name = f"{Path(file).stem}.{function}"
        cumulative[name] = cumulative.get(name, 0.0) + entry[3]
    return {label: sum(cumulative.get(n, 0.0) for n in names) / total for label, names in groups.items()}


SINGLE_PROFILE = {
    "terminal scoring (Simulator.evaluate_pairs)": ("simulator.evaluate_pairs",),
    "  of which the fused feature + forest kernel": ("compiled._score",),
    "reset (request draw, start kernel, first observation)": ("adsim_env.reset",),
    "  of which the request draw": ("requests.sample_rows",),
    "step kernel": ("kernels.step_rows",),
    "observation copies": ("episodes.observation_one",),
}
VECTOR_PROFILE = {
    "terminal scoring (Simulator.evaluate_pairs)": ("simulator.evaluate_pairs",),
    "  of which the fused feature + forest kernel": ("compiled._score",),
    "autoreset start kernel": ("kernels.start_rows",),
    "request draw": ("requests.sample_rows",),
    "step kernel": ("kernels.step_rows",),
}


def _shares_text(shares: dict[str, float]) -> str:
    return "; ".join(f"{label.strip()} {share:.0%}" for label, share in shares.items())


# ---------------------------------------------------------------------------------------------- single env
def _single_stepper(env: gym.Env, uniforms: Uniforms) -> Callable[[], int]:
    state = {"obs": env.reset(seed=0)[0]}

    def step() -> int:
        legal = np.flatnonzero(state["obs"]["action_mask"])
        obs, _, done, _, _ = env.step(int(legal[int(uniforms.next() * len(legal))]))
        state["obs"] = env.reset()[0] if done else obs
        return 1

    return step


def single_env(cfg: Config, found: dict) -> list[dict]:
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
    compiled = sides["AdSim-v0 compiled"]
    found["single_env"] = {
        "us_per_step": {name: 1e6 / float(np.median(r)) for name, r in rates.items()}, "steps": cfg.profile_steps,
        "profile": profile_shares(lambda: [compiled() for _ in range(cfg.profile_steps)], SINGLE_PROFILE)}
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


def vector_envs(cfg: Config, found: dict) -> list[dict]:
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
        steppers = {name: _vector_stepper(vec, n, Uniforms(cfg.seed)) for name, vec in sides.items()}
        rates = interleaved(steppers, cfg)
        native, calls = steppers["native compiled"], max(cfg.profile_steps // n, 8)
        found.setdefault("vector_env", {})[n] = {
            "us_per_env_step": {name: 1e6 / float(np.median(r)) for name, r in rates.items()}, "steps": calls * n,
            "profile": profile_shares(lambda step=native, k=calls: [step() for _ in range(k)], VECTOR_PROFILE)}
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


# ---------------------------------------------------------------------------------------------- RLlib
RLLIB_SIDES = ("AdSim-v0", "trivial masked env")


def rllib_iterations(cfg: Config, found: dict) -> list[dict]:
    """Seconds per PPO iteration, the same config (``agents.rllib.ppo_config``: the masked module,
    ``cfg.rllib_env_runners`` env runners, train batch ``cfg.rllib_batch``) on AdSim-v0 and on ``TrivialMaskedEnv``
    of the same spaces. Both Algorithms live side by side (half a CPU per env runner, so both fit in
    ``ray.init(num_cpus=2)``) and train in alternating order, one iteration each per round, after one warm-up
    iteration each; the ratio is the median of the per-round ratios."""
    import tempfile

    import ray

    from agents.rllib.config import build_algo, ppo_config
    from agents.rllib.session import ray_session
    from benchmarks import trivial_env
    from envs.adsim_env import AdSimEnv

    path = Path(cfg.scenario).expanduser()
    env_config = {"scenario": str(path.resolve()) if path.exists() else cfg.scenario, "world_seed": cfg.seed}
    probe = AdSimEnv(**env_config)
    trivial_config = {"observation_space": probe.observation_space, "action_space": probe.action_space,
                      "depth": probe.depth, "seed": cfg.seed}
    # Ray workers need not import benchmarks (an installed torchrl ships a top-level package of that name)
    ray.cloudpickle.register_pickle_by_value(trivial_env)

    def config_of(side: str):
        config = ppo_config(env_config, seed=cfg.seed, num_env_runners=cfg.rllib_env_runners,
                            train_batch_size=cfg.rllib_batch)
        config.env_runners(num_cpus_per_env_runner=0.5)
        if side != "AdSim-v0":
            config.environment(trivial_env.TrivialMaskedEnv, env_config=trivial_config)
        return config

    seconds: dict[str, list[float]] = {side: [] for side in RLLIB_SIDES}
    last: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="adsim-rllib-", ignore_cleanup_errors=True) as tmp, \
            ray_session(num_cpus=2, temp_dir=Path(tmp) / "ray"):
        algos = {}
        try:
            for side in RLLIB_SIDES:
                algos[side] = build_algo(config_of(side), Path(tmp) / "logs")
            for algo in algos.values():
                algo.train()  # warm-up: first sample, torch's first backward
            for r in range(cfg.rllib_rounds):
                for side in RLLIB_SIDES[:: 1 if r % 2 == 0 else -1]:
                    start = time.perf_counter()
                    last[side] = algos[side].train()
                    seconds[side].append(time.perf_counter() - start)
        finally:
            for algo in algos.values():
                algo.stop()
    ratio = float(np.median(np.asarray(seconds["AdSim-v0"]) / np.asarray(seconds["trivial masked env"])))
    rows = []
    for side in RLLIB_SIDES:
        timers = last[side].get("timers", {})
        rows.append({"env": side, "env_runners": cfg.rllib_env_runners, "train_batch": cfg.rllib_batch,
                     "iterations": len(seconds[side]), "s_per_iteration": round(float(np.median(seconds[side])), 3),
                     "x trivial masked env": round(ratio if side == "AdSim-v0" else 1.0, 3),
                     "sampling_s (RLlib timer)": round(float(timers.get("env_runner_sampling_timer", np.nan)), 3),
                     "learner_update_s (RLlib timer)": round(float(timers.get("learner_update_timer", np.nan)), 3)})
    found["rllib"] = {"ratio": ratio, "rows": rows}
    return rows


# ---------------------------------------------------------------------------------------------- targets
def _shortfall(value: float, bound: float, at_least: bool) -> str:
    """"short: ..." for a missed target (``value >= bound`` if ``at_least``, else ``value <= bound``)."""
    if at_least:
        return f"short: {value:.3g} is {value / bound:.0%} of {bound:g}"
    return f"short: {value:.3g} is {value / bound - 1:.0%} over {bound:g}"


def targets(cfg: Config, results: dict, found: dict) -> list[dict]:
    """One row per target of the fast-simulator issue: what it asks, what this run measured, met or why not."""
    rows = []

    def add(target: str, required: str, measured: float | None, at_least: bool, unit: str = "x",
            cause: str = "") -> None:
        """A row; ``required`` is ">= B" or "<= B" (B in ``unit``)."""
        bound = float(required.split()[1])
        if measured is None:
            rows.append({"target": target, "required": f"{required}{unit}", "measured": "not measured in this run",
                         "verdict": "", "cause": ""})
            return
        met = measured >= bound if at_least else measured <= bound
        rows.append({"target": target, "required": f"{required}{unit}", "measured": f"{measured:.3g}{unit}",
                     "verdict": "met" if met else _shortfall(measured, bound, at_least), "cause": "" if met else cause})

    single = {r["env"]: r for r in results.get("single_env", [])}
    if single:
        x = single["AdSim-v0 compiled"]["x CartPole-v1"]
        us, shares = found["single_env"]["us_per_step"], found["single_env"]["profile"]
        cause = (f"an AdSim-v0 step costs {us['AdSim-v0 compiled']:.1f} us against CartPole-v1's "
                 f"{us['CartPole-v1']:.1f} us (0.2x allows {5 * us['CartPole-v1']:.1f} us); an episode is a reset "
                 f"and {probe_depth(cfg)} steps, the last one scoring the ads on the path. Profile: "
                 f"{_shares_text(shares)}; the rest is Python glue of step/reset, info dicts and gymnasium's wrappers")
        add("single AdSim-v0 (compiled) steps/s, x CartPole-v1 (both via gym.make)", ">= 0.2", x, True, cause=cause)
    else:
        add("single AdSim-v0 (compiled) steps/s, x CartPole-v1 (both via gym.make)", ">= 0.2", None, True)

    vector = results.get("vector_env", [])
    if vector:
        n = max(r["num_envs"] for r in vector)
        x = next(r["x SyncVectorEnv"] for r in vector if r["num_envs"] == n and r["vector env"] == "native compiled")
        us, shares = found["vector_env"][n]["us_per_env_step"], found["vector_env"][n]["profile"]
        cause = (f"{us['native compiled']:.2f} us per env step against the SyncVectorEnv's "
                 f"{us['SyncVectorEnv of compiled single envs']:.1f} us (10x allows "
                 f"{us['SyncVectorEnv of compiled single envs'] / 10:.2f} us). Profile of the native env: "
                 f"{_shares_text(shares)}")
        add(f"native vector env at N={n}, x SyncVectorEnv of {n} compiled single envs", ">= 10", x, True, cause=cause)
    else:
        add("native vector env at N=64, x SyncVectorEnv of 64 compiled single envs", ">= 10", None, True)

    target = (f"RLlib PPO iteration time on AdSim-v0, x the trivial masked env (masked module, "
              f"{cfg.rllib_env_runners} env runners, train batch {cfg.rllib_batch:,})")
    if "rllib" in found:
        x, (adsim, trivial) = found["rllib"]["ratio"], found["rllib"]["rows"]
        cause = (f"RLlib's smoothed timers: sampling {adsim['sampling_s (RLlib timer)']} s vs "
                 f"{trivial['sampling_s (RLlib timer)']} s, learner update {adsim['learner_update_s (RLlib timer)']} "
                 f"s vs {trivial['learner_update_s (RLlib timer)']} s")
        add(target, "<= 2", x, False, cause=cause)
    else:
        add(target, "<= 2", None, False)

    memory_rows = {r["measure"]: r for r in results.get("memory", [])}
    for measure, label in (("RSS of one env process (MB)", "RSS of one env process"),
                           ("unique memory of an additional env process (MB)",
                            "unique memory (USS) of each additional env process")):
        if measure in memory_rows:
            row = memory_rows[measure]
            add(label, f"<= {row['budget']}", row["value"], False, " MB", cause="see memory.md")
        else:
            add(label, "<= 500" if "RSS" in label else "<= 300", None, False, " MB")
    return rows


def profile_rows(found: dict) -> list[dict]:
    """The cProfile shares behind the causes, one row per (env, part)."""
    rows = []
    if "single_env" in found:
        steps = found["single_env"]["steps"]
        for part, share in found["single_env"]["profile"].items():
            rows.append({"env": "AdSim-v0 compiled (single)", "profiled env steps": steps, "part": part,
                         "functions": ", ".join(SINGLE_PROFILE[part]), "share": round(share, 3)})
    for n, vec in sorted(found.get("vector_env", {}).items()):
        for part, share in vec["profile"].items():
            rows.append({"env": f"native compiled vector env, N={n}", "profiled env steps": vec["steps"],
                         "part": part, "functions": ", ".join(VECTOR_PROFILE[part]), "share": round(share, 3)})
    return rows


def probe_depth(cfg: Config) -> int:
    from envs.context import open_context

    return open_context(cfg.scenario, cfg.seed).simulator.depth


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
    "rllib": "Target: AdSim-v0 within 2x of the trivial masked env. Both Algorithms are agents.rllib.ppo_config "
             "(AdSimTorchRLModule, 8 envs per env runner, minibatch 128, 2 epochs) with half a CPU per env runner so "
             "both fit in ray.init(num_cpus=2); s_per_iteration is the median of the interleaved iterations, the "
             "ratio the median of the per-round ratios. The RLlib timers are RLlib's smoothed means, for context.",
    "profile": "Share of the profiled time inside each part (cumulative time of its functions, named "
               "module.function); indented parts are included in the part above. cProfile adds a fixed cost to every "
               "Python call, so Python glue is overweighted against the compiled kernels.",
    "targets": "Each target of the fast-simulator issue as measured by this run (the other tables of this folder "
               "hold the figures). Causes come from a cProfile of the same env in the same run; its shares are of the "
               "profiled time, which overweights Python calls against compiled kernels.",
}
TABLES = ("single_env", "vector_env", "evaluate", "memory", "trie", "rllib")
TITLES = {"single_env": "Single env steps/s", "vector_env": "Native vector env vs SyncVectorEnv",
          "evaluate": "Simulator.evaluate vs the raw reward-model scorer (same pairs)",
          "memory": "Memory per env process", "trie": "Personalised trie: legal ads and beam validity",
          "rllib": "RLlib PPO iteration: AdSim-v0 vs a trivial masked env of the same spaces",
          "targets": "Fast-simulator targets", "profile": "Where the compiled envs' time goes (cProfile)"}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default=Config.scenario, help="bundle path or preset (default: small)")
    parser.add_argument("--seed", type=int, default=Config.seed)
    parser.add_argument("--rounds", type=int, default=Config.rounds)
    parser.add_argument("--seconds", type=float, default=Config.seconds, help="one side's slice of a round")
    parser.add_argument("--rllib-rounds", type=int, default=Config.rllib_rounds,
                        help="timed PPO iterations per env")
    parser.add_argument("--out", type=Path, default=Config.out)
    parser.add_argument("--only", nargs="+", choices=TABLES, help="run only these tables (targets.md is always "
                        "written, marking the targets of the others as not measured)")
    parser.add_argument("--quick", action="store_true", help="tiny scenario, short measurements, no rllib table "
                        "unless --only names it (then 0 env runners, batch 256, one round)")
    args = parser.parse_args(argv)
    cfg = Config(scenario=args.scenario, seed=args.seed, rounds=args.rounds, seconds=args.seconds,
                 rllib_rounds=args.rllib_rounds, out=args.out)
    if args.quick:
        cfg = Config(scenario="tiny" if args.scenario == Config.scenario else args.scenario, seed=args.seed,
                     out=args.out, rounds=2, seconds=0.05, vector_sizes=(8,), beam_width=50, profile_steps=2_000,
                     rllib_env_runners=0, rllib_batch=256, rllib_rounds=1)
    chosen = args.only or [t for t in TABLES if not (args.quick and t == "rllib")]

    import envs  # noqa: F401  (registers AdSim-v0)
    from envs.context import open_context

    ctx = open_context(cfg.scenario, cfg.seed)
    found: dict = {}
    tables = {
        "single_env": lambda: single_env(cfg, found),
        "vector_env": lambda: vector_envs(cfg, found),
        "evaluate": lambda: evaluate_speed(cfg, ctx),
        "memory": lambda: memory(cfg),
        "trie": lambda: trie_report(cfg, ctx, cfg.out),
        "rllib": lambda: rllib_iterations(cfg, found),
    }
    results = {}
    for name, run in tables.items():
        if name not in chosen:
            continue
        results[name] = run()
        write_report(cfg.out, name, results[name], title=f"{TITLES[name]} ({cfg.scenario})", notes=NOTES.get(name, ""))
    parts = profile_rows(found)
    if parts:
        results["profile"] = parts
        write_report(cfg.out, "profile", parts, title=f"{TITLES['profile']} ({cfg.scenario})",
                     notes=NOTES["profile"])
    results["targets"] = targets(cfg, results, found)
    write_report(cfg.out, "targets", results["targets"], title=f"{TITLES['targets']} ({cfg.scenario})",
                 notes=NOTES["targets"])
    return results


if __name__ == "__main__":
    main()
