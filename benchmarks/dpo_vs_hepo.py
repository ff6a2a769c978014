"""DPO vs HEPO (GPR Table 3) on a synthetic scenario: the whole chain, fair tuning, ablations, honest intervals.

    python -m benchmarks.dpo_vs_hepo --preset quick       # tiny world, the README's main job (~10 min, 2 cores)
    python -m benchmarks.dpo_vs_hepo --preset standard    # small world, 5 seeds (~1 h on 2 cores)
    python -m benchmarks.dpo_vs_hepo --preset smoke       # seconds: the test
    adsim bench dpo-vs-hepo --preset quick --scenario path/to/bundle   # any preset on any bundle

Per (world, seed): MTP pre-training -> VAFT -> from the same VAFT checkpoint, with the same simulator budget
(``iterations x requests_per_iter x candidates`` scored paths, HEPO's critic warm-up included): DPO, HEPO, GRPO and
the HEPO ablations (each changes one thing HEPO's explanation rests on); the standard preset adds V-STAR
(Sibling-GRPO on value-guided VED candidates), GRPO with thinking tokens and refiner frozen (DiffuReason's
contrast: +GRPO trains them end to end) and UniVA with its ablations (no value head, no MCTS-PPO). Every model is
evaluated on the same held-out test requests (``agents.posttrain.evaluation``) under the reward models and, where
the bundle has it, the world's truth.

Tuning, the same for every method: before the test runs, each method (and each ablation) is trained on a
separate chain (seed ``tune_seed``) for every ``lr`` in ``lrs`` x every value of its own knob (DPO: beta and pair
rule; HEPO: the critic's lr; GRPO, V-STAR, UniVA: the clip range; ablations: the lr, with the chosen knob of the
method they ablate), with the same budget, and scored on VALIDATION requests; the best ``model/avg_over_oracle``
(what a practitioner can measure: no truth) picks its settings.
The search table and the choice are written beside the results.

Resumable in pieces: every (world, seed, method) result and every search cell is one JSON file under
``OUT/PRESET/pieces/`` written atomically (temp, rename) as it finishes; a rerun skips pieces whose settings
match, and the report is merged from the pieces (``--commit-pieces`` also commits each piece file as it lands).

Output in ``OUT/PRESET/``: ``dpo_vs_hepo.md/.csv/.json`` (mean and 95 % t-interval over seeds, verdicts per column
on GPR's ordering HEPO > DPO > VAFT > MTP from seed-paired differences, ``benchmarks.stats``' rule),
``ablations.*`` (HEPO minus each ablation, per column; ``ablations_univa.*`` the same for UniVA), ``search.*`` and
``chosen.*`` (the tuning), ``runs.csv``, ``learning_curves.png``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from multiprocessing import get_context
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from adsim.arguments import add_dataclass_arguments, dataclass_from_arguments
from adsim.data.bundle import GENERATOR_VERSION
from adsim.simulator.simulator import SIMULATOR_VERSION
from benchmarks.report import write_report
from benchmarks.stats import paired_differences, t_interval

PROCESS_ALPHAS = (0.2, 0.1)
HEPO = {"method": "hepo", "critic_warmup": -1, "normalise_advantages": True, "arr_ratio": 0.3}
"""GPR's HEPO as a practitioner runs it: process rewards, ARR, a warmed-up critic (-1: the preset's warm-up
length), per-level normalised coarse advantages."""
UNIVA = {"method": "univa", "sampler": "univa"}
"""UniVA (univa_paper.txt 3.3-3.4): Generation-as-Ranking policy, beam u MCTS-PPO candidates with the value head as
evaluator, GAE on the value head, a supervised batch after each RL batch (``agents.posttrain.univa``)."""


@dataclass(frozen=True)
class Method:
    """A post-training row: PostTrainConfig overrides, and the method-specific knob its search tries."""

    name: str
    overrides: dict
    knob: str = ""
    knob_values: tuple[dict, ...] = ({},)
    ablation_of: str = ""
    """For an ablation: what it removes from ``base`` (its search is over lr only, with the base's chosen knob)."""
    base: str = "+HEPO"
    """The method an ablation removes a part from."""


METHODS = (
    Method("+DPO", {"method": "dpo"}, "beta / pairs",
           ({"beta": 0.1, "max_pairs": 4}, {"beta": 0.5, "max_pairs": 4}, {"beta": 0.1, "max_pairs": 1})),
    Method("+HEPO", HEPO, "critic_lr", ({"critic_lr": 1e-3}, {"critic_lr": 3e-3})),
    Method("+GRPO", {"method": "grpo"}, "clip_eps", ({"clip_eps": 0.2}, {"clip_eps": 0.3})),
    Method("+V-STAR", {"method": "sibling_grpo", "sampler": "ved"}, "clip_eps",
           ({"clip_eps": 0.2}, {"clip_eps": 0.3})),
    Method("+GRPO frozen reasoning", {"method": "grpo", "frozen": ("thinking", "refining")}, "clip_eps",
           ({"clip_eps": 0.2}, {"clip_eps": 0.3})),
    Method("+UniVA", UNIVA, "clip_eps", ({"clip_eps": 0.2}, {"clip_eps": 0.3})),
    Method("UniVA w/o value head", {**UNIVA, "gar": False}, ablation_of="the value head (Generation-as-Ranking)",
           base="+UniVA"),
    Method("UniVA w/o MCTS-PPO", {**UNIVA, "mcts_simulations": 0}, ablation_of="MCTS-PPO candidates",
           base="+UniVA"),
    Method("HEPO cold critic", {**HEPO, "critic_warmup": 0}, ablation_of="the critic warm-up"),
    Method("HEPO raw coarse advantages", {**HEPO, "normalise_advantages": False},
           ablation_of="per-level advantage normalisation"),
    Method("HEPO w/o process rewards", {**HEPO, "process_rewards": False}, ablation_of="process rewards"),
    Method("HEPO w/o ARR", {**HEPO, "arr_ratio": 0.0}, ablation_of="ARR"),
    Method("HEPO lambda=0", {**HEPO, "lam": 0.0}, ablation_of="GAE lambda 0.95 (vs one-step TD)"),
    Method("HEPO lambda=1", {**HEPO, "lam": 1.0}, ablation_of="GAE lambda 0.95 (vs Monte Carlo)"),
)
BY_NAME = {m.name: m for m in METHODS}
GPR_METHODS = tuple(m.name for m in METHODS if m.name in ("+DPO", "+HEPO", "+GRPO") or m.base == "+HEPO"
                    and m.ablation_of)
"""GPR's rows and HEPO's ablations (the quick preset); the standard preset adds V-STAR (Sibling-GRPO on VED
candidates), GRPO with the PTD thinking tokens and refiner frozen (DiffuReason's claim is that training them
end to end, as +GRPO does, helps) and UniVA with its ablations."""
CLAIMS = (("+HEPO", "+GRPO"), ("+DPO", "+GRPO"), ("+V-STAR", "+GRPO"), ("+GRPO", "+GRPO frozen reasoning"),
          ("+UniVA", "+GRPO"), ("+UniVA", "+HEPO"), ("UniVA w/o MCTS-PPO", "+GRPO"))
"""Claims checked beside GPR's ordering: HEPO and DPO against GRPO, V-STAR's (Sibling-GRPO + VED beats GRPO),
DiffuReason's (end-to-end reasoning beats frozen) and UniVA's (its RL beats a plain group-relative and GPR's
hierarchical one; its parts are tested by its ablations, and its recipe without the search against GRPO)."""
CHAIN = ("MTP (base)", "+VAFT")
ORDER = ("+HEPO", "+DPO", "+VAFT", "MTP (base)")
METRICS = ("ndcg", "opr", "avg_over_oracle", "max_over_oracle", "normalised_score")
SELECT = "model/avg_over_oracle"
"""The tuning criterion on validation requests (model-scored: a practitioner has no truth)."""


@dataclass
class Preset:
    scenario: str = "tiny"
    """World preset or bundle path (imported bundles have no truth: model columns only)."""
    world_seeds: tuple[int, ...] = (0,)
    """World (bundle) seeds of a preset scenario; one table per world."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """One whole chain (MTP, VAFT, every post-training method) per seed."""
    tune_seed: int = 100
    """The chain the search trains (scored on validation requests), apart from every test seed."""
    tune_world: int | None = None
    """World whose search chooses every world's settings (robustness: do the settings and verdicts transfer to
    fresh worlds?); None: each world is searched on its own validation requests."""
    n_embd: int = 32
    mtp_steps: int = 150
    vaft_steps: int = 60
    batch_size: int = 64
    """Pre-training and VAFT batch size."""
    iterations: int = 40
    """Post-training iterations of every method (HEPO's critic warm-up included)."""
    critic_warmup: int = 8
    """HEPO: value-only iterations at the start."""
    requests_per_iter: int = 16
    candidates: int = 8
    """K candidate paths per request while post-training."""
    lrs: tuple[float, ...] = (1e-4, 3e-4, 1e-3)
    """The search's learning rates (every method)."""
    methods: tuple[str, ...] = GPR_METHODS
    """Post-training rows to run (``METHODS`` names)."""
    tune_requests: int = 200
    """Validation requests of the search."""
    eval_requests: int = 200
    """Held-out test requests every model is scored on."""
    eval_k: int = 8
    """Beam candidates per test request."""


PRESETS = {
    "smoke": Preset(seeds=(0, 1), n_embd=16, mtp_steps=10, vaft_steps=5, batch_size=32, iterations=3,
                    critic_warmup=1, requests_per_iter=4, candidates=4, lrs=(1e-3,),
                    methods=("+DPO", "+HEPO", "+GRPO", "HEPO cold critic"), tune_requests=20, eval_requests=20,
                    eval_k=4),
    "quick": Preset(),
    "standard": Preset(scenario="small", seeds=(0, 1, 2, 3, 4), n_embd=48, mtp_steps=300, vaft_steps=100,
                       batch_size=128, iterations=60, critic_warmup=10, requests_per_iter=16, candidates=16,
                       methods=tuple(m.name for m in METHODS), tune_requests=300, eval_requests=400, eval_k=16),
}


@dataclass
class Config:
    preset: Literal["smoke", "quick", "standard"] = "quick"
    """A ``PRESETS`` entry; the preset options below override single settings of it."""
    out: Path = Path("results/dpo_vs_hepo")
    """Results go to OUT/PRESET/ (pieces in OUT/PRESET/pieces/)."""
    runs: Path = Path("runs/dpo_vs_hepo")
    """Checkpoints and curves (RUNS/PRESET/...), not committed."""
    workers: int = 2
    """Pieces run in this many processes (1: in this one)."""
    commit_pieces: bool = False
    """``git commit`` each piece file as it lands (for long runs that may be cut off)."""
    settings: Preset = field(default_factory=Preset)


# ---------------------------------------------------------------------------------------------------- pieces
@dataclass(frozen=True)
class Piece:
    """One unit of work and its result file: a chain (MTP + VAFT rows), a search cell or a test row."""

    kind: Literal["chain", "search", "test"]
    world: int
    seed: int
    method: str = ""
    overrides: tuple = ()
    """Sorted (key, value) PostTrainConfig overrides (search and test)."""

    @property
    def slug(self) -> str:
        name = self.method.strip("+").replace(" ", "_").replace("/", "").replace("=", "") or "chain"
        extra = "_".join(f"{k}{v}" for k, v in self.overrides if k in ("lr", "beta", "max_pairs", "critic_lr",
                                                                       "clip_eps")) if self.kind == "search" else ""
        return f"w{self.world}_s{self.seed}_{name}" + (f"_{extra}" if extra else "")

    def path(self, root: Path) -> Path:
        return root / "pieces" / self.kind / f"{self.slug}.json"


def settings_key(preset: Preset, piece: Piece) -> str:
    """What a piece's result depends on; a stored piece with another key is stale and run again."""
    chain = {k: getattr(preset, k) for k in ("scenario", "n_embd", "mtp_steps", "vaft_steps", "batch_size")}
    post = {k: getattr(preset, k) for k in ("iterations", "requests_per_iter", "candidates")}
    evaluation = ({"tune_requests": preset.tune_requests} if piece.kind == "search" else
                  {"eval_requests": preset.eval_requests})
    versions = {"generator": GENERATOR_VERSION, "simulator": SIMULATOR_VERSION,  # new dynamics: rerun
                "bundle": bundle_digest(preset.scenario, piece.world)}  # another bundle: rerun
    blob = json.dumps([chain, post, evaluation, preset.eval_k, asdict(piece), versions], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@cache
def bundle_digest(scenario: str, world: int) -> str:
    """What a piece was computed on: a digest of its bundle's file map (sha256 per file), the bundle built first
    if it is a preset not built yet."""
    from reward_models.pipeline import ensure_scenario

    files = ensure_scenario(scenario, seed=world).files
    return hashlib.sha256(json.dumps(sorted(files.items())).encode()).hexdigest()[:16]


def _write_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=0, default=float) + "\n")
    os.replace(tmp, path)


