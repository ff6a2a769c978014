"""Decoding SID paths from an HHD: trie-constrained (personalised) beam search, value-guided variants, sampling.

* ``TorchTrie(trie, device).legal(allowed)`` (or ``trie_legal``) turns each request's personalised trie (its
  allowed-ads vector) into the legal-code callable every decoder takes, computed on the model's device; ``None``
  decodes unconstrained (any code inside the codebook).
* ``beam_search`` keeps the ``beam`` best prefixes per request by the head mixture's log-probability, batched over
  requests and beams. Options (GPR 4.2.3, UniVA 3.5):
  ``value_guided``: HTE values set how many children each prefix may keep (a parent's width is
  ``widen * beam * softmax(v / tau)``, so at uniform values each keeps ``widen`` and high-value prefixes keep more);
  ``fuse_value = beta``: UniVA's generation-as-ranking score, level log-probs of softmax(gen + beta * value).
* ``sample`` draws one path per request with temperature / top-k and returns the behaviour log-probs per level
  (what an off-policy RL ratio divides by).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from adsim.trie import SidTrie
from agents.hhd.model import HHD, LegalFn, PolicyOutput, mixture_step
from agents.hhd.sequences import Batch


class TorchTrie:
    """``SidTrie``'s tables as tensors on one device, so legal masks are computed where the model runs.

    The same queries as ``SidTrie.legal_mask`` (the numpy reference; ``test_hhd_decoding`` checks they agree) without
    a round trip through host memory at every level of a GPU beam search.
    """

    def __init__(self, trie: SidTrie, device: str | torch.device = "cpu"):
        self.trie, self.device, self.width = trie, torch.device(device), trie.width
        self.child = [torch.as_tensor(c, device=self.device) for c in trie.child]  # (n_nodes at depth d, W)
        self.start = [torch.as_tensor(level.start, device=self.device) for level in trie.levels]
        self.end = [torch.as_tensor(level.end, device=self.device) for level in trie.levels]

    def prefix_sums(self, allowed: np.ndarray | None) -> torch.Tensor:
        """(B, n_items + 1) running allowed counts in trie order; (1, n_items + 1) for "everything allowed"."""
        if allowed is None:
            return torch.arange(self.trie.n_items + 1, device=self.device)[None]
        return torch.as_tensor(self.trie.allowed_prefix_sums(allowed), device=self.device).long()

    def legal_mask(self, prefix: torch.Tensor, sums: torch.Tensor) -> torch.Tensor:
        """(R, ..., l) prefixes, (R or 1, n_items + 1) prefix sums -> (R, ..., W) bool legal next codes."""
        depth = prefix.shape[-1]
        node = torch.zeros(prefix.shape[:-1], dtype=torch.long, device=self.device)
        for d in range(depth):
            code = prefix[..., d]
            ok = (node >= 0) & (code >= 0) & (code < self.width)
            node = torch.where(ok, self.child[d][node.clamp(min=0), code.clamp(0, self.width - 1)], -1)
        kids = self.child[depth][node.clamp(min=0)]  # (R, ..., W) child node ids, -1 where none
        k = kids.clamp(min=0)
        s = sums.view(sums.shape[:1] + (1,) * (prefix.dim() - 2) + sums.shape[-1:])
        s = s.expand(*prefix.shape[:-1], s.shape[-1])
        count = s.gather(-1, self.end[depth + 1][k]) - s.gather(-1, self.start[depth + 1][k])
        return (kids >= 0) & (node[..., None] >= 0) & (count > 0)

    def legal(self, allowed: np.ndarray | None = None) -> LegalFn:
        """The ``LegalFn`` of each request's personalised trie: ``allowed`` (B, n_items) bool, None for all items.

        It maps prefixes (B, ..., l) (any leading shape when ``allowed`` is None) to (B, ..., W) bool.
        """
        sums = self.prefix_sums(allowed)
        return lambda prefix: self.legal_mask(prefix, sums)


def trie_legal(trie: SidTrie | TorchTrie, allowed: np.ndarray | None = None) -> LegalFn:
    """Shorthand for ``TorchTrie(trie).legal(allowed)`` (on the CPU unless ``trie`` is a ``TorchTrie`` already)."""
    return (trie if isinstance(trie, TorchTrie) else TorchTrie(trie)).legal(allowed)


def path_legal_masks(legal: LegalFn, paths: torch.Tensor) -> torch.Tensor:
    """(..., L) paths -> (..., L, W): the legal codes at every level along each path."""
    return torch.stack([legal(paths[..., :level]) for level in range(paths.shape[-1])], dim=-2)


def valid_paths(trie: SidTrie, paths: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """(B, K, L) paths -> (B, K) bool: the path exists and leads to at least one allowed item."""
    node, start, end = trie.leaf_ranges(paths.reshape(-1, paths.shape[-1]))
    ok = node >= 0
    if allowed is not None:
        sums = trie.allowed_prefix_sums(allowed)  # (B, n + 1)
        rows = np.repeat(np.arange(len(paths)), paths.shape[1])
        ok &= sums[rows, end] - sums[rows, start] > 0
    return ok.reshape(paths.shape[:2])


@dataclass
class BeamConfig:
    beam: int = 100
    """Paths kept per level and returned per request (K)."""
    value_guided: bool = False
    """GPR: per-parent widths from HTE values (needs a model with ``hte``)."""
    value_temperature: float = 1.0
    """tau of the softmax over parent values."""
    widen: float = 4.0
    """Children a parent may keep at uniform values."""
    fuse_value: float = 0.0
    """UniVA: beta of softmax(gen + beta * value) as the beam score; 0 is off."""


@dataclass
class BeamResult:
    paths: np.ndarray
    """(B, K, L) int64, best first; -1 rows where fewer than K paths were found."""
    scores: np.ndarray
    """(B, K) beam score (sum of level log-probs, of the fused distribution with ``fuse_value``); -inf if none."""
    log_probs: np.ndarray
    """(B, K, L) per-level log-probs of the head mixture (the policy) along each path."""
    found: np.ndarray
    """(B, K) bool, a path fills this slot."""


@torch.no_grad()
def beam_search(model: HHD, batch: Batch, legal: LegalFn | None, config: BeamConfig | None = None) -> BeamResult:
    """Batched beam search over a torch ``batch``; ``legal`` from ``trie_legal`` or None (unconstrained)."""
    config = config or BeamConfig()
    if (config.value_guided or config.fuse_value) and model.value is None:
        raise ValueError("value-guided decoding needs a model with HTE (config.hte=True)")
    memory = model.encode(batch).memory  # (B, M, C)
    B, W = memory.shape[0], model.config.width
    device, log_w = memory.device, model.log_head_weights()
    rows = torch.arange(B, device=device)[:, None]
    prefix = torch.zeros(B, 1, 0, dtype=torch.long, device=device)  # (B, K, l) beams
    cum = memory.new_zeros(B, 1, model.config.mtp_heads)  # (B, K, N) each head's log-prob of each beam
    score = memory.new_zeros(B, 1)
    lps = memory.new_zeros(B, 1, 0)
    parent_value = memory.new_zeros(B, 1)
    for level in range(model.config.depth):
        K = prefix.shape[1]
        mask = model.legal_codes(prefix, legal)  # (B, K, W)
        head_lp = model.head_log_probs(memory, prefix, mask)  # (B, K, N, W)
        cond = mixture_step(log_w, cum, head_lp)  # (B, K, W)
        step = cond
        if config.value_guided or config.fuse_value:
            child_value = model.value.child_values(memory, prefix)  # (B, K, W)
        if config.fuse_value:
            step = F.log_softmax((cond + config.fuse_value * child_value).masked_fill(~mask, float("-inf")), dim=-1)
        cand = (score[..., None] + step).masked_fill(~mask, float("-inf"))  # dead beams have score -inf
        if config.value_guided and level > 0:
            share = torch.softmax((parent_value / config.value_temperature).masked_fill(
                ~torch.isfinite(score), float("-inf")), dim=1).nan_to_num(0.0)  # (B, K); all-dead rows: 0
            width = (config.widen * config.beam * share).round().clamp(min=1, max=W).long()
            kth = cand.sort(dim=-1, descending=True).values.gather(-1, (width - 1)[..., None])
            cand = cand.masked_fill(cand < kth, float("-inf"))
        top = cand.reshape(B, K * W).topk(min(config.beam, K * W), dim=-1)
        parent, code = top.indices // W, top.indices % W  # (B, K')
        prefix = torch.cat([prefix[rows, parent], code[..., None]], dim=-1)
        score = top.values  # -inf: a dead beam (fewer legal paths than the beam)
        cum = (cum[rows, parent] + head_lp[rows, parent, :, code]).masked_fill(~torch.isfinite(score)[..., None], 0)
        lps = torch.cat([lps[rows, parent], cond[rows, parent, code][..., None]], dim=-1)
        if config.value_guided:
            parent_value = child_value[rows, parent, code]
    found = torch.isfinite(score)
    paths = torch.where(found[..., None], prefix, -1)
    pad = config.beam - paths.shape[1]
    if pad > 0:  # a codebook smaller than the beam at the first level
        paths = F.pad(paths, (0, 0, 0, pad), value=-1)
        score, lps = F.pad(score, (0, pad), value=float("-inf")), F.pad(lps, (0, 0, 0, pad))
        found = F.pad(found, (0, pad), value=False)
    return BeamResult(paths.cpu().numpy(), score.cpu().numpy(), lps.cpu().numpy(), found.cpu().numpy())


@torch.no_grad()
def sample(model: HHD, batch: Batch, legal: LegalFn | None, temperature: float = 1.0, top_k: int | None = None,
           generator: torch.Generator | None = None) -> PolicyOutput:
    """One path per request drawn level by level from the (tempered, top-k) policy, with behaviour log-probs."""
    return model.get_action_and_value(batch, legal=legal, temperature=temperature, top_k=top_k, generator=generator)
