"""Fakes for tests and micro-benchmarks: a tiny model config, a random inventory and random well-formed batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.hhd.model import HHDConfig
from agents.hhd.sequences import Batch
from envs.observation import TOKEN_E, TOKEN_I, TOKEN_O, TOKEN_PAD, TOKEN_U

TINY_DIMS = dict(codebook_sizes=(3, 4, 5), user_vocab=(3, 2), env_vocab=(4,), max_len=8, n_embd=16, n_head=2,
                 ffn_mult=2, n_thinking=2, refine_steps=2)
"""Sizes of a few-thousand-parameter model over 3 levels of 3, 4 and 5 codes."""


def tiny_config(**overrides) -> HHDConfig:
    """Every component on, two MTP heads, ``TINY_DIMS``."""
    return HHDConfig(**{**TINY_DIMS, "mtp_heads": 2, **overrides})


def random_codes(sizes: tuple[int, ...], n_items: int, seed: int) -> np.ndarray:
    """(n_items, L) random SID paths inside the codebooks (duplicates allowed: collisions)."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, s, size=n_items) for s in sizes], axis=1)


def random_batch(config: HHDConfig, batch_size: int, item_codes: np.ndarray, seed: int, n_targets: int = 4) -> Batch:
    """Random sequences of config.max_len tokens: left padding, U, O/I tokens, E last; targets from ``item_codes``."""
    rng = np.random.default_rng(seed)
    B, T = batch_size, config.max_len
    n_events = rng.integers(0, T - 1, size=B)  # events between U and E
    col = np.arange(T)[None, :]
    first = T - 2 - n_events[:, None]  # column of U
    event = (col > first) & (col < T - 1)
    token_type = np.where(col == first, TOKEN_U, TOKEN_PAD)
    token_type = np.where(event, rng.choice([TOKEN_O, TOKEN_I], size=(B, T)), token_type)
    token_type[:, -1] = TOKEN_E
    items = rng.integers(0, len(item_codes), size=(B, T))
    codes = np.where(event[..., None], item_codes[items], -1)
    codes[..., -1] = np.where(token_type == TOKEN_O, -1, codes[..., -1])  # organic items: semantic levels only
    action = np.where(token_type == TOKEN_I, rng.integers(1, 4, size=(B, T)), 0)
    age = np.where(event, (T - col) * rng.uniform(30, 3_000, size=(B, 1)), 0.0).astype(np.float32)
    targets = rng.integers(0, len(item_codes), size=(B, n_targets))
    mask = np.ones((B, n_targets), dtype=bool)
    mask[:, 1:] = rng.random((B, n_targets - 1)) < 0.7
    return Batch(
        token_type=token_type, codes=codes, action=action, age=age,
        user_feats=np.stack([rng.integers(0, v, size=B) for v in config.user_vocab], axis=1),
        env_feats=np.stack([rng.integers(0, v, size=B) for v in config.env_vocab], axis=1),
        target_codes=item_codes[targets], target_mask=mask,
        target_action=rng.integers(1, 4, size=(B, n_targets)), target_index=targets,
    )


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Run a test module's many tiny torch ops on one thread: intra-op threading only adds overhead at these sizes
    (and stalls badly on a loaded 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