def load_piece(root: Path, preset: Preset, piece: Piece) -> dict | None:
    path = piece.path(root)
    if not path.is_file():
        return None
    payload = json.loads(path.read_text())
    return payload if payload.get("key") == settings_key(preset, piece) else None


_ENVS: dict = {}


def _env(scenario: str, world: int, split: str):
    from agents.hhd.train import TrainConfig
    from agents.posttrain.train import PolicyEnv

    key = (scenario, world, split)
    if key not in _ENVS:
        _ENVS[key] = PolicyEnv.open(scenario, world, split, PROCESS_ALPHAS, TrainConfig().seq)
    return _ENVS[key]


def _evalset(preset: Preset, world: int, seed: int, split: str):
    from agents.posttrain.evaluation import EvalSet

    key = ("evalset", preset.scenario, world, seed, split)
    if key not in _ENVS:
        n = preset.tune_requests if split == "valid" else preset.eval_requests
        _ENVS[key] = EvalSet.build(_env(preset.scenario, world, split), n, preset.eval_k, seed)
    return _ENVS[key]


def _chain_dir(runs: Path, scenario: str, world: int, seed: int) -> Path:
    """Checkpoints of one chain, per bundle: a rebuilt bundle never reuses a chain trained on the old one."""
    return runs / f"w{world}_s{seed}_{bundle_digest(scenario, world)[:8]}"


