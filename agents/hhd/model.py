"""The Heterogeneous Hierarchical Decoder (GPR 4.2.2): HSD encoder, PTD generator and HTE value heads.

Every part is a config flag, so an ablation is one field and the HSTU baseline is the same code with all of them off
(``HHDConfig.hstu()``): causal attention, shared norms and FFN, no recursion, one SID head reading the last state.

* HSD: HSTU blocks (SiLU pointwise attention, the U-gate, relative position and time biases) over the U/O/E/I
  sequence. ``hybrid_attention`` lets U/O/E tokens see each other both ways while I-tokens stay causal;
  ``token_aware_norm`` / ``token_aware_ffn`` give each token type its own LayerNorm / FFN; ``mor`` applies the
  middle block ``n_recursions`` times (more depth, same parameters); ``moe`` swaps each FFN for UniVA's sparse
  Mixture-of-Experts (a shared expert plus top-K routed ones, ``agents.hhd.moe``).
* PTD: ``thinking`` distils the intent embeddings into K thinking tokens by cross-attention; ``refining`` adds a
  token made by a few reverse steps of a small conditional denoiser from the noised, sum-pooled thinking state
  (deterministic in eval mode, so a policy's log-probs do not depend on noise); then ``mtp_heads`` parallel heads
  each decode an L-level SID path level by level, every level conditioned on the codes before it.
* HTE: on stop-gradient memory, a root value and, for every prefix, the value of each child code (UniVA's
  vocabulary-level value head); ``values`` of a path are (root, value after level 1, ..., after level L).

The policy over paths is the heads' mixture with simplex weights w = softmax(a): P(path) = sum_j w_j P_j(path). Its
per-level conditionals are exact (``mixture_step``), so beam search, sampling and RL ratios all use one distribution;
with one head it is plain next-token prediction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from agents.checkpoint import Checkpoint
from agents.hhd.losses import mtp_loss
from agents.hhd.moe import SparseMoE
from agents.hhd.sequences import N_ACTIONS, Batch
from envs.observation import N_TOKEN_TYPES, TOKEN_E, TOKEN_I, TOKEN_PAD, TOKEN_U

LegalFn = Callable[[torch.Tensor], torch.Tensor]
"""Maps code prefixes ``(..., l)`` to the legal next codes ``(..., W)`` (bool), on their device; from
``decoding.TorchTrie.legal``."""


@dataclass
class HHDConfig:
    codebook_sizes: tuple[int, ...] = (128, 128, 256)
    """Codes per SID level (from the data)."""
    user_vocab: tuple[int, ...] = (6, 2, 16, 6, 3)
    """Embedding sizes of the U-token features (from the data)."""
    env_vocab: tuple[int, ...] = (24, 3, 3, 3, 2, 4)
    """Embedding sizes of the E-token features (from the data)."""
    max_len: int = 32
    n_embd: int = 64
    n_head: int = 2
    dropout: float = 0.0
    ffn_mult: int = 4
    n_time_buckets: int = 24
    """log2-minute buckets of the time between two tokens (relative time bias)."""
    hybrid_attention: bool = True
    """HSD: bidirectional among U/O/E tokens, causal for I-tokens (else causal everywhere)."""
    token_aware_norm: bool = True
    token_aware_ffn: bool = True
    mor: bool = True
    """Mixture-of-Recursions: the middle block runs ``n_recursions`` times (else once)."""
    n_recursions: int = 2
    thinking: bool = True
    """PTD thinking tokens (else the SID heads read the E-token's intent embedding only)."""
    n_thinking: int = 4
    refining: bool = True
    refine_steps: int = 3
    """Reverse diffusion steps of the refining module."""
    refine_loss_coef: float = 0.1
    hte: bool = True
    """Value heads (needed for value-guided decoding and as the RL critic)."""
    value_loss_coef: float = 0.5
    gar: bool = False
    """UniVA's Generation-as-Ranking: every level's policy is softmax(generation logits + HTE child values), so
    the value head votes in each next-code decision (needs ``hte``; the SL loss still trains the generation
    head alone, ``HHD.loss``)."""
    moe: bool = False
    """UniVA's sparse MoE FFN (``agents.hhd.moe``): the block's FFN becomes the shared expert E_0 plus the top
    ``moe_top_k`` of ``n_experts`` routed experts per token, balanced by a selection bias (no auxiliary loss)."""
    n_experts: int = 8
    moe_top_k: int = 2
    moe_bias_rate: float = 1e-3
    """Step of the balancing bias per training forward pass (0: no balancing)."""
    mtp_heads: int = 4
    """Parallel SID heads; 1 is plain next-token prediction."""
    head_entropy_coef: float = 1.0
    """tau in sum_j w_j L_j - tau H(w): the head weights settle at w_j ~ exp(-L_j / tau) instead of collapsing."""

    FROM_DATA: ClassVar[tuple[str, ...]] = ("codebook_sizes", "user_vocab", "env_vocab", "max_len")
    """Fields the training data sets (``train.model_config``); not command-line options."""

    def __post_init__(self) -> None:
        for name in ("codebook_sizes", "user_vocab", "env_vocab"):
            setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} must be divisible by n_head {self.n_head}")
        if self.mtp_heads < 1 or self.n_recursions < 1 or self.refine_steps < 1:
            raise ValueError("mtp_heads, n_recursions and refine_steps must be >= 1")
        if self.moe and not 1 <= self.moe_top_k <= self.n_experts:
            raise ValueError(f"moe_top_k must be in [1, n_experts={self.n_experts}], got {self.moe_top_k}")
        if self.gar and not self.hte:
            raise ValueError("gar (Generation-as-Ranking) fuses the HTE value head into the policy: it needs hte")

    @property
    def depth(self) -> int:
        return len(self.codebook_sizes)

    @property
    def width(self) -> int:
        return max(self.codebook_sizes)

    @classmethod
    def hstu(cls, **overrides) -> HHDConfig:
        """The HSTU decoder-only baseline: every HHD component off, one SID head on the last state."""
        off = dict(hybrid_attention=False, token_aware_norm=False, token_aware_ffn=False, mor=False,
                   thinking=False, refining=False, hte=False, mtp_heads=1)
        return cls(**{**off, **overrides})

    def to_dict(self) -> dict:
        return asdict(self)


