"""Train an HHD (or the HSTU baseline) on logged ad sequences: MTP pre-training, then value-aware fine-tuning.

    python -m agents.hhd.train --data tiny --steps 200 --out runs/hhd-tiny
    python -m agents.hhd.train --data tiny --stage vaft --init-from runs/hhd-tiny/checkpoint.pt --out runs/vaft
    python -m agents.hhd.train --data amazon --arch hstu --model.n-embd 64

Stages (GPR 4.2.4):
* ``pretrain``: multi-token prediction, head j learns the j-th next impression, every sample weighted 1.
* ``vaft``: the same loss with per-target weights w^V from action type and eCPM (impression: eCPM; click:
  eCPM / pCTR; conversion: eCPM / (pCTR pCVR)), divided by their training-split mean and clipped at ``vaft_clip``;
  each head's loss is a w^V-weighted mean, so the loss keeps NTP's scale. Where eCPM, pCTR and pCVR come from is a
  ``ValueSource``: until reward models exist, ``LoggedValues`` (the logging ranker's eCPM, smoothed per-ad rates).

The HTE value heads regress final_value = log1p(eCPM / mean eCPM) of the first target in both stages.

Every checkpoint (``agents.checkpoint``) holds the model, optimizer, configs, step, normalisers and torch RNG state;
batches are a function of (seed, step), so ``--resume`` continues with exactly the steps an uninterrupted run would
take.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

import adsim
from adsim.arguments import add_dataclass_arguments, dataclass_from_arguments
from adsim.trie import SidTrie
from agents.checkpoint import Checkpoint, rng_state
from agents.hhd.decoding import path_legal_masks, trie_legal
from agents.hhd.losses import vaft_raw_weights, vaft_weights
from agents.hhd.model import HHD, HHDConfig
from agents.hhd.sequences import AmazonSequences, Batch, ScenarioSequences, SequenceConfig, Sequences, scenario_sids
from reward_models.pipeline import ensure_scenario

TRAINER = "agents.hhd.train"
STAGES = ("pretrain", "vaft")
ValueSource = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
"""Sample indices (any shape) -> (eCPM, pCTR, pCVR) of those impressions, same shape."""


@dataclass
class TrainConfig:
    data: str = "tiny"
    """A scenario preset ("tiny", "small", ...), a bundle directory, or "amazon" (real sequences)."""
    data_seed: int = 0
    """Seed of a preset scenario."""
    seed: int = 0
    """Seeds the model init, the batch order and the refiner's noise."""
    arch: Literal["hhd", "hstu"] = "hhd"
    """Starting model config: "hhd" (every component on) or "hstu" (the baseline); --model.* overrides it."""
    model: HHDConfig = field(default_factory=HHDConfig)
    seq: SequenceConfig = field(default_factory=SequenceConfig)
    stage: Literal["pretrain", "vaft"] = "pretrain"
    """"pretrain" (MTP) or "vaft" (value-aware fine-tuning)."""
    init_from: str | None = None
    """Checkpoint whose weights start this run (VAFT after pre-training); its model config is used."""
    steps: int = 200
    batch_size: int = 256
    lr: float = 3e-3
    min_lr_frac: float = 0.1
    """Cosine decay to lr * this."""
    warmup_steps: int = 20
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    max_train_samples: int | None = None
    """Use a seeded subset of the training split."""
    masked_training: bool = True
    """Softmax of every level over the codes the global trie allows after the target's prefix."""
    vaft_clip: float = 10.0
    """Largest normalised VAFT weight."""
    log_every: int = 20
    checkpoint_every: int = 0
    """Also checkpoint every this many steps (0: only at the end)."""
    out: str = "runs/hhd"
    resume: bool = False
    """Continue from out/checkpoint.pt."""
    device: str = "cpu"
    threads: int | None = None
    """torch CPU threads (None: torch's default)."""

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.arch not in ("hhd", "hstu"):
            raise ValueError(f"arch must be 'hhd' or 'hstu', got {self.arch!r}")


