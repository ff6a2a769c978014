"""The one checkpoint format: self-describing, atomic, exact resumption of every random stream, older layouts."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pytest
import torch

from agents.checkpoint import FORMAT, VERSION, Checkpoint, rng_state


@dataclass
class ToyConfig:
    width: int = 3


class Toy(torch.nn.Module):
    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        self.layer = torch.nn.Linear(config.width, 1)


@dataclass
class RunConfig:
    lr: float = 0.1


def run(model, optimizer, rng, generator, steps: int) -> list[float]:
    """A few updates drawing from all three streams: numpy, the run's torch generator, torch's global RNG."""
    losses = []
    for _ in range(steps):
        x = torch.as_tensor(rng.normal(size=(4, model.config.width)), dtype=torch.float32)
        noise = torch.randn(4, 1, generator=generator) + torch.randn(4, 1)
        loss = ((model.layer(x) - noise) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def fresh(seed: int = 0):
    torch.manual_seed(seed)
    model = Toy(ToyConfig())
    return model, torch.optim.AdamW(model.parameters(), lr=0.1), np.random.default_rng(seed), \
        torch.Generator().manual_seed(seed)


def test_save_load_resume_is_exact_and_atomic(tmp_path):
    model, optimizer, rng, generator = fresh()
    full = run(model, optimizer, rng, generator, 6)

    model, optimizer, rng, generator = fresh()
    first = run(model, optimizer, rng, generator, 3)
    path = Checkpoint.of("tests", model, optimizer, RunConfig(), 3, rng_state(rng, generator), curve=first).save(
        tmp_path / "checkpoint.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # the temporary file was renamed away
    raw = torch.load(path, weights_only=False)
    assert (raw["format"], raw["version"], raw["trainer"], raw["step"]) == (FORMAT, VERSION, "tests", 3)
    assert raw["model_config"] == {"width": 3} and raw["config"] == {"lr": 0.1}

    run(*fresh(seed=9), 2)  # disturb every global stream
    ckpt = Checkpoint.load(path)
    model, optimizer, rng, generator = fresh(seed=5)
    ckpt.restore(model, optimizer, rng, generator)
    assert ckpt.state["curve"] + run(model, optimizer, rng, generator, 3) == full


def test_older_trainer_layouts_still_load(tmp_path):
    model, optimizer, rng, generator = fresh()
    hhd = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": 7, "normalisers": {"a": 1.0},
           "config": {"train": {"lr": 0.1}, "model": asdict(model.config)},
           "rng": {"torch": torch.get_rng_state(), "cuda": None}}
    torch.save(hhd, tmp_path / "hhd.pt")
    ckpt = Checkpoint.load(tmp_path / "hhd.pt")
    assert (ckpt.trainer, ckpt.step, ckpt.model_config) == ("agents.hhd.train", 7, {"width": 3})
    assert ckpt.state == {"normalisers": {"a": 1.0}}
    ckpt.restore(*fresh()[:2])

    posttrain = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iteration": 2,
                 "config": {"posttrain": {"lr": 0.1}, "model": asdict(model.config)},
                 "rng": {"numpy": rng.bit_generator.state, "torch": generator.get_state(),
                         "torch_global": torch.get_rng_state()}, "curve": [{"iteration": 1}, {"iteration": 2}]}
    torch.save(posttrain, tmp_path / "posttrain.pt")
    ckpt = Checkpoint.load(tmp_path / "posttrain.pt")
    assert (ckpt.trainer, ckpt.step, len(ckpt.state["curve"])) == ("agents.posttrain.train", 2, 2)
    model, optimizer, rng2, generator2 = fresh(seed=3)
    ckpt.restore(model, optimizer, rng2, generator2)
    assert rng2.random() == rng.random() and torch.equal(torch.rand(2, generator=generator2),
                                                         torch.rand(2, generator=generator))


def test_anything_else_is_a_clear_error(tmp_path):
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an adsim checkpoint"):
        Checkpoint.load(tmp_path / "other.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="not an adsim checkpoint"):
        Checkpoint.load(tmp_path / "list.pt")
    torch.save({"format": FORMAT, "version": VERSION + 1}, tmp_path / "future.pt")
    with pytest.raises(ValueError, match="version"):
        Checkpoint.load(tmp_path / "future.pt")
    model, optimizer, _, generator = fresh()
    ckpt = Checkpoint.of("tests", model, optimizer, RunConfig(), 0, rng_state())
    with pytest.raises(ValueError, match="no generator RNG state"):
        ckpt.restore(model, optimizer, generator=generator)