def _round(row: dict) -> dict:
    return {k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in row.items()}


def run_piece(preset: Preset, root: Path, runs: Path, piece: Piece) -> Path:
    """Compute one piece (training its chain first if the VAFT checkpoint is missing) and write its file."""
    import torch

    from agents.hhd.model import HHDConfig
    from agents.hhd.train import TrainConfig, train
    from agents.posttrain.evaluation import evaluate_policy
    from agents.posttrain.train import PostTrainConfig
    from agents.posttrain.train import train as posttrain

    torch.set_num_threads(1)
    p, started = preset, time.perf_counter()
    base = _chain_dir(runs, p.scenario, piece.world, piece.seed)
    split = "valid" if piece.kind == "search" else "test"

    def evaluate(model) -> dict:
        return evaluate_policy(model, _env(p.scenario, piece.world, split),
                               _evalset(p, piece.world, piece.seed, split), p.eval_k)

    def chain(record: bool) -> list[dict]:
        # ------------------------------------------------------------------------------ MTP -> VAFT
        rows, t0 = [], time.perf_counter()
        common = {"data": p.scenario, "data_seed": piece.world, "seed": piece.seed, "batch_size": p.batch_size,
                  "threads": 1, "log_every": 10**9}
        mtp = train(TrainConfig(model=HHDConfig(n_embd=p.n_embd), steps=p.mtp_steps, out=str(base / "mtp"),
                                **common), verbose=False)
        if record:
            rows.append({"model": CHAIN[0], **evaluate(mtp.model), "simulator_calls": 0,
                         "train_seconds": time.perf_counter() - t0})
        t0 = time.perf_counter()
        vaft = train(TrainConfig(stage="vaft", init_from=str(mtp.checkpoint), steps=p.vaft_steps,
                                 out=str(base / "vaft"), **common), verbose=False)
        if record:
            rows.append({"model": CHAIN[1], **evaluate(vaft.model), "simulator_calls": 0,
                         "train_seconds": time.perf_counter() - t0})
        return rows

    vaft_ckpt = base / "vaft" / "checkpoint.pt"
    payload: dict = {"piece": asdict(piece), "key": settings_key(p, piece)}
    if piece.kind == "chain":
        payload["rows"] = [_round({**r, "world": piece.world, "seed": piece.seed}) for r in chain(record=True)]
    else:
        if not vaft_ckpt.is_file():
            chain(record=False)  # deterministic: the same checkpoint the chain piece made
        overrides = dict(piece.overrides)
        config = PostTrainConfig(init_from=str(vaft_ckpt), scenario=p.scenario, data_seed=piece.world,
                                 seed=piece.seed, iterations=p.iterations, requests_per_iter=p.requests_per_iter,
                                 candidates=p.candidates, process_alphas=PROCESS_ALPHAS,
                                 out=str(base / "post" / piece.path(Path(".")).stem), **overrides)
        result = posttrain(config, _env(p.scenario, piece.world, "train"), verbose=False)
        row = {"model": piece.method, **evaluate(result.model), "world": piece.world, "seed": piece.seed,
               "simulator_calls": result.curve[-1]["simulator_calls"], "train_seconds": time.perf_counter() - started}
        payload["rows"] = [_round(row)]
        payload["curve"] = [_round(r) for r in result.curve]
    payload["seconds"] = round(time.perf_counter() - started, 1)
    path = piece.path(root)
    _write_atomic(path, payload)
    return path