ABLATIONS: dict[str, dict] = {
    "hybrid_attention": {"hybrid_attention": True},
    "token_aware_ffn": {"token_aware_ffn": True},
    "token_aware_norm": {"token_aware_norm": True},
    "mor": {"mor": True},
    "thinking": {"thinking": True},
    "refining": {"refining": True},
    "hte": {"hte": True},
    "mtp": {"mtp_heads": 4},
    "moe": {"moe": True},
}
"""GPR Table 2 rows (and UniVA's sparse MoE): the field changes that add one component to the HSTU baseline."""


def mixture_step(log_w: torch.Tensor, cum: torch.Tensor, head_lp: torch.Tensor) -> torch.Tensor:
    """log P_mix(code | prefix) (..., W) of the head mixture, one level.

    P_mix(c | p) = sum_j w_j P_j(p) P_j(c | p) / sum_j w_j P_j(p): each head's vote is weighted by how much it
    believed in the prefix so far. After choosing c, a head's prefix log-prob grows by ``head_lp[..., j, c]``.

    Args:
        log_w: (N,) log head weights.
        cum: (..., N) each head's log-prob of the prefix so far.
        head_lp: (..., N, W) each head's log-probs of the next code.
    """
    if head_lp.shape[-2] == 1:
        return head_lp[..., 0, :]
    posterior = torch.log_softmax(log_w + cum, dim=-1)  # (..., N) head weights given the prefix
    return torch.logsumexp(head_lp + posterior[..., None], dim=-2)


def nonempty(mask: torch.Tensor) -> torch.Tensor:
    """Rows of a (..., W) legal mask with no legal code become all-legal."""
    return mask | ~mask.any(dim=-1, keepdim=True)


# ---------------------------------------------------------------------------------------------------- HSD
class TypedLayerNorm(nn.Module):
    """LayerNorm with one (gain, bias) per token type, or one shared pair."""

    def __init__(self, config: HHDConfig, typed: bool):
        super().__init__()
        n = N_TOKEN_TYPES if typed else 1
        self.typed = typed
        self.weight = nn.Parameter(torch.ones(n, config.n_embd))
        self.bias = nn.Parameter(torch.zeros(n, config.n_embd))

    def forward(self, x: torch.Tensor, token_type: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x, x.shape[-1:])
        if not self.typed:
            return x * self.weight[0] + self.bias[0]
        return x * self.weight[token_type] + self.bias[token_type]  # (B, T, C)


