"""HHD model: attention masks, MTP = NTP at one head, the head mixture is a distribution, every flag runs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from agents.hhd.losses import mtp_loss
from agents.hhd.model import ABLATIONS, HHD, HHDConfig
from agents.hhd.testing import (
    TINY_DIMS,
    one_torch_thread,  # noqa: F401  (autouse fixture)
    random_batch,
    random_codes,
    tiny_config,
)
from envs.observation import TOKEN_E, TOKEN_I, TOKEN_O, TOKEN_PAD, TOKEN_U


def visibility(config: HHDConfig, types: list[int]) -> np.ndarray:
    mask = HHD(config).hsd.attention_mask(torch.tensor([types]))[0, 0]  # (T, T)
    return (mask > 0).numpy()


def test_hybrid_mask_prefix_bidirectional_items_causal():
    types = [TOKEN_PAD, TOKEN_U, TOKEN_O, TOKEN_I, TOKEN_O, TOKEN_I, TOKEN_E]
    seen = visibility(tiny_config(max_len=7), types)
    assert seen.shape == (7, 7)
    prefix = [1, 2, 4, 6]
    for i, j in itertools.product(range(7), range(7)):
        if j == 0:
            expected = False  # padding is never a key
        elif i in prefix and j in prefix:
            expected = True  # U/O/E see each other both ways
        else:
            expected = j <= i  # I-tokens (as query or key) are causal
        assert seen[i, j] == expected, (i, j)


def test_hstu_mask_is_causal():
    types = [TOKEN_PAD, TOKEN_U, TOKEN_O, TOKEN_I, TOKEN_O, TOKEN_I, TOKEN_E]
    seen = visibility(tiny_config(max_len=7, hybrid_attention=False), types)
    expected = np.tril(np.ones((7, 7), dtype=bool))
    expected[:, 0] = False
    np.testing.assert_array_equal(seen, expected)


def test_attention_rows_are_normalised_by_visible_keys():
    mask = HHD(tiny_config(max_len=5)).hsd.attention_mask(torch.tensor([[0, 1, 2, 4, 3]]))[0, 0]
    rows = mask.sum(dim=-1)
    np.testing.assert_allclose(rows[1:].numpy(), 1.0, rtol=1e-6)


def test_mtp_loss_known_answer():
    nll = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]])  # (B=2, N=2, L=2)
    mask = torch.tensor([[True, True], [True, False]])
    weight = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    log_w = torch.log(torch.tensor([0.25, 0.75]))
    out = mtp_loss(nll, mask, weight, log_w, entropy_coef=0.5)
    head0 = (1 * 3 + 3 * 11) / 4  # weighted mean of summed levels
    head1 = 7.0  # only row 0 exists
    entropy = -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))
    np.testing.assert_allclose(out["per_head"].numpy(), [head0, head1], rtol=1e-6)
    np.testing.assert_allclose(out["loss"].item(), 0.25 * head0 + 0.75 * head1 - 0.5 * entropy, rtol=1e-6)


def test_mtp_loss_equals_ntp_with_one_head():
    config = tiny_config(mtp_heads=1, refining=False, hte=False)
    codes = random_codes(config.codebook_sizes, 30, seed=0)
    torch.manual_seed(0)
    model = HHD(config)
    batch = random_batch(config, 6, codes, seed=1).to("cpu")
    loss = model.loss(batch)["total"]
    logits = model.heads.teacher_forced(model.encode(batch).memory, batch.target_codes[:, :1])[:, 0]  # (B, L, W)
    logits = logits.masked_fill(~model.heads.in_codebook, float("-inf"))
    ntp = F.cross_entropy(logits.reshape(-1, config.width), batch.target_codes[:, 0].reshape(-1), reduction="none")
    torch.testing.assert_close(loss, ntp.view(6, -1).sum(dim=1).mean())


def all_paths(sizes: tuple[int, ...]) -> torch.Tensor:
    return torch.tensor(list(itertools.product(*(range(s) for s in sizes))))


def test_head_mixture_is_a_distribution_over_paths():
    config = tiny_config(mtp_heads=3)
    torch.manual_seed(0)
    model = HHD(config).eval()
    with torch.no_grad():
        model.head_logits.copy_(torch.tensor([0.3, -1.0, 0.5]))
    codes = random_codes(config.codebook_sizes, 10, seed=0)
    batch = random_batch(config, 1, codes, seed=2).to("cpu")
    paths = all_paths(config.codebook_sizes)  # every path of the codebook
    enc = model.encode(batch)
    memory = enc.memory.expand(len(paths), -1, -1)
    with torch.no_grad():
        out = model.walk(enc._replace(memory=memory), paths=paths)
        total = out.log_probs.sum(dim=1)
        np.testing.assert_allclose(torch.logsumexp(total, 0).item(), 0.0, atol=1e-5)
        # the mixture's path log-prob is log sum_j w_j P_j(path)
        per_head = []
        for j in range(3):
            lp = 0
            for level in range(config.depth):
                logits = model.heads.level_logits(memory, paths[:, :level])[:, j]
                logits = logits.masked_fill(~model.heads.in_codebook[level], float("-inf"))
                lp = lp + F.log_softmax(logits, -1).gather(1, paths[:, level:level + 1])[:, 0]
            per_head.append(lp)
        expected = torch.logsumexp(torch.stack(per_head, 1) + model.log_head_weights(), dim=1)
        torch.testing.assert_close(total, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("component", sorted(ABLATIONS))
def test_each_component_alone_trains_and_decodes(component):
    config = HHDConfig.hstu(**{**TINY_DIMS, **ABLATIONS[component]})
    codes = random_codes(config.codebook_sizes, 20, seed=0)
    torch.manual_seed(0)
    model = HHD(config)
    batch = random_batch(config, 5, codes, seed=3)
    batch.target_value = np.ones(5, dtype=np.float32)
    out = model.loss(batch.to("cpu"))
    out["total"].backward()
    assert torch.isfinite(out["total"])
    policy = model.eval().get_action_and_value(batch.to("cpu"))
    assert policy.paths.shape == (5, 3) and torch.isfinite(policy.log_probs).all()
    assert (policy.values is not None) == config.hte


def test_value_heads_do_not_move_the_backbone():
    config = tiny_config()
    model = HHD(config)
    batch = random_batch(config, 4, random_codes(config.codebook_sizes, 20, seed=0), seed=4).to("cpu")
    values = model.value.path_values(model.encode(batch).memory, batch.target_codes[:, 0])
    values.sum().backward()
    assert all(p.grad is None for p in model.hsd.parameters())
    assert any(p.grad is not None for p in model.value.parameters())


def test_eval_mode_is_deterministic_despite_refining_noise():
    config = tiny_config(refining=True)
    model = HHD(config).eval()
    batch = random_batch(config, 4, random_codes(config.codebook_sizes, 20, seed=0), seed=5).to("cpu")
    torch.testing.assert_close(model.encode(batch).memory, model.encode(batch).memory)


def test_mor_adds_depth_not_parameters():
    with_mor, without = HHD(tiny_config(mor=True, n_recursions=3)), HHD(tiny_config(mor=False))
    assert with_mor.num_parameters() == without.num_parameters()
    assert len(with_mor.hsd.schedule) == len(without.hsd.schedule) + 2