def _commit(path: Path) -> None:
    """Commit one piece file by path, in the repository that holds it (retrying while another commit holds the
    index lock), so a run from another checkout can still commit into the results' repository."""
    path = path.resolve()
    for attempt in range(10):
        git = ["git", "-C", str(path.parent)]
        add = subprocess.run([*git, "add", "--", str(path)], capture_output=True, text=True)
        done = add.returncode == 0 and subprocess.run(
            [*git, "commit", "-q", "-m", f"dpo_vs_hepo piece {path.parent.name}/{path.name}", "--", str(path)],
            capture_output=True, text=True).returncode == 0
        if done:
            return
        time.sleep(2 + attempt)
    print(f"  (could not commit {path})", flush=True)


def run_pieces(cfg: Config, root: Path, runs: Path, pieces: list[Piece]) -> None:
    """Run the pieces not already done (in ``cfg.workers`` processes); each file lands as its piece finishes."""
    todo = [pc for pc in pieces if load_piece(root, cfg.settings, pc) is None]
    print(f"{len(pieces) - len(todo)} of {len(pieces)} pieces already done; running {len(todo)}", flush=True)

    def landed(path: Path) -> None:
        print(f"  piece {path.parent.name}/{path.name}", flush=True)
        if cfg.commit_pieces:
            _commit(path)

    if cfg.workers <= 1 or len(todo) <= 1:
        for pc in todo:
            landed(run_piece(cfg.settings, root, runs, pc))
        return
    with ProcessPoolExecutor(cfg.workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run_piece, cfg.settings, root, runs, pc) for pc in todo]
        for future in as_completed(futures):
            landed(future.result())


