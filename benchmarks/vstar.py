"""V-STAR's two failure modes of likelihood-led decoding, measured on K-candidate sets of sampling, beam and VED.

    python -m benchmarks.vstar                  # tiny (K = 8) and small (K = 16) worlds
    python -m benchmarks.vstar --quick          # seconds: the smoke preset's world and chain (tests)

From the VAFT checkpoint of ``benchmarks.dpo_vs_hepo``'s chain for each preset (the same training, trained here with
its ``run_piece`` when missing), every method builds K candidates (K = the preset's post-training ``candidates``)
under the personalised trie for the same held-out test requests:

* ``sample``: K policy samples at temperature 1 (what GRPO/HEPO train on);
* ``beam``: beam search of width K (likelihood-led decoding);
* ``VED``: V-STAR's value-guided decoding (``agents.hhd.value_guided``, its default settings);
* ``VED without value``: the same with ``value_weight = 0``, so the difference to ``VED`` is the critic's.

Per request (the reward-model source, as in training):

* (a) advantage compression: the within-group variance of the training reward R = log1p(final_value / unit) over
  the K candidates (population variance, GRPO's group; higher = a stronger comparative signal), and the share of
  distinct paths among the K;
* (b) pruned high-value ads: of the request's eligible ads in the top ``top_share`` by final_value (the oracle's
  view), those "hidden" behind a low-probability prefix, pi(z_{1:L-1}) < 1/K under the policy and the personalised
  trie (K samples expect to pass through such a prefix less than once), and the share of them whose full path is
  among the method's candidates (requests with no hidden ad sit this column out). Also avg and max final_value of
  the candidates over the request's oracle (GPR's normalisation), so exploration is not bought with quality unseen.

Means with 95 % t-intervals over requests, and request-paired differences with ``benchmarks.stats``' verdicts.
Output: ``OUT/vstar.md/.csv/.json``.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch

from adsim.arguments import add_dataclass_arguments, dataclass_from_arguments
from adsim.simulator.requests import take
from agents.hhd.value_guided import VEDConfig
from benchmarks.dpo_vs_hepo import PRESETS, Piece, _chain_dir, _env, run_piece
from benchmarks.report import write_report
from benchmarks.stats import paired_differences, t_interval

METHODS = ("sample", "beam", "VED", "VED without value")
CLAIMS = (("VED", "sample"), ("VED", "beam"), ("VED", "VED without value"))
METRICS = {"reward_variance": "within-group reward variance", "distinct_share": "distinct paths / K",
           "hidden_found": "hidden top ads found (share)", "avg_over_oracle": "avg final_value / oracle",
           "max_over_oracle": "max final_value / oracle"}


@dataclass
class Config:
    presets: tuple[Literal["smoke", "quick", "standard"], ...] = ("quick", "standard")
    """``dpo_vs_hepo`` presets giving the world, the VAFT chain and K (quick: tiny, K = 8; standard: small, K = 16)."""
    requests: int = 200
    """Held-out test requests per world (those with no eligible ad are dropped)."""
    seed: int = 0
    """The chain's seed, the requests' and the samplers'."""
    top_share: float = 0.1
    """High-reward ads: the request's eligible ads in this top share by final_value (at least one)."""
    chunk: int = 50
    """Requests decoded per call."""
    ved: VEDConfig = field(default_factory=VEDConfig)
    out: Path = Path("results/vstar")
    runs: Path = Path("runs/vstar")
    """Chains (checkpoints), not committed."""


QUICK = {"presets": ("smoke",), "requests": 16, "out": Path("results/vstar_quick")}


def vaft_checkpoint(config: Config, preset_name: str) -> Path:
    """The preset's VAFT checkpoint for world 0 and ``config.seed``, trained as ``dpo_vs_hepo`` trains it."""
    preset, runs = PRESETS[preset_name], config.runs / preset_name
    path = _chain_dir(runs, preset.scenario, 0, config.seed) / "vaft" / "checkpoint.pt"
    if not path.is_file():
        run_piece(preset, runs / "chain", runs, Piece("chain", 0, config.seed))
    return path