def mlp(n_in: int, n_hidden: int, n_out: int, dropout: float = 0.0) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_hidden), nn.GELU(), nn.Linear(n_hidden, n_out), nn.Dropout(dropout))


class TypedFFN(nn.Module):
    """One FFN per token type (each token goes through its own type's FFN only), or one shared FFN."""

    def __init__(self, config: HHDConfig, typed: bool):
        super().__init__()
        C, n = config.n_embd, N_TOKEN_TYPES if typed else 1
        self.ffns = nn.ModuleList(mlp(C, config.ffn_mult * C, C, config.dropout) for _ in range(n))

    def forward(self, x: torch.Tensor, token_type: torch.Tensor) -> torch.Tensor:
        if len(self.ffns) == 1:
            return self.ffns[0](x)
        out = torch.zeros_like(x)
        for t in range(1, len(self.ffns)):  # padding (type 0) is never attended to: leave it at zero
            rows = token_type == t
            if rows.any():
                out[rows] = self.ffns[t](x[rows])
        return out


class HSTUBlock(nn.Module):
    """HSTU: U, V, Q, K = SiLU(f1(x)); A = SiLU(QK^T / sqrt(d) + rab) masked, / visible keys; y = f2(Norm(AV) * U)."""

    def __init__(self, config: HHDConfig):
        super().__init__()
        C, T = config.n_embd, config.max_len
        self.n_head = config.n_head
        self.norm = TypedLayerNorm(config, config.token_aware_norm)
        self.uvqk = nn.Linear(C, 4 * C)
        self.attn_norm = nn.LayerNorm(C)
        self.proj = nn.Linear(C, C)
        self.pos_bias = nn.Parameter(torch.zeros(2 * T - 1, config.n_head))
        self.time_bias = nn.Parameter(torch.zeros(config.n_time_buckets, config.n_head))
        self.ffn_norm = TypedLayerNorm(config, config.token_aware_norm)
        self.ffn = TypedFFN(config, config.token_aware_ffn)
        if config.moe:  # routed experts of ffn_mult * C / K each: the K active ones cost one dense FFN
            self.ffn = SparseMoE(self.ffn, C, max(1, config.ffn_mult * C // config.moe_top_k), config.n_experts,
                                 config.moe_top_k, config.moe_bias_rate)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, token_type: torch.Tensor, mask: torch.Tensor, rel_pos: torch.Tensor,
                time_bucket: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        H = self.n_head
        u, v, q, k = F.silu(self.uvqk(self.norm(x, token_type))).split(C, dim=-1)  # each (B, T, C)
        q, k, v = (z.view(B, T, H, C // H).transpose(1, 2) for z in (q, k, v))  # (B, H, T, D)
        rab = self.pos_bias[rel_pos].permute(2, 0, 1)[None] + self.time_bias[time_bucket].permute(0, 3, 1, 2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(C // H) + rab  # (B, H, T, T)
        attn = F.silu(scores) * mask  # mask: (B, 1, T, T) visibility / visible-key count
        y = (attn @ v).transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        x = x + self.drop(self.proj(self.attn_norm(y) * u))
        return x + self.ffn(self.ffn_norm(x, token_type), token_type)


class TokenEmbedding(nn.Module):
    """Type + summed SID level codes + action for O/I tokens; summed features for U and E."""

    def __init__(self, config: HHDConfig):
        super().__init__()
        C = config.n_embd
        self.type_emb = nn.Embedding(N_TOKEN_TYPES, C)
        self.action_emb = nn.Embedding(N_ACTIONS, C)
        self.code_offsets = self._offsets([s + 1 for s in config.codebook_sizes])  # +1: row 0 of a level is "none"
        self.user_offsets = self._offsets(config.user_vocab)
        self.env_offsets = self._offsets(config.env_vocab)
        self.code_emb = nn.Embedding(sum(s + 1 for s in config.codebook_sizes), C)
        self.user_emb = nn.Embedding(sum(config.user_vocab), C)
        self.env_emb = nn.Embedding(sum(config.env_vocab), C)

    def _offsets(self, sizes: tuple[int, ...] | list[int]) -> nn.Buffer:
        return nn.Buffer(torch.tensor([0, *np.cumsum(sizes)[:-1]], dtype=torch.long), persistent=False)

    def forward(self, batch: Batch) -> torch.Tensor:
        tt = batch.token_type
        x = self.type_emb(tt) + self.action_emb(batch.action)  # (B, T, C)
        x = x + self.code_emb(batch.codes + 1 + self.code_offsets).sum(dim=2)  # (B, T, L, C) -> (B, T, C)
        user = self.user_emb(batch.user_feats + self.user_offsets).sum(dim=1)  # (B, C)
        env = self.env_emb(batch.env_feats + self.env_offsets).sum(dim=1)  # (B, C)
        return x + (tt == TOKEN_U)[..., None] * user[:, None] + (tt == TOKEN_E)[..., None] * env[:, None]


class HSD(nn.Module):
    """Heterogeneous Sequence-wise Decoder: input, middle (recursed under MoR) and output HSTU blocks."""

    def __init__(self, config: HHDConfig):
        super().__init__()
        self.config = config
        self.blocks = nn.ModuleList(HSTUBlock(config) for _ in range(3))
        self.schedule = [0, *[1] * (config.n_recursions if config.mor else 1), 2]
        self.norm_f = TypedLayerNorm(config, config.token_aware_norm)
        T = config.max_len
        self.rel_pos = nn.Buffer(torch.arange(T)[None, :] - torch.arange(T)[:, None] + T - 1, persistent=False)

    def attention_mask(self, token_type: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, T) float: 1 / (visible keys of the query) where query i may see key j, else 0."""
        T = token_type.shape[1]
        valid = token_type != TOKEN_PAD
        visible = torch.ones(T, T, dtype=torch.bool, device=token_type.device).tril()[None]  # (1, T, T)
        if self.config.hybrid_attention:
            prefix = valid & (token_type != TOKEN_I)  # U/O/E
            visible = visible | (prefix[:, :, None] & prefix[:, None, :])
        visible = visible & valid[:, None, :]  # (B, T, T)
        count = visible.sum(dim=-1, keepdim=True).clamp(min=1)
        return (visible / count)[:, None]

    def time_buckets(self, age: torch.Tensor) -> torch.Tensor:
        """(B, T, T) bucket of |t_i - t_j| in log2 minutes."""
        gap = (age[:, :, None] - age[:, None, :]).abs() / 60.0
        return torch.log2(1.0 + gap).long().clamp(max=self.config.n_time_buckets - 1)

    def forward(self, x: torch.Tensor, batch: Batch) -> torch.Tensor:
        T = x.shape[1]
        if T > self.config.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len {self.config.max_len}")
        off = self.config.max_len - T  # shorter sequences: relative positions are shift-invariant
        rel_pos = self.rel_pos[off:, off:]
        mask, buckets = self.attention_mask(batch.token_type), self.time_buckets(batch.age)
        for i in self.schedule:
            x = self.blocks[i](x, batch.token_type, mask, rel_pos, buckets)
        return self.norm_f(x, batch.token_type)  # (B, T, C) intent embeddings


# ---------------------------------------------------------------------------------------------------- PTD
class Thinking(nn.Module):
    """K thinking tokens: learned queries (plus the E-token state) cross-attend over the intent embeddings."""

    def __init__(self, config: HHDConfig):
        super().__init__()
        C = config.n_embd
        self.queries = nn.Parameter(torch.randn(config.n_thinking, C) * 0.02)
        self.norm_q, self.norm_kv, self.norm_ffn = nn.LayerNorm(C), nn.LayerNorm(C), nn.LayerNorm(C)
        self.attn = nn.MultiheadAttention(C, config.n_head, dropout=config.dropout, batch_first=True)
        self.ffn = mlp(C, config.ffn_mult * C, C, config.dropout)

    def forward(self, h: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        q = self.queries[None] + h[:, -1:]  # (B, K, C)
        kv = self.norm_kv(h)
        q = q + self.attn(self.norm_q(q), kv, kv, key_padding_mask=~valid, need_weights=False)[0]
        return q + self.ffn(self.norm_ffn(q))  # (B, K, C)


class Refiner(nn.Module):
    """Diffusion-style refinement of the sum-pooled thinking state (GPR Fig. 2c, DiffuReason).

    Training adds the denoising loss ||D(x_t, t, c) - x_0||^2 at a random step t, with x_0 the normalised pooled
    state (stop-gradient) and c the same pooled state as the condition; the returned refining token is the end of a
    deterministic (DDIM, eta = 0) reverse chain from x_S = sqrt(abar_S) x_0 + sqrt(1 - abar_S) eps. Eval mode uses
    eps = 0, so the token, and every log-prob built on it, is a function of the input alone. The generation loss
    also flows through the chain, which is what makes the token useful rather than a copy of x_0.
    """

    def __init__(self, config: HHDConfig):
        super().__init__()
        C, S = config.n_embd, config.refine_steps
        self.steps = S
        betas = torch.linspace(0.1, 0.5, S)
        self.abar = nn.Buffer(torch.cat([torch.ones(1), torch.cumprod(1 - betas, 0)]), persistent=False)  # (S+1,)
        self.norm = nn.LayerNorm(C)
        self.step_emb = nn.Embedding(S + 1, C)
        self.denoiser = mlp(3 * C, config.ffn_mult * C, C)

    def denoise(self, x: torch.Tensor, cond: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.denoiser(torch.cat([x, cond, self.step_emb(t)], dim=-1))  # (B, C) predicted x_0

    def forward(self, thinking: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x0 = self.norm(thinking.sum(dim=1))  # (B, C) sum pooling
        B = x0.shape[0]
        loss = x0.new_zeros(())
        if self.training:
            t = torch.randint(1, self.steps + 1, (B,), device=x0.device)
            a = self.abar[t][:, None]
            xt = a.sqrt() * x0.detach() + (1 - a).sqrt() * torch.randn_like(x0)
            loss = F.mse_loss(self.denoise(xt, x0, t), x0.detach())
        noise = torch.randn_like(x0) if self.training else torch.zeros_like(x0)
        x = self.abar[-1].sqrt() * x0 + (1 - self.abar[-1]).sqrt() * noise
        for s in range(self.steps, 0, -1):
            t = torch.full((B,), s, device=x0.device, dtype=torch.long)
            x0_hat = self.denoise(x, x0, t)
            eps_hat = (x - self.abar[s].sqrt() * x0_hat) / (1 - self.abar[s]).sqrt()
            x = self.abar[s - 1].sqrt() * x0_hat + (1 - self.abar[s - 1]).sqrt() * eps_hat
        return x0_hat[:, None], loss  # (B, 1, C)


class PrefixQuery(nn.Module):
    """Query vectors for (level, code prefix): level embedding + the sum of per-level embeddings of the codes."""

    def __init__(self, config: HHDConfig):
        super().__init__()
        self.width = config.width
        self.level_emb = nn.Parameter(torch.randn(config.depth, config.n_embd) * 0.02)
        self.code_emb = nn.Embedding(max(config.depth - 1, 1) * config.width, config.n_embd)

    def forward(self, prefix: torch.Tensor) -> torch.Tensor:
        """(..., l) codes -> (..., C) query of level l."""
        level = prefix.shape[-1]
        q = self.level_emb[level].expand(*prefix.shape[:-1], -1)
        if level:
            q = q + self.code_emb(prefix + torch.arange(level, device=prefix.device) * self.width).sum(dim=-2)
        return q

    def teacher_forced(self, paths: torch.Tensor) -> torch.Tensor:
        """(..., L) full paths -> (..., L, C) queries of every level given the path's earlier codes."""
        L = paths.shape[-1]
        emb = self.code_emb(paths[..., :-1] + torch.arange(L - 1, device=paths.device) * self.width)  # (..., L-1, C)
        before = torch.cat([torch.zeros_like(emb[..., :1, :]), emb.cumsum(dim=-2)], dim=-2)  # (..., L, C)
        return self.level_emb + before


class SidHeads(nn.Module):
    """N parallel L-level SID heads: a shared cross-attention decoder layer, per-head queries and projections."""

    def __init__(self, config: HHDConfig):
        super().__init__()
        C, N, L, W = config.n_embd, config.mtp_heads, config.depth, config.width
        self.prefix = PrefixQuery(config)
        self.head_emb = nn.Parameter(torch.randn(N, C) * 0.02)
        self.norm_q, self.norm_m, self.norm_ffn = nn.LayerNorm(C), nn.LayerNorm(C), nn.LayerNorm(C)
        self.attn = nn.MultiheadAttention(C, config.n_head, dropout=config.dropout, batch_first=True)
        self.ffn = mlp(C, config.ffn_mult * C, C, config.dropout)
        self.norm_out = nn.LayerNorm(C)
        self.out_weight = nn.Parameter(torch.randn(N, L, W, C) * 0.02)
        self.out_bias = nn.Parameter(torch.zeros(N, L, W))
        sizes = torch.tensor(config.codebook_sizes)
        self.in_codebook = nn.Buffer(torch.arange(W)[None, :] < sizes[:, None], persistent=False)  # (L, W)

    def decode(self, memory: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """(B, M, C) memory, (B, Q, C) queries -> (B, Q, C)."""
        m = self.norm_m(memory)
        q = q + self.attn(self.norm_q(q), m, m, need_weights=False)[0]
        return self.norm_out(q + self.ffn(self.norm_ffn(q)))

    def level_logits(self, memory: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """(B, M, C), (B, ..., l) prefixes -> (B, ..., N, W) logits of level l for every head.

        All prefixes of a request (its beams) are queries against the same memory, which is never copied.
        Codes outside level l's codebook are not masked here (``HHD.head_log_probs`` does it with the legal mask).
        """
        B, level = prefix.shape[0], prefix.shape[-1]
        q = self.head_emb + self.prefix(prefix)[..., None, :]  # (B, ..., N, C)
        h = self.decode(memory, q.reshape(B, -1, q.shape[-1])).view(q.shape)
        return torch.einsum("...nc,nwc->...nw", h, self.out_weight[:, level]) + self.out_bias[:, level]

    def teacher_forced(self, memory: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(B, M, C), (B, N, L) one target path per head -> (B, N, L, W) logits of every level."""
        B, N, L = targets.shape
        q = self.head_emb[None, :, None] + self.prefix.teacher_forced(targets)  # (B, N, L, C)
        h = self.decode(memory, q.reshape(B, N * L, -1)).view(B, N, L, -1)
        return torch.einsum("bnlc,nlwc->bnlw", h, self.out_weight) + self.out_bias  # codebook masked by the caller


# ---------------------------------------------------------------------------------------------------- HTE
class ValueHeads(nn.Module):
    """Hierarchical Token-wise Evaluator on stop-gradient memory: V(s) and, per prefix, V(s, prefix + code)."""

    def __init__(self, config: HHDConfig):
        super().__init__()
        C = config.n_embd
        self.prefix = PrefixQuery(config)
        self.root = mlp(C, config.ffn_mult * C, 1)
        self.trunk = mlp(2 * C, config.ffn_mult * C, C)
        self.out = nn.Parameter(torch.randn(config.depth, config.width, C) * 0.02)
        self.out_bias = nn.Parameter(torch.zeros(config.depth, config.width))

    @staticmethod
    def summary(memory: torch.Tensor) -> torch.Tensor:
        return memory.detach().mean(dim=1)  # (B, C), stop-gradient: values never move the policy's backbone

    def child_values(self, memory: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """(B, M, C), (B, ..., l) -> (B, ..., W): predicted final_value of each one-code extension of a prefix."""
        level = prefix.shape[-1]
        q = self.prefix(prefix)  # (B, ..., C)
        s = self.summary(memory).view(q.shape[:1] + (1,) * (q.dim() - 2) + q.shape[-1:]).expand_as(q)
        h = self.trunk(torch.cat([s, q], dim=-1))
        return h @ self.out[level].T + self.out_bias[level]

    def path_values(self, memory: torch.Tensor, paths: torch.Tensor) -> torch.Tensor:
        """(B, M, C), (B, L) -> (B, L + 1): V(s), V(s, z_1), ..., V(s, z_1..L)."""
        s = self.summary(memory)
        q = self.prefix.teacher_forced(paths)  # (B, L, C)
        h = self.trunk(torch.cat([s[:, None].expand_as(q), q], dim=-1))  # (B, L, C)
        child = torch.einsum("blc,lwc->blw", h, self.out) + self.out_bias  # (B, L, W)
        picked = child.gather(-1, paths[..., None])[..., 0]  # (B, L)
        return torch.cat([self.root(s), picked], dim=-1)


# ---------------------------------------------------------------------------------------------------- HHD
class Encoding(NamedTuple):
    memory: torch.Tensor
    """(B, M, C) what the SID heads attend to: thinking tokens (+ refining token), or the E-token state."""
    aux_loss: torch.Tensor
    """Refining module's denoising loss (0 without it or in eval mode)."""


class PolicyOutput(NamedTuple):
    paths: torch.Tensor
    """(B, L) int64 chosen codes."""
    log_probs: torch.Tensor
    """(B, L) log pi(z_l | s, z_<l) under the legal masks (the head mixture)."""
    entropy: torch.Tensor
    """(B, L) entropy of each level's conditional."""
    values: torch.Tensor | None
    """(B, L + 1) HTE values V(s, z_<l) for l = 1..L+1; None without HTE."""
    behaviour_log_probs: torch.Tensor
    """(B, L) log-prob of each code under the distribution it was drawn from (tempered / top-k); equals
    ``log_probs`` when paths were given or sampled at temperature 1 without top-k."""
    legal: torch.Tensor
    """(B, L, W) bool masks each level was decided under."""


class HHD(nn.Module):
    def __init__(self, config: HHDConfig):
        super().__init__()
        self.config = config
        self.embed = TokenEmbedding(config)
        self.hsd = HSD(config)
        self.thinking = Thinking(config) if config.thinking else None
        self.refiner = Refiner(config) if config.refining else None
        self.heads = SidHeads(config)
        self.value = ValueHeads(config) if config.hte else None
        self.head_logits = nn.Parameter(torch.zeros(config.mtp_heads))  # simplex weights softmax(a), uniform at init
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def log_head_weights(self) -> torch.Tensor:
        return F.log_softmax(self.head_logits, dim=0)  # (N,)

    def encode(self, batch: Batch) -> Encoding:
        h = self.hsd(self.embed(batch), batch)  # (B, T, C)
        if self.thinking is not None:
            memory = self.thinking(h, batch.token_type != TOKEN_PAD)  # (B, K, C)
        else:
            memory = h[:, -1:]  # (B, 1, C) the E-token: the request's intent
        aux = memory.new_zeros(())
        if self.refiner is not None:
            refined, aux = self.refiner(memory)
            memory = torch.cat([memory, refined], dim=1)  # (B, K + 1, C)
        return Encoding(memory, aux)

    def legal_codes(self, prefix: torch.Tensor, legal: LegalFn | None) -> torch.Tensor:
        """(B, ..., l) prefixes -> (B, ..., W) bool: inside level l's codebook and legal (may be all False)."""
        mask = self.heads.in_codebook[prefix.shape[-1]].expand(*prefix.shape[:-1], -1)
        if legal is not None:
            mask = mask & legal(prefix)
        return mask

    def head_log_probs(self, memory: torch.Tensor, prefix: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, M, C), (B, ..., l), (B, ..., W) bool -> (B, ..., N, W) each head's log-probs over the masked codes.

        With ``gar`` the logits are the generation head's plus the value head's (Generation-as-Ranking).
        A prefix with no legal code at all (an empty personalised trie) gets the whole codebook, so its log-probs
        stay finite; decoders drop such prefixes themselves. Illegal codes get a huge negative but finite logit,
        not -inf: the head mixture's logsumexp over heads would otherwise have all -inf columns, whose backward
        is NaN even where the forward is never read.
        """
        mask = nonempty(mask)
        logits = self.heads.level_logits(memory, prefix)
        if self.config.gar:  # UniVA eq. 11-12: Fuse(o_gen, o_value) by summation, the same value for every head
            logits = logits + self.value.child_values(memory, prefix)[..., None, :]
        logits = logits.masked_fill(~mask[..., None, :], torch.finfo(logits.dtype).min / 4)
        return F.log_softmax(logits, dim=-1)

    def walk(self, enc: Encoding, legal: LegalFn | None = None, paths: torch.Tensor | None = None,
             temperature: float = 1.0, top_k: int | None = None, generator: torch.Generator | None = None
             ) -> PolicyOutput:
        """Decide (sample) or score (``paths`` given) one path per row, level by level, under ``legal``."""
        memory = enc.memory
        B, device = memory.shape[0], memory.device
        log_w = self.log_head_weights()
        cum = log_w.new_zeros(B, self.config.mtp_heads)
        prefix = torch.zeros(B, 0, dtype=torch.long, device=device)
        out = {"lp": [], "blp": [], "ent": [], "legal": []}
        for level in range(self.config.depth):
            mask = self.legal_codes(prefix, legal)  # (B, W)
            head_lp = self.head_log_probs(memory, prefix, mask)  # (B, N, W)
            cond = mixture_step(log_w, cum, head_lp)  # (B, W)
            if paths is None:
                logits = cond / temperature
                if top_k is not None:
                    kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                behaviour = F.log_softmax(logits, dim=-1)
                code = torch.multinomial(behaviour.exp(), 1, generator=generator)[:, 0]
            else:
                behaviour, code = cond, paths[:, level]
            p = cond.exp()
            out["ent"].append(-(p * cond.masked_fill(p == 0, 0.0)).sum(dim=-1))
            out["lp"].append(cond.gather(1, code[:, None])[:, 0])
            out["blp"].append(behaviour.gather(1, code[:, None])[:, 0])
            out["legal"].append(nonempty(mask))
            cum = cum + head_lp.gather(2, code[:, None, None].expand(-1, head_lp.shape[1], 1))[..., 0]
            prefix = torch.cat([prefix, code[:, None]], dim=1)
        values = self.value.path_values(memory, prefix) if self.value is not None else None
        stack = {k: torch.stack(v, dim=1) for k, v in out.items()}
        return PolicyOutput(prefix, stack["lp"], stack["ent"], values, stack["blp"], stack["legal"])

    def get_action_and_value(self, batch: Batch, paths: torch.Tensor | None = None, legal: LegalFn | None = None,
                             temperature: float = 1.0, top_k: int | None = None,
                             generator: torch.Generator | None = None) -> PolicyOutput:
        """CleanRL-style: sample a path per request (``paths=None``) or score the given ``paths`` (B, L).

        Per-level log-probs, entropies and HTE values come back for both; ``legal`` (e.g. ``decoding.trie_legal``
        of the personalised trie) restricts every level, and log-probs are renormalised over the legal codes.
        """
        return self.walk(self.encode(batch), legal, paths, temperature, top_k, generator)

    def loss(self, batch: Batch, target_legal: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """MTP (or VAFT-weighted MTP when ``batch.target_weight`` is set) + HTE value + refining losses.

        Args:
            batch: a torch batch; ``target_value`` (B,) enables the value loss.
            target_legal: (B, N, L, W) bool, the global trie's legal codes along each target's path; the softmax of
                every level then runs over legal codes only, as decoding does.
        """
        cfg = self.config
        enc = self.encode(batch)
        N = cfg.mtp_heads
        targets, mask = batch.target_codes[:, :N], batch.target_mask[:, :N]
        logits = self.heads.teacher_forced(enc.memory, targets)  # (B, N, L, W)
        legal = self.heads.in_codebook if target_legal is None else target_legal[:, :N] & self.heads.in_codebook
        logits = logits.masked_fill(~legal, float("-inf"))
        nll = -F.log_softmax(logits, dim=-1).gather(-1, targets[..., None])[..., 0]  # (B, N, L)
        weight = batch.target_weight[:, :N] if batch.target_weight is not None else torch.ones_like(nll[..., 0])
        out = mtp_loss(nll, mask, weight, self.log_head_weights(), cfg.head_entropy_coef)
        total = out["loss"] + cfg.refine_loss_coef * enc.aux_loss
        out["refine"] = enc.aux_loss
        if self.value is not None and batch.target_value is not None:
            pred = self.value.path_values(enc.memory, batch.target_codes[:, 0])  # (B, L + 1)
            out["value"] = F.mse_loss(pred, batch.target_value[:, None].expand_as(pred))
            total = total + cfg.value_loss_coef * out["value"]
        out["total"] = total
        return out

    @classmethod
    def from_checkpoint(cls, path: str, device: str | torch.device = "cpu") -> tuple[HHD, Checkpoint]:
        """The model of any trainer's checkpoint (eval mode) and the checkpoint (configs, step, trainer state)."""
        ckpt = Checkpoint.load(path, map_location=device)
        model = cls(HHDConfig(**ckpt.model_config)).to(device)
        model.load_state_dict(ckpt.model)
        return model.eval(), ckpt