# ---------------------------------------------------------------------------------------------------- search
def _frozen(overrides: dict) -> tuple:
    return tuple(sorted(overrides.items()))


def _resolved(preset: Preset, overrides: dict) -> dict:
    out = dict(overrides)
    if out.get("critic_warmup") == -1:
        out["critic_warmup"] = preset.critic_warmup
    return out


def search_pieces(preset: Preset, world: int, base_knobs: dict[str, dict] | None = None) -> list[Piece]:
    """The search grid: without ``base_knobs``, lrs x knob of every main method; with it (base method -> its chosen
    knob), lrs x that knob of every ablation of those bases, so an ablation differs from its base in the one part
    it removes (and its lr)."""
    pieces = []
    for name in preset.methods:
        m = BY_NAME[name]
        if bool(m.ablation_of) != (base_knobs is not None) or (m.ablation_of and m.base not in base_knobs):
            continue
        for knob in ((base_knobs[m.base],) if m.ablation_of else m.knob_values):
            for lr in preset.lrs:
                pieces.append(Piece("search", world, preset.tune_seed, name,
                                    _frozen({**_resolved(preset, m.overrides), **knob, "lr": lr})))
    return pieces


def choose(preset: Preset, root: Path, world: int) -> tuple[pd.DataFrame, dict[str, dict]]:
    """The search table (every finished cell's validation score) and each method's best overrides."""
    rows: list[dict] = []
    best: dict[str, dict] = {}

    def scan(pieces: list[Piece]) -> None:
        for pc in pieces:
            payload = load_piece(root, preset, pc)
            if payload is None:
                continue
            over, score = dict(pc.overrides), payload["rows"][0]
            knob_keys = [k for kv in BY_NAME[pc.method].knob_values for k in kv]
            rows.append({"model": pc.method, "lr": over["lr"],
                         "knob": ", ".join(f"{k}={over[k]}" for k in dict.fromkeys(knob_keys)) or "-",
                         SELECT: score[SELECT], "truth/avg_over_oracle": score.get("truth/avg_over_oracle", np.nan),
                         "overrides": over})
            if pc.method not in best or rows[-1][SELECT] > best[pc.method][SELECT]:
                best[pc.method] = rows[-1]

    scan(search_pieces(preset, world))
    scan(search_pieces(preset, world, base_knobs(best)))
    table = pd.DataFrame(rows)
    if len(table):
        table["chosen"] = [best[r["model"]] is r for r in rows]
        table = table.drop(columns="overrides").dropna(axis=1, how="all")
    return table, {name: r["overrides"] for name, r in best.items()}


def base_knobs(best: dict[str, dict]) -> dict[str, dict]:
    """Each ablated method's chosen knob value (what its ablations search with), for the bases searched so far."""
    bases = {m.base for m in METHODS if m.ablation_of and m.base in best}
    return {b: {k: best[b]["overrides"][k] for kv in BY_NAME[b].knob_values for k in kv} for b in bases}


def ablated_bases(preset: Preset) -> list[str]:
    """"HEPO's", "UniVA's": the methods whose ablations the preset runs."""
    return [f"{b.strip('+')}'s" for b in dict.fromkeys(BY_NAME[n].base for n in preset.methods
                                                       if BY_NAME[n].ablation_of)]