def candidates(method: str, model, env, requests, allowed: np.ndarray, k: int, generator: torch.Generator,
               ved: VEDConfig) -> tuple[np.ndarray, np.ndarray]:
    """(B, K, L) candidate paths of one method and (B, K) bool, a path fills the slot (beam may run short)."""
    from agents.hhd.decoding import BeamConfig, beam_search
    from agents.posttrain.train import draw

    if method == "beam":
        with torch.no_grad():
            beams = beam_search(model, env.batch(requests), env.trie.legal(allowed), BeamConfig(beam=k))
        return np.maximum(beams.paths, 0), beams.found
    sampler = "sample" if method == "sample" else "ved"
    config = replace(ved, value_weight=0.0) if method == "VED without value" else ved
    _, paths, _ = draw(model, env, requests, allowed, k, 1.0, generator, sampler, config)
    paths = paths.numpy().reshape(len(allowed), k, -1)
    return paths, np.ones(paths.shape[:2], dtype=bool)


def hidden_top_ads(model, env, requests, allowed: np.ndarray, k: int, top_share: float
                   ) -> tuple[list[np.ndarray], np.ndarray]:
    """Per request, its high-reward eligible ads behind a low-probability prefix (pi(z_{1:L-1}) < 1/K), and its
    oracle (the best eligible ad's final_value, what ``Simulator.oracle`` computes) from the same scores."""
    from agents.hhd.model import Encoding

    sim = env.ctx.simulator
    n_ads = allowed.shape[1]
    value = sim.scorer("model").score(requests, np.broadcast_to(np.arange(n_ads), allowed.shape)).final_value
    value = np.where(allowed, value, -np.inf)
    top = []
    for b in range(len(allowed)):
        eligible = np.flatnonzero(allowed[b])
        n_top = max(1, math.ceil(top_share * len(eligible)))
        top.append(eligible[np.argsort(-value[b, eligible], kind="stable")[:n_top]])
    rows = np.repeat(np.arange(len(top)), [len(t) for t in top])
    ads = np.concatenate(top)
    with torch.no_grad():
        enc = model.encode(env.batch(requests))
        out = model.walk(Encoding(enc.memory[torch.as_tensor(rows)], enc.aux_loss), env.trie.legal(allowed[rows]),
                         torch.as_tensor(sim.ad_codes[ads]))
    low = out.log_probs[:, :-1].sum(dim=1).numpy() < -math.log(k)
    return [ads[(rows == b) & low] for b in range(len(top))], value.max(axis=1)


def measure_world(config: Config, preset_name: str) -> pd.DataFrame:
    """One row per (request, method): the module docstring's per-request quantities."""
    from agents.hhd.model import HHD

    torch.set_num_threads(1)
    preset = PRESETS[preset_name]
    k = preset.candidates
    model = HHD.from_checkpoint(str(vaft_checkpoint(config, preset_name)))[0]
    env = _env(preset.scenario, 0, "test")
    sim = env.ctx.simulator
    requests = env.ctx.requests.held_out(config.requests, np.random.default_rng([config.seed, 11]))
    allowed = sim.allowed(requests)
    keep = np.flatnonzero(allowed.any(axis=1))
    requests, allowed = take(requests, keep), allowed[keep]
    rows = []
    generators = {m: torch.Generator().manual_seed(config.seed) for m in METHODS}
    for lo in range(0, len(allowed), config.chunk):
        idx = np.arange(lo, min(lo + config.chunk, len(allowed)))
        req, alw = take(requests, idx), allowed[idx]
        hidden, oracle = hidden_top_ads(model, env, req, alw, k, config.top_share)
        oracle = np.maximum(oracle, 1e-12)
        for method in METHODS:
            started = time.perf_counter()
            paths, found = candidates(method, model, env, req, alw, k, generators[method], config.ved)
            seconds = (time.perf_counter() - started) / len(idx)
            ev = sim.evaluate(req, paths, allowed=alw)
            valid = ev.valid & found
            reward = env.reward(np.where(valid, ev.final_value, 0.0))
            for b in range(len(idx)):
                v = valid[b]
                reached = {tuple(p) for p in paths[b][v]}
                hit = [tuple(sim.ad_codes[a]) in reached for a in hidden[b]]
                value = ev.final_value[b][v]
                rows.append({"request": int(idx[b]), "method": method,
                             "reward_variance": float(reward[b][v].var()) if v.any() else 0.0,
                             "distinct_share": len(reached) / k,
                             "hidden_found": float(np.mean(hit)) if len(hit) else np.nan,
                             "hidden_ads": len(hit),
                             "avg_over_oracle": float(value.mean() / oracle[b]) if v.any() else 0.0,
                             "max_over_oracle": float(value.max() / oracle[b]) if v.any() else 0.0,
                             "seconds": seconds})
    return pd.DataFrame(rows)


