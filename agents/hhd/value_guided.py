"""V-STAR's Value-guided Efficient Decoding (VED): K candidate paths per request that branch where the critic says the
choice matters, instead of where the policy is merely uncertain (sampling) or confident (beam search).

Spec (our reading of V-STAR; the fixed budget is K complete paths per request):

1. Scouts: ``round(scouts * K)`` paths (at least one) are plain policy samples at the trainer's temperature
   (``HHD.walk``), so the first candidates are what the policy itself would show, and VED stays stochastic.
2. Branching, one path per round until the request has K: the scouts' prefix tree is scored at every *frontier
   edge*, a (tree node n = z_{1:l}, legal child c) pair whose child is not in the tree yet, by

       score(n, c) = log pi(c | n) + beta * (v(n, c) - sum_c' pi(c' | n) v(n, c')),

   the policy's conditional log-prob of c plus beta times the critic's advantage of c at n: v(n, c) is the HTE
   value head's estimate after choosing c (``ValueHeads.child_values``), its pi-weighted mean the node's value. A
   *decisive* node is one whose children's values spread, so that an unexplored child beats the node's value; the
   advantage term is large only there, while log pi keeps the search off codes the policy finds implausible. The
   conditional, not the prefix's joint log-prob: every node is already on some candidate's path, so how probable
   it was to reach no longer matters, and the joint would make the search breadth-first (a shorter prefix is
   always more probable), the myopic bias V-STAR argues against. The best edge per request is taken and deepened
   to a complete path greedily by the same per-level score, so every branch is a new path (its prefix through c is
   new) and the budget goes to high-potential prefixes rather than to duplicates of probable ones.
3. A request whose every legal path is a candidate already repeats its first candidate in the remaining slots.

Without value heads (``hte=False``) v = 0: edges are ranked by log pi alone, a best-first likelihood expansion of
the scouts' tree (still duplicate-free, but no longer value-guided).

Every code is chosen under the personalised trie's legal mask (``HHD.legal_codes``), exactly like the sampler and
beam search, so a VED path always reaches an allowed ad. Given the model, batch, mask and the generator's state,
the paths are deterministic. They are not policy samples beyond the scouts: a trainer must not divide by the
probability VED chose them with; ``agents.posttrain.train`` scores them under the collecting policy instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from agents.hhd.model import HHD, Encoding, LegalFn, mixture_step
from agents.hhd.sequences import Batch


@dataclass
class VEDConfig:
    scouts: float = 0.5
    """Share of the K budget drawn as plain policy samples (the tree VED branches from); at least one path."""
    value_weight: float = 5.0
    """beta: weight of the critic's advantage against the log-prob in an edge's score (HTE's child values spread
    by ~0.1-0.4 on the tiny world, so beta = 5 moves a score by up to ~1 nat at a decisive node)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.scouts <= 1.0:
            raise ValueError(f"scouts must be a share in (0, 1], got {self.scouts}")

    def n_scouts(self, k: int) -> int:
        return min(k, max(1, round(self.scouts * k)))


def _level_scores(model: HHD, memory: torch.Tensor, legal: LegalFn | None, prefix: torch.Tensor, cum: torch.Tensor,
                  beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One level at (B, ..., l) prefixes: each head's log-probs (B, ..., N, W) and the per-level score
    log pi(c | prefix) + beta * critic advantage (B, ..., W), -inf on illegal codes."""
    mask = model.legal_codes(prefix, legal)
    head_lp = model.head_log_probs(memory, prefix, mask)
    cond = mixture_step(model.log_head_weights(), cum, head_lp)
    score = cond
    if model.value is not None and beta:
        v = model.value.child_values(memory, prefix)
        advantage = v - (cond.exp() * v).masked_fill(~mask, 0.0).sum(dim=-1, keepdim=True)
        score = cond + beta * advantage
    return head_lp, score.masked_fill(~mask, float("-inf"))


def _advance(cum: torch.Tensor, head_lp: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """Each head's prefix log-prob (..., N) after choosing ``code`` (...)."""
    index = code[..., None, None].expand(*head_lp.shape[:-1], 1)
    return cum + head_lp.gather(-1, index)[..., 0]


def frontier_scores(model: HHD, memory: torch.Tensor, legal: LegalFn | None, paths: torch.Tensor,
                    beta: float) -> torch.Tensor:
    """(B, k, L) candidate paths -> (B, k, L, W): the score of every frontier edge (node z_{1:l} of path k, child c),
    -inf where c is illegal or already in the tree (some candidate shares the node and chose c)."""
    B, k, L = paths.shape
    cum = memory.new_zeros(B, k, model.config.mtp_heads)
    out = []
    for level in range(L):
        prefix = paths[..., :level]  # (B, k, l)
        head_lp, score = _level_scores(model, memory, legal, prefix, cum, beta)
        same_node = (prefix[:, :, None, :] == prefix[:, None, :, :]).all(dim=-1).float()  # (B, k, k)
        taken = same_node @ F.one_hot(paths[..., level], score.shape[-1]).float() > 0  # (B, k, W)
        out.append(score.masked_fill(taken, float("-inf")))
        cum = _advance(cum, head_lp, paths[..., level])
    return torch.stack(out, dim=2)


@torch.no_grad()
def ved(model: HHD, batch: Batch, legal: LegalFn | None, k: int, config: VEDConfig | None = None,
        temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, K, L) int64 candidate paths per request of ``batch`` (B rows), the scouts first (module docstring)."""
    config = config or VEDConfig()
    beta = config.value_weight
    enc = model.encode(batch)
    memory = enc.memory  # (B, M, C)
    B, L, W = memory.shape[0], model.config.depth, model.config.width
    s = config.n_scouts(k)

    # ------------------------------------------------------------------------------------------ scouts
    def legal_rows(prefix: torch.Tensor) -> torch.Tensor:  # (B * s, l) -> (B * s, W) under each row's request
        return model.legal_codes(prefix.view(B, s, -1), legal).view(B * s, W)

    scouts = model.walk(Encoding(memory.repeat_interleave(s, dim=0), enc.aux_loss), legal_rows,
                        temperature=temperature, generator=generator)
    paths = scouts.paths.view(B, s, L)

    # ------------------------------------------------------------------------------------------ branching
    rows = torch.arange(B, device=memory.device)
    for _ in range(k - s):
        edge = frontier_scores(model, memory, legal, paths, beta).reshape(B, -1)  # (B, k * L * W)
        best, index = edge.max(dim=-1)
        j, level, code = index // (L * W), index // W % L, index % W
        new = paths[rows, j].clone()  # (B, L): the node's path, to be cut at ``level`` and regrown
        new[rows, level] = code
        cum = memory.new_zeros(B, model.config.mtp_heads)
        for depth in range(L):
            head_lp, score = _level_scores(model, memory, legal, new[:, :depth], cum, beta)
            regrow = depth > level
            new[:, depth] = torch.where(regrow, score.argmax(dim=-1), new[:, depth])
            cum = _advance(cum, head_lp, new[:, depth])
        new = torch.where(torch.isfinite(best)[:, None], new, paths[:, 0])  # nothing left to branch to
        paths = torch.cat([paths, new[:, None]], dim=1)
    return paths
