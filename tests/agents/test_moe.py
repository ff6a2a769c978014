"""UniVA's sparse MoE: sparse dispatch equals the dense reference, the bias steers selection and never the weights,
balancing spreads a collapsed router's load in training only, padding is neither routed nor counted, and an HHD with
MoE learns on tiny and restores its router's balance from a checkpoint."""

from __future__ import annotations

import pytest
import torch

from agents.hhd.model import HHD, HHDConfig, TypedFFN
from agents.hhd.moe import SparseMoE
from agents.hhd.sequences import SequenceConfig
from agents.hhd.testing import one_torch_thread  # noqa: F401  (autouse fixture)
from agents.hhd.train import TrainConfig, train
from envs.observation import TOKEN_PAD

C = 8


def moe(n_experts: int = 4, top_k: int = 2, bias_rate: float = 1e-3, seed: int = 0) -> SparseMoE:
    torch.manual_seed(seed)
    shared = TypedFFN(HHDConfig(n_embd=C, n_head=2, ffn_mult=2, token_aware_ffn=False), typed=False)
    return SparseMoE(shared, C, 6, n_experts, top_k, bias_rate)


def tokens(n: int = 30, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, n // 3, C, generator=g)
    types = torch.randint(1, 5, (3, n // 3), generator=g)
    types[:, :2] = TOKEN_PAD
    return x, types


def test_sparse_dispatch_equals_the_dense_reference():
    layer = moe().eval()
    x, types = tokens()
    torch.testing.assert_close(layer(x, types), layer.dense_reference(x, types), atol=1e-6, rtol=1e-5)


def test_gates_are_the_softmax_over_all_experts_and_the_bias_only_changes_which_are_chosen():
    """Hand numbers: router logits (0, log 2, log 3, log 4) for every token -> gates (0.1, 0.2, 0.3, 0.4); top-2 is
    experts 3 and 2 with weights 0.4 and 0.3; a +0.25 bias on expert 0 selects it instead of expert 2 with its
    own gate 0.1, not renormalised."""
    layer = moe()
    with torch.no_grad():
        layer.router.weight.zero_()
        layer.router.weight[:, 0] = torch.log(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    z = torch.zeros(2, C)
    z[:, 0] = 1.0
    chosen, weight = layer.route(z)
    assert chosen.tolist() == [[3, 2], [3, 2]]
    torch.testing.assert_close(weight, torch.tensor([[0.4, 0.3], [0.4, 0.3]]))
    layer.balance_bias[0] = 0.25
    chosen, weight = layer.route(z)
    assert chosen.tolist() == [[3, 0], [3, 0]]
    torch.testing.assert_close(weight, torch.tensor([[0.4, 0.1], [0.4, 0.1]]))


def test_balancing_spreads_a_collapsed_routers_load_in_training_only():
    layer = moe(bias_rate=0.02)
    with torch.no_grad():
        layer.router.weight.zero_()
        layer.router.weight[0] = 1.0  # expert 0 wins every token with x > 0 ...
        layer.router.weight[1] = 0.5  # ... expert 1 second: experts 2 and 3 starve
    x = torch.rand(3, 10, C) + 0.5
    types = torch.ones(3, 10, dtype=torch.long)

    def share_of_starved() -> float:
        chosen, _ = layer.route(x[types != 0])
        return float((chosen >= 2).float().mean())

    assert share_of_starved() == 0.0
    layer.eval()
    before = (layer.balance_bias.clone(), layer.load.clone())
    layer(x, types)
    assert torch.equal(layer.balance_bias, before[0]) and torch.equal(layer.load, before[1]), "eval must not balance"
    layer.train()
    shares = []
    for _ in range(300):
        layer(x, types)
        shares.append(share_of_starved())
    assert layer.balance_bias[0] < 0 < layer.balance_bias[3]
    assert sum(shares[-100:]) / 100 > 0.3, "the starved experts get about their share (0.5) on average"
    torch.testing.assert_close(layer.load.sum(), torch.tensor(2.0))


def test_padding_is_neither_routed_nor_counted_as_load():
    layer = moe(bias_rate=0.0).train()
    x, types = tokens()
    out = layer(x, types)
    assert torch.equal(out[types == TOKEN_PAD], layer.shared(x, types)[types == TOKEN_PAD])
    real = x[types != TOKEN_PAD]
    share = torch.bincount(layer.route(real)[0].flatten(), minlength=4).float() / len(real)
    torch.testing.assert_close(layer.load, torch.full((4,), 0.5).lerp(share, 0.1))


def test_bad_top_k_names_the_option():
    with pytest.raises(ValueError, match="moe_top_k"):
        HHDConfig(moe=True, n_experts=4, moe_top_k=5)
    with pytest.raises(ValueError, match="moe_top_k"):
        moe(n_experts=2, top_k=3)


def test_hhd_with_moe_learns_on_tiny_and_its_checkpoint_restores_the_balance(tmp_path):
    model = HHDConfig(n_embd=16, n_head=2, ffn_mult=2, n_thinking=2, refine_steps=2, mtp_heads=2, moe=True,
                      n_experts=4, moe_top_k=2, moe_bias_rate=1e-2)
    config = TrainConfig(data="tiny", model=model, seq=SequenceConfig(max_len=12, max_organic=6, max_ads=6),
                         steps=40, batch_size=32, lr=3e-3, log_every=1, warmup_steps=0, out=str(tmp_path))
    result = train(config, verbose=False)
    first, last = (sum(r["losses/total"] for r in rows) / len(rows)
                   for rows in (result.metrics[:5], result.metrics[-5:]))
    assert last < 0.8 * first, (first, last)
    layers = [m for m in result.model.modules() if isinstance(m, SparseMoE)]
    assert layers and all(m.balance_bias.abs().sum() > 0 for m in layers), "training moved the balancing bias"
    loaded, _ = HHD.from_checkpoint(str(result.checkpoint))
    for a, b in zip(layers, [m for m in loaded.modules() if isinstance(m, SparseMoE)], strict=True):
        assert torch.equal(a.balance_bias, b.balance_bias) and torch.equal(a.load, b.load)