def summary(world: str, k: int, df: pd.DataFrame) -> tuple[list[dict], list[dict]]:
    """Per method, mean ± t half-width over requests; per claim and metric, the request-paired verdict."""
    table, verdicts = [], []
    for method in METHODS:
        part = df[df["method"] == method]
        row = {"world": world, "K": k, "method": method, "requests": len(part)}
        for key, name in METRICS.items():
            interval = t_interval(part[key].dropna())
            row[name] = f"{interval.mean:.4g} ± {interval.half_width:.2g}"
        row["requests with hidden top ads"] = int((part["hidden_ads"] > 0).sum())
        row["ms / request"] = round(1000 * part["seconds"].mean(), 2)
        table.append(row)
    by = {m: df[df["method"] == m].set_index("request") for m in METHODS}
    for better, worse in CLAIMS:
        row = {"world": world, "claim": f"{better} > {worse}"}
        for key, name in METRICS.items():
            diff = t_interval(paired_differences(by[better][key], by[worse][key]))
            row[name] = f"{diff.verdict} ({diff})" if diff.n else "-"
        verdicts.append(row)
    return table, verdicts


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_arguments(parser, Config)
    parser.add_argument("--quick", action="store_true", help="the smoke preset's world and chain, a few requests")
    args = parser.parse_args(argv)
    config = dataclass_from_arguments(Config, args, replace(Config(), **QUICK) if args.quick else None)
    started = time.perf_counter()
    table, verdicts, per_request = [], [], []
    for name in config.presets:
        df = measure_world(config, name)
        preset = PRESETS[name]
        rows, claims = summary(preset.scenario, preset.candidates, df)
        table += rows
        verdicts += claims
        per_request.append(df.assign(world=preset.scenario))
        print(pd.DataFrame(rows).to_string(index=False), flush=True)
    notes = "\n".join([
        f"Settings: {config}.", "",
        "Each cell: mean ± 95% t half-width over requests. Hidden top ads: the request's eligible ads in the top "
        f"{config.top_share:.0%} by final_value whose coarse prefix z_(1:L-1) has policy probability < 1/K; the "
        "share of them whose path is a candidate. Beam is not blind to them by construction: K prefixes each below "
        "1/K can all survive its top-K. VED's distinct share is below 1 because its scouts are policy samples (its "
        "branches are always new paths). ms / request: the candidate generation's wall time (one CPU thread; the "
        "machine was shared).", "",
        "Request-paired differences (benchmarks.stats: 'holds' = the 95% interval lies above 0):", "",
        pd.DataFrame(verdicts).to_markdown(index=False), "",
        f"Wall time {time.perf_counter() - started:.0f} s."])
    write_report(config.out, "vstar", table, "V-STAR diagnostics: advantage compression and pruned high-value ads "
                 "of K-candidate sets (sampling, beam, VED)", notes=notes)
    return pd.concat(per_request, ignore_index=True)


if __name__ == "__main__":
    main()
