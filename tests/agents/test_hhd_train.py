"""Training: same seed same curve, exact resumption from a checkpoint, VAFT from a pre-trained model, the CLI."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from agents.checkpoint import Checkpoint
from agents.hhd.model import HHD, HHDConfig
from agents.hhd.sequences import SequenceConfig
from agents.hhd.testing import one_torch_thread  # noqa: F401  (autouse fixture)
from agents.hhd.train import TrainConfig, batch_indices, load_data, prepare, train

SMALL = HHDConfig(n_embd=16, n_head=2, ffn_mult=2, n_thinking=2, refine_steps=2, mtp_heads=2)


def config(out, **overrides) -> TrainConfig:
    base = dict(data="tiny", model=SMALL, seq=SequenceConfig(max_len=12, max_organic=6, max_ads=6), steps=4,
                batch_size=16, log_every=1, warmup_steps=0, min_lr_frac=1.0, out=str(out))
    return TrainConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def data():
    return load_data(config("unused"))


def losses(result) -> list[float]:
    return [row["losses/total"] for row in result.metrics]


def test_same_seed_same_curve(data, tmp_path):
    a = train(config(tmp_path / "a"), data, verbose=False)
    b = train(config(tmp_path / "b"), data, verbose=False)
    c = train(config(tmp_path / "c", seed=1), data, verbose=False)
    assert losses(a) == losses(b)
    assert losses(a) != losses(c)


def test_resume_gives_identical_next_steps(data, tmp_path):
    full = train(config(tmp_path / "full"), data, verbose=False)
    train(config(tmp_path / "cut", steps=2), data, verbose=False)  # "interrupted" after 2 steps
    resumed = train(config(tmp_path / "cut", resume=True), data, verbose=False)
    assert losses(resumed) == losses(full)
    for (name, p), q in zip(full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    saved = Checkpoint.load(resumed.checkpoint)
    assert (saved.trainer, saved.step, set(saved.state)) == ("agents.hhd.train", 4, {"normalisers"})
    assert saved.optimizer["state"] and saved.rng["torch"] is not None and saved.config["steps"] == 4


def test_checkpoint_loads_the_same_policy(data, tmp_path):
    result = train(config(tmp_path / "run", steps=2), data, verbose=False)
    loaded, ckpt = HHD.from_checkpoint(str(result.checkpoint))
    batch, _ = prepare(data.seqs.batch(data.train_idx[:5]), data, ckpt.state["normalisers"], config("x"), "cpu")
    a = result.model.get_action_and_value(batch)
    b = loaded.get_action_and_value(batch, paths=a.paths)
    torch.testing.assert_close(a.log_probs, b.log_probs)
    torch.testing.assert_close(a.values, b.values)


def test_vaft_fine_tunes_a_pretrained_model(data, tmp_path):
    pre = train(config(tmp_path / "pre", steps=2), data, verbose=False)
    vaft = config(tmp_path / "vaft", stage="vaft", init_from=str(pre.checkpoint), steps=2)
    action = data.seqs.samples["action"][data.train_idx]
    rows = np.concatenate([data.train_idx[action == a][:8] for a in (1, 2, 3)])
    norm = Checkpoint.load(pre.checkpoint).state["normalisers"]
    batch, _ = prepare(data.seqs.batch(rows), data, norm, vaft, "cpu")
    w, mask = batch.target_weight.numpy(), batch.target_mask.numpy()
    assert (w[~mask] == 0).all() and (w[mask] > 0).all()
    first = w[:, 0].reshape(3, -1).mean(axis=1)  # impressions, clicks, conversions as first target
    assert first[0] < first[1] < first[2]
    result = train(vaft, data, verbose=False)
    assert np.isfinite(losses(result)).all()


def test_batches_depend_on_seed_and_step_only():
    a = batch_indices(100, 16, seed=3, step=9)
    np.testing.assert_array_equal(a, batch_indices(100, 16, seed=3, step=9))
    epoch = np.concatenate([batch_indices(100, 16, seed=3, step=s) for s in range(6)])
    assert len(np.unique(epoch)) == 96  # one epoch: no repeats


def test_cli_help_and_tiny_run(tmp_path):
    help_text = subprocess.run([sys.executable, "-m", "agents.hhd.train", "--help"], capture_output=True, text=True,
                               check=True).stdout
    assert "--stage" in help_text and "--model.mtp-heads" in help_text
    out = subprocess.run([sys.executable, "-m", "agents.hhd.train", "--data", "tiny", "--steps", "2", "--batch-size",
                          "8", "--model.n-embd", "16", "--threads", "1", "--out", str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout
    assert "samples/s" in out and (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "metrics.csv").is_file()
