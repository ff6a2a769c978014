"""UniVA's sparse Mixture-of-Experts FFN (univa_paper.txt eq. 8-9) with bias-based dynamic load balancing.

    g(z) = softmax(W_r z),    y = E_0(z) + sum_{m in TopK(g(z) + b, K)} g_m(z) E_m(z)

E_0 is the always-active shared expert (the block's usual FFN, token-aware when ``token_aware_ffn``); the N routed
experts are small FFNs shared by every token type. The balancing bias b (DeepSeek-V3's auxiliary-loss-free rule,
which UniVA's "overloaded experts receive lower bias" describes) enters only the top-K *selection*, never the gate
weights, so it steers load without adding a loss term: after each training forward pass the router's load (an EMA of
the share of tokens sent to each expert) moves b down by ``bias_rate`` for experts above the mean load and up for
those below. Padding tokens neither get routed nor count as load; in eval mode b and the load are frozen. Both are
buffers, so a checkpoint restores the router's balance with its weights.

``SparseMoE.forward`` dispatches each expert's tokens only (conditional computation); ``dense_reference`` evaluates
every expert on every token and masks, the plain reference the parity test holds it to.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SparseMoE(nn.Module):
    """``shared`` (E_0, called as ``shared(x, token_type)``) plus ``n_experts`` routed FFNs of width ``hidden``, the
    top ``top_k`` per token; buffers ``balance_bias`` (b) and ``load`` (EMA of each expert's share of routed tokens,
    summing to ``top_k``)."""

    def __init__(self, shared: nn.Module, n_embd: int, hidden: int, n_experts: int, top_k: int,
                 bias_rate: float = 1e-3, load_momentum: float = 0.1):
        super().__init__()
        if not 1 <= top_k <= n_experts:
            raise ValueError(f"moe_top_k must be in [1, n_experts={n_experts}], got {top_k}")
        if bias_rate < 0 or not 0 < load_momentum <= 1:
            raise ValueError(f"moe_bias_rate must be >= 0 and the load momentum in (0, 1], got {bias_rate}, "
                             f"{load_momentum}")
        self.shared, self.top_k, self.bias_rate, self.load_momentum = shared, top_k, bias_rate, load_momentum
        self.router = nn.Linear(n_embd, n_experts, bias=False)
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(n_embd, hidden), nn.GELU(), nn.Linear(hidden, n_embd))
                                     for _ in range(n_experts))
        self.register_buffer("balance_bias", torch.zeros(n_experts))
        self.register_buffer("load", torch.full((n_experts,), top_k / n_experts))

    @property
    def n_experts(self) -> int:
        return len(self.experts)

    def route(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(M, C) tokens -> (M, K) chosen experts and their gate weights g_m (softmax over all N, not renormalised)."""
        gates = F.softmax(self.router(z), dim=-1)
        chosen = torch.topk(gates.detach() + self.balance_bias, self.top_k, dim=-1).indices
        return chosen, gates.gather(-1, chosen)

    def forward(self, x: torch.Tensor, token_type: torch.Tensor) -> torch.Tensor:
        out = self.shared(x, token_type)
        rows = token_type != 0  # padding is never attended to: it is neither routed nor counted as load
        if not rows.any():
            return out
        z = x[rows]
        chosen, weight = self.route(z)
        routed = torch.zeros_like(z)
        for m, expert in enumerate(self.experts):
            token, slot = (chosen == m).nonzero(as_tuple=True)
            if len(token):
                routed = routed.index_add(0, token, weight[token, slot, None] * expert(z[token]))
        if self.training:
            self._balance(chosen)
        out = out.clone()
        out[rows] = out[rows] + routed
        return out

    def dense_reference(self, x: torch.Tensor, token_type: torch.Tensor) -> torch.Tensor:
        """Every expert on every token, masked to the chosen ones: what ``forward`` computes, plainly (no balancing)."""
        rows = token_type != 0
        z = x[rows]
        chosen, weight = self.route(z)
        all_out = torch.stack([expert(z) for expert in self.experts], dim=1)  # (M, N, C)
        mask = torch.zeros(len(z), self.n_experts, dtype=z.dtype).scatter(1, chosen, weight)
        out = self.shared(x, token_type).clone()
        out[rows] = out[rows] + (mask[..., None] * all_out).sum(1)
        return out

    @torch.no_grad()
    def _balance(self, chosen: torch.Tensor) -> None:
        share = torch.bincount(chosen.flatten(), minlength=self.n_experts).to(self.load) / len(chosen)
        self.load.lerp_(share, self.load_momentum)
        self.balance_bias -= self.bias_rate * torch.sign(self.load - self.load.mean())