# ---------------------------------------------------------------------------------------------------- tables
def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% t-interval half-width over seeds, per model and metric."""
    metrics = [c for c in runs.columns if c not in ("model", "seed", "world")]
    out = []
    for name, group in runs.groupby("model", sort=False):
        row = {"model": name, "seeds": len(group)}
        for m in metrics:
            interval = t_interval(group[m].to_numpy(dtype=float))
            row[m] = f"{interval.mean:.4g} ± {interval.half_width:.2g}"
        out.append(row)
    return pd.DataFrame(out)


def metric_columns(runs: pd.DataFrame) -> list[str]:
    return [c for c in runs.columns if "/" in c and c.split("/")[0] in ("model", "truth")
            and c.split("/")[1] in METRICS]


def compare(runs: pd.DataFrame, better: str, worse: str, columns: list[str]) -> dict[str, object]:
    """``better - worse`` paired by seed on each column: '<verdict> (<mean> ± <half width>)'."""
    row: dict[str, object] = {"claim": f"{better} > {worse}"}
    for col in columns:
        a = runs[runs["model"] == better].set_index("seed")[col]
        b = runs[runs["model"] == worse].set_index("seed")[col]
        diff = t_interval(paired_differences(a, b))
        row[col] = f"{diff.verdict} ({diff})" if diff.n else "-"
    return row


def verdict_table(runs: pd.DataFrame) -> pd.DataFrame:
    """GPR's ordering HEPO > DPO > VAFT > MTP, per column (seed-paired differences), plus ``CLAIMS``."""
    cols = metric_columns(runs)
    present = set(runs["model"])
    claims = [(a, b) for a, b in zip(ORDER[:-1], ORDER[1:], strict=True)] + list(CLAIMS)
    return pd.DataFrame([compare(runs, a, b, cols) for a, b in claims if a in present and b in present])


def ablation_table(runs: pd.DataFrame, base: str = "+HEPO") -> pd.DataFrame:
    """``base`` minus each of its ablations on the avg/oracle and normalised-score columns: does the removed part
    matter?"""
    cols = [c for c in metric_columns(runs) if c.split("/")[1] in ("avg_over_oracle", "normalised_score")]
    rows = []
    for m in METHODS:
        if not m.ablation_of or m.base != base or m.name not in set(runs["model"]) or base not in set(runs["model"]):
            continue
        row = {"ablation": m.name, "tests": m.ablation_of}
        ab = runs[runs["model"] == m.name]
        for col in cols:
            row[f"{col} (ablation)"] = str(t_interval(ab[col].to_numpy(dtype=float))).lstrip("+")
        row.update({f"{base.strip('+')} - ablation, {k}": v for k, v in compare(runs, base, m.name, cols).items()
                    if k != "claim"})
        rows.append(row)
    return pd.DataFrame(rows)


ROBUST_METRICS = ("model/ndcg", "model/avg_over_oracle", "model/normalised_score", "truth/ndcg",
                  "truth/avg_over_oracle", "truth/normalised_score")


def robustness_table(worlds: list[tuple[int, pd.DataFrame]]) -> pd.DataFrame:
    """Each verdict of ``verdict_table`` on each world side by side (rows: claim x metric), with how many worlds
    it holds / is reversed in."""
    per_world = {w: verdict_table(df).set_index("claim") for w, df in worlds}
    claims = list(dict.fromkeys(c for table in per_world.values() for c in table.index))
    rows = []
    for claim in claims:
        for metric in ROBUST_METRICS:
            cells = {f"world {w}": (t.at[claim, metric] if claim in t.index and metric in t.columns else "-")
                     for w, t in per_world.items()}
            verdicts = [str(c).split(" (")[0] for c in cells.values()]
            rows.append({"claim": claim, "metric": metric, **cells,
                         "holds in": f"{verdicts.count('holds')} of {len(verdicts)}",
                         "reversed in": f"{verdicts.count('reversed')} of {len(verdicts)}"})
    return pd.DataFrame(rows)


def write_robustness(cfg: Config, root: Path, runs: Path, tables: list[tuple[int, pd.DataFrame]],
                     seconds: float) -> None:
    """The verdicts on the tuning world beside those on the fresh worlds (the tuning world's test rows are read
    from their pieces, run if missing)."""
    p = cfg.settings
    worlds = dict(tables)
    if p.tune_world not in worlds:
        worlds[p.tune_world] = run_world(cfg, root, runs, p.tune_world)[0]
    ordered = sorted(worlds.items(), key=lambda kv: (kv[0] != p.tune_world, kv[0]))
    write_report(root, "robustness", robustness_table(ordered), title=f"Robustness: GPR's ordering on "
                 f"{len(ordered)} worlds ({p.scenario}, {len(p.seeds)} seeds each)",
                 notes=f"Every world's settings come from the search on world {p.tune_world} (chosen.md): the "
                 "fresh worlds test whether the tuned methods and the verdicts transfer. Each cell is the "
                 "seed-paired difference (95% t-interval, benchmarks.stats) on that world's held-out test requests. "
                 f"Methods: {', '.join(p.methods)}. Wall time of this invocation {seconds:.0f} s (pieces already "
                 "done were reused).")