class LoggedValues:
    """eCPM = the logging ranker's ``ranking_ecpm``; pCTR, pCVR = each ad's training-split rates, shrunk towards
    the global rate by ``prior`` pseudo-impressions (pseudo-clicks), so rare ads get sane estimates."""

    def __init__(self, seqs: Sequences, train_idx: np.ndarray, prior: float = 20.0):
        s = seqs.samples
        ad, action = s["ad_id"][train_idx], s["action"][train_idx]
        n_items = len(seqs.item_codes)
        imps = np.bincount(ad, minlength=n_items).astype(np.float64)
        clicks = np.bincount(ad, weights=action >= 2, minlength=n_items)
        convs = np.bincount(ad, weights=action == 3, minlength=n_items)
        ctr = clicks.sum() / max(imps.sum(), 1.0)
        cvr = convs.sum() / max(clicks.sum(), 1.0)
        self.pctr = np.clip((clicks + prior * ctr) / (imps + prior), 1e-4, 1.0)
        self.pcvr = np.clip((convs + prior * cvr) / (clicks + prior), 1e-4, 1.0)
        self.ecpm, self.ad = s["ranking_ecpm"], s["ad_id"]

    def __call__(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ad = self.ad[idx]
        return self.ecpm[idx], self.pctr[ad], self.pcvr[ad]


@dataclass
class TrainData:
    """What a run needs besides its config; build once and share between runs (the benchmarks do)."""

    seqs: Sequences
    trie: SidTrie
    train_idx: np.ndarray
    values: ValueSource
    scenario: adsim.Scenario | None = None


def load_data(config: TrainConfig) -> TrainData:
    if config.data == "amazon":
        seqs: Sequences = AmazonSequences(config=config.seq)
        scenario = None
        split = "valid"  # the files hold valid + test windows only: train on valid, test on test
    else:
        scenario = ensure_scenario(config.data, seed=config.data_seed, progress=False)
        seqs = ScenarioSequences(scenario, scenario_sids(scenario), config.seq)
        split = "train"
    train_idx = seqs.indices(split)
    if config.max_train_samples is not None and config.max_train_samples < len(train_idx):
        pick = np.random.default_rng(config.data_seed).choice(len(train_idx), config.max_train_samples, replace=False)
        train_idx = np.sort(train_idx[pick])
    trie = SidTrie(seqs.item_codes, seqs.codebook_sizes)
    return TrainData(seqs, trie, train_idx, LoggedValues(seqs, seqs.indices(split)), scenario)


def model_config(config: TrainConfig, seqs: Sequences) -> HHDConfig:
    """The run's model config with the data-given fields (codebooks, feature vocabularies, length) filled in."""
    return replace(config.model, codebook_sizes=seqs.codebook_sizes, user_vocab=seqs.user_vocab,
                   env_vocab=seqs.env_vocab, max_len=seqs.config.max_len)


def normalisers(data: TrainData) -> dict[str, float]:
    """Training-split means that scale the VAFT weights and the value targets to ~1."""
    idx = data.train_idx
    ecpm, pctr, pcvr = data.values(idx)
    raw = vaft_raw_weights(data.seqs.samples["action"][idx], ecpm, pctr, pcvr)
    return {"vaft_scale": float(raw.mean()), "ecpm_scale": float(max(ecpm.mean(), 1e-12))}


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Positions of step ``step``'s batch: epoch e is a fresh permutation seeded by (seed, e); drops the tail."""
    per_epoch = max(n // batch_size, 1)
    epoch, k = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return perm[k * batch_size:(k + 1) * batch_size]


def prepare(batch: Batch, data: TrainData, norm: dict[str, float], config: TrainConfig,
            device: str) -> tuple[Batch, torch.Tensor | None]:
    """Attach VAFT weights and value targets, move to ``device``; the global-trie masks for masked training."""
    safe = np.maximum(batch.target_index, 0)
    ecpm, pctr, pcvr = data.values(safe)
    if config.stage == "vaft":
        w = vaft_weights(batch.target_action, ecpm, pctr, pcvr, norm["vaft_scale"], config.vaft_clip)
        batch.target_weight = np.where(batch.target_mask, w, 0.0).astype(np.float32)
    batch.target_value = np.log1p(ecpm[:, 0] / norm["ecpm_scale"]).astype(np.float32)
    legal = None
    if config.masked_training:
        legal = path_legal_masks(trie_legal(data.trie), torch.as_tensor(batch.target_codes)).to(device)
    return batch.to(device), legal


def lr_at(config: TrainConfig, step: int) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
    return config.lr * (config.min_lr_frac + (1 - config.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class TrainResult:
    model: HHD
    checkpoint: Path
    metrics: list[dict]
    """One row per logged step (what metrics.csv holds)."""


def train(config: TrainConfig, data: TrainData | None = None, verbose: bool = True) -> TrainResult:
    # ------------------------------------------------------------------------------------------ setup
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, csv_path = out / "checkpoint.pt", out / "metrics.csv"
    data = data or load_data(config)
    torch.manual_seed(config.seed)
    if config.init_from:
        model, init = HHD.from_checkpoint(config.init_from, config.device)
        norm = init.state["normalisers"]
    else:
        model, norm = HHD(model_config(config, data.seqs)).to(config.device), normalisers(data)
    model.train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    start, rows = 0, []
    if config.resume and ckpt_path.is_file():
        ckpt = Checkpoint.load(ckpt_path, config.device)
        ckpt.restore(model, optimizer)
        start, norm = ckpt.step, ckpt.state["normalisers"]
        if csv_path.is_file():
            with open(csv_path) as f:
                rows = [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)
                        if int(float(r["step"])) <= start]
    if verbose:
        print(f"{config.arch} on {config.data}: {model.num_parameters():,} parameters, {len(data.train_idx):,} "
              f"training samples, stage {config.stage}, steps {start}..{config.steps}")

    def save(step: int) -> None:
        Checkpoint.of(TRAINER, model, optimizer, config, step, rng_state(), normalisers=norm).save(ckpt_path)

    (out / "config.json").write_text(json.dumps({"train": asdict(config), "model": model.config.to_dict()},
                                                indent=2, default=str) + "\n")

    # ------------------------------------------------------------------------------------------ loop
    t0, seen = time.perf_counter(), 0
    for step in range(start, config.steps):
        # batch
        pos = batch_indices(len(data.train_idx), config.batch_size, config.seed, step)
        batch, legal = prepare(data.seqs.batch(data.train_idx[pos]), data, norm, config, config.device)
        # update
        for group in optimizer.param_groups:
            group["lr"] = lr_at(config, step)
        losses = model.loss(batch, legal)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        seen += len(batch)
        # logging
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            sps = seen / (time.perf_counter() - t0)
            row = {"step": step + 1, "charts/lr": optimizer.param_groups[0]["lr"], "charts/samples_per_s": sps,
                   "losses/total": losses["total"].item(), "losses/mtp": losses["loss"].item(),
                   "losses/refine": losses["refine"].item(), "losses/grad_norm": grad_norm.item()}
            if "value" in losses:
                row["losses/value"] = losses["value"].item()
            row |= {f"losses/nll_level{i}": v for i, v in enumerate(losses["per_level"].tolist())}
            row |= {f"charts/head_weight{j}": v for j, v in enumerate(model.log_head_weights().exp().tolist())}
            rows.append(row)
            if verbose:
                print(f"step {step + 1:>6}  loss {row['losses/total']:.4f}  {sps:,.0f} samples/s")
        if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0:
            save(step + 1)

    # ------------------------------------------------------------------------------------------ save
    save(config.steps)
    if rows:
        names = list(dict.fromkeys(k for r in rows for k in r))
        with open(csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=names)
            writer.writeheader()
            writer.writerows(rows)
    return TrainResult(model.eval(), ckpt_path, rows)


# ---------------------------------------------------------------------------------------------------- CLI
def parse_config(argv: list[str] | None = None) -> TrainConfig:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dataclass_arguments(parser, TrainConfig, exclude=[f"model.{name}" for name in HHDConfig.FROM_DATA])
    args = parser.parse_args(argv)
    base = TrainConfig(model=HHDConfig.hstu()) if getattr(args, "arch", None) == "hstu" else None
    return dataclass_from_arguments(TrainConfig, args, base)


def main(argv: list[str] | None = None) -> None:
    config = parse_config(argv)
    result = train(config)
    print(f"checkpoint: {result.checkpoint}")


if __name__ == "__main__":
    main()