DIAGNOSTICS = {"losses/explained_variance": "critic explained variance", "final_value_mean": "candidate final_value",
               "charts/distinct_candidates": "distinct candidates share", "losses/approx_kl": "approx KL",
               "losses/clipfrac": "clip fraction"}
"""Training diagnostics averaged over each run's last ``DIAGNOSTIC_TAIL`` iterations (what explains a row)."""
DIAGNOSTIC_TAIL = 10


def diagnostics_table(curves: dict[str, list[list[dict]]]) -> pd.DataFrame:
    """Per method: each diagnostic's mean ± 95% t-interval over seeds of its last iterations' mean ('-': not
    logged by that method)."""
    rows = []
    for name, runs in curves.items():
        row: dict[str, object] = {"model": name, "seeds": len(runs)}
        for key, label in DIAGNOSTICS.items():
            values = [np.mean([r[key] for r in run[-DIAGNOSTIC_TAIL:] if key in r]) for run in runs
                      if any(key in r for r in run[-DIAGNOSTIC_TAIL:])]
            row[label] = str(t_interval(np.asarray(values))).lstrip("+") if values else "-"
        rows.append(row)
    return pd.DataFrame(rows)


def plot_curves(curves: dict[str, list[list[dict]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_ev) = plt.subplots(1, 2, figsize=(12, 4))
    for name in ("+DPO", "+HEPO", "+GRPO", "+V-STAR", "+UniVA", "HEPO cold critic", "HEPO w/o process rewards"):
        if name not in curves:
            continue
        runs = curves[name]
        x = np.array([r["simulator_calls"] for r in runs[0]])
        y = np.array([[r["final_value_mean"] for r in run] for run in runs])
        ax.plot(x, y.mean(axis=0), label=name)
        if len(runs) > 1:
            ax.fill_between(x, y.min(axis=0), y.max(axis=0), alpha=0.12)
        if "losses/explained_variance" in runs[0][0]:
            ev = np.array([[r["losses/explained_variance"] for r in run] for run in runs])
            ax_ev.plot(x, ev.mean(axis=0), label=name)
    ax.set_xlabel("simulator calls (scored candidate paths)")
    ax.set_ylabel("mean final_value of sampled candidates")
    ax.set_title("Learning curves (mean, min-max over seeds)")
    ax.legend(fontsize=8)
    ax_ev.set_xlabel("simulator calls")
    ax_ev.set_ylabel("explained variance of the returns (all levels)")
    ax_ev.set_title("HEPO's critic (before each update)")
    ax_ev.axhline(0, color="grey", lw=0.5)
    ax_ev.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------- main
def run_world(cfg: Config, root: Path, runs: Path, world: int) -> tuple[pd.DataFrame, dict, pd.DataFrame, dict]:
    p = cfg.settings
    searched = world if p.tune_world is None else p.tune_world
    # chains first (every later piece starts from one), then the search, then the test rows
    run_pieces(cfg, root, runs, [Piece("chain", world, s) for s in p.seeds])
    run_pieces(cfg, root, runs, [Piece("chain", searched, p.tune_seed), *search_pieces(p, searched)])
    knobs = base_knobs({name: {"overrides": o} for name, o in choose(p, root, searched)[1].items()})
    if knobs:
        run_pieces(cfg, root, runs, search_pieces(p, searched, knobs))
    search, best = choose(p, root, searched)
    tests = [Piece("test", world, s, name, _frozen(best[name])) for s in p.seeds for name in p.methods]
    run_pieces(cfg, root, runs, tests)
    rows, curves = [], {}
    for s in p.seeds:
        rows.extend(r for r in load_piece(root, p, Piece("chain", world, s))["rows"])
    for pc in tests:
        payload = load_piece(root, p, pc)
        rows.extend(payload["rows"])
        curves.setdefault(pc.method, []).append(payload["curve"])
    return pd.DataFrame(rows), curves, search, best


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_arguments(parser, Config, exclude=("settings",))
    add_dataclass_arguments(parser.add_argument_group("preset settings (defaults shown: the quick preset's)"), Preset)
    args = parser.parse_args(argv)
    cfg = dataclass_from_arguments(Config, args)
    settings = dataclass_from_arguments(Preset, args, PRESETS[cfg.preset])
    unknown = set(settings.methods) - set(BY_NAME)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {list(BY_NAME)}")
    cfg = replace(cfg, settings=settings)
    root, runs = cfg.out / cfg.preset, cfg.runs / cfg.preset

    started = time.perf_counter()
    all_runs, tables = [], []
    for world in settings.world_seeds:
        runs_df, curves, search, best = run_world(cfg, root, runs, world)
        suffix = "" if len(settings.world_seeds) == 1 else f"_world{world}"
        runs_df.to_csv(root / f"runs{suffix}.csv", index=False)
        plot_curves(curves, root / f"learning_curves{suffix}.png")
        write_report(root, f"diagnostics{suffix}", diagnostics_table(curves), title=f"Training diagnostics (world "
                     f"{world}): last {DIAGNOSTIC_TAIL} iterations of each test run",
                     notes="Mean ± 95% t-interval over seeds. candidate final_value: mean final_value of the K "
                     "candidates each iteration scored (sampled, beam, VED or MCTS-PPO paths, by the method's "
                     "sampler); distinct candidates share: distinct paths among the K; explained variance: of the "
                     "critic's (HEPO) or value head's (UniVA) returns, before each update.")
        searched = world if settings.tune_world is None else settings.tune_world
        if searched == world:
            write_report(root, f"search{suffix}", search, title=f"Hyper-parameter search (world {world}), "
                         f"validation requests of seed {settings.tune_seed}",
                         notes=f"Each method's cell with the best {SELECT} on validation requests is chosen; every "
                         f"cell spends the same simulator budget ({settings.iterations} x "
                         f"{settings.requests_per_iter} x {settings.candidates} scored paths). Ablations search lr "
                         f"with {' and '.join(ablated_bases(settings))} chosen knob.")
        chosen = pd.DataFrame([{"model": k, "settings": ", ".join(f"{kk}={v}" for kk, v in o.items())}
                               for k, o in best.items()])
        write_report(root, f"chosen{suffix}", chosen, title=f"Chosen post-training settings (world {world}, "
                     f"from the search on world {searched})")
        all_runs.append(runs_df)
        tables.append((world, runs_df))
    if settings.tune_world is not None:
        write_robustness(cfg, root, runs, tables, time.perf_counter() - started)
    runs_df = pd.concat(all_runs, ignore_index=True)
    for world, df in tables:
        suffix = "" if len(tables) == 1 else f"_world{world}"
        table = summarise(df.drop(columns="world"))
        keep = ["model", "seeds"] + metric_columns(table) + ["simulator_calls", "train_seconds"]
        verdict = verdict_table(df)
        for base in dict.fromkeys(BY_NAME[n].base for n in settings.methods if BY_NAME[n].ablation_of):
            short = base.strip("+")
            name = "ablations" if base == "+HEPO" else f"ablations_{short.lower().replace('-', '')}"
            write_report(root, f"{name}{suffix}", ablation_table(df, base), title=f"{short} ablations (world "
                         f"{world}): {short} minus each ablation, seed-paired",
                         notes=f"'holds': removing the part makes {short} worse (the explanation it backs is "
                         f"supported); 'reversed': {short} is better without it; 'not significant': the interval "
                         "covers 0.")
        notes = [f"Preset {cfg.preset}: {settings}.",
                 f"Wall time of this invocation {time.perf_counter() - started:.0f} s (pieces already done were "
                 "reused).",
                 "avg/max_over_oracle: average and best final_value of the K beam candidates divided by the "
                 "request's oracle (GPR's normalised avg/max final_value); normalised_score: (avg - random legal) / "
                 "(oracle - random legal). 'model' columns use the reward models the policies were trained "
                 "against, 'truth' columns the world's true pCTR/pCVR. Every post-training row used its settings "
                 "from the validation search (chosen.md).", "",
                 "GPR reports HEPO > DPO > VAFT > MTP on every column. Here (seed-paired difference, 95% "
                 "t-interval, benchmarks.stats):", "", verdict.to_markdown(index=False)]
        write_report(root, f"dpo_vs_hepo{suffix}", table[keep], title=f"DPO vs HEPO (GPR Table 3) on adsim "
                     f"({settings.scenario}, world {world})", notes="\n".join(notes))
    print(f"done in {time.perf_counter() - started:.0f} s", flush=True)
    return runs_df


if __name__ == "__main__":
    main()
