"""Torch training of UniSID; imported only inside ``UniSID.fit`` so that ``import adsim.sid`` stays torch-free.
Encoding and decoding of a fitted model run in numpy (``adsim.sid.unisid``), from the arrays returned here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from adsim.sid._rqvae_torch import MLP, kmeans_init

if TYPE_CHECKING:  # the config's module imports this one lazily, inside fit
    from adsim.sid.unisid import UniSIDConfig


# ----------------------------------------------------------------------------------------------- loss pieces


def info_nce(logits: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Multi-positive InfoNCE: ``-log`` of the softmax mass each anchor puts on its positives, averaged over anchors.

    Args:
        logits: ``(B, B)`` similarities / temperature, row i = anchor i (a code prefix) against every view j.
        keys: ``(B,) int``; j is a positive of i when ``keys[j] == keys[i]`` (the same category shares one view, so
            it is no negative), ``-1`` = no view at this granularity: such rows are neither anchors nor candidates.

    Returns 0 when fewer than two rows have a view: there is nothing to contrast.
    """
    known = keys >= 0
    if int(known.sum()) < 2:
        return logits.new_zeros(())
    logits, keys = logits[known][:, known], keys[known]
    positive = keys[:, None] == keys[None, :]
    log_prob = logits.log_softmax(dim=1)
    return -log_prob.masked_fill(~positive, float("-inf")).logsumexp(dim=1).mean()


def summary_loss(recon: torch.Tensor, x: torch.Tensor, attribute_logits: list[torch.Tensor],
                 attribute_idx: torch.Tensor) -> torch.Tensor:
    """Squared L2 error of the reconstructed embedding plus the mean cross-entropy of the reconstructed attributes.

    The squared error is summed over dimensions, so a unit-norm embedding weighs about as much as one attribute's
    cross-entropy whatever its width. Unknown attribute values (index 0) are not targets.

    Args:
        recon, x: ``(B, D)``.
        attribute_logits: per attribute column ``(B, V_c + 1)``.
        attribute_idx: ``(B, C) int64``, 0 = unknown.
    """
    loss = ((recon - x) ** 2).sum(dim=1).mean()
    for logits, target in zip(attribute_logits, attribute_idx.T, strict=True):
        if bool((target > 0).any()):
            loss = loss + F.cross_entropy(logits, target, ignore_index=0) / len(attribute_logits)
    return loss


def contrastive_keys(attribute_idx: np.ndarray, n_levels: int) -> np.ndarray:
    """``(N, L) int64`` positive-pair keys per level: level l < C keys on attribute columns ``[0, l]`` (coarse to
    fine, -1 where any of them is unknown), every later level on the item itself."""
    n, n_columns = attribute_idx.shape
    keys = np.tile(np.arange(n, dtype=np.int64)[:, None], (1, n_levels))
    for level in range(min(n_columns, n_levels)):
        prefix = attribute_idx[:, :level + 1]
        _, inverse = np.unique(prefix, axis=0, return_inverse=True)
        keys[:, level] = np.where((prefix > 0).all(axis=1), inverse.ravel(), -1)
    return keys


# ----------------------------------------------------------------------------------------------- model


class UniSIDModule(nn.Module):
    """Attribute tables + embedding -> encoder -> residual codebooks -> summary decoder, with per-level heads that
    put each code prefix and its attribute view into one contrastive space."""

    def __init__(self, dim: int, vocab_sizes: tuple[int, ...], config: UniSIDConfig):
        super().__init__()
        self.config = config
        n_columns, width = len(vocab_sizes), config.attribute_dim
        in_dim = dim + n_columns * width
        # index 0 = unknown value: a zero vector that is never trained; rows have about unit norm like the embedding
        self.attribute_tables = nn.ModuleList(nn.Embedding(v + 1, width, padding_idx=0) for v in vocab_sizes)
        for table in self.attribute_tables:
            with torch.no_grad():
                table.weight[1:].normal_(0.0, width ** -0.5)
        self.encoder = MLP(in_dim, config.hidden_dims, config.latent_dim, residual=False)
        self.codebooks = nn.ParameterList(
            nn.Parameter(torch.empty(k, config.latent_dim).uniform_(-1.0 / k, 1.0 / k)) for k in config.codebook_sizes)
        self.decoder = MLP(config.latent_dim, config.hidden_dims[::-1], dim, residual=False)
        self.attribute_heads = nn.ModuleList(nn.Linear(config.latent_dim, v + 1) for v in vocab_sizes)
        levels = range(len(config.codebook_sizes))
        self.prefix_heads = nn.ModuleList(nn.Linear(config.latent_dim, config.proj_dim) for _ in levels)
        self.view_heads = nn.ModuleList(
            nn.Linear((level + 1) * width if level < n_columns else in_dim, config.proj_dim) for level in levels)

    def inputs(self, x: torch.Tensor, attribute_idx: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The encoder input ``(B, D + C * attribute_dim)`` and each column's attribute vectors, ``(B, attribute_dim)``
        each."""
        parts = [table(attribute_idx[:, c]) for c, table in enumerate(self.attribute_tables)]
        return torch.cat([x, *parts], dim=1), parts

    def latent(self, item: torch.Tensor) -> torch.Tensor:
        """The encoder output on the unit sphere: at a fixed scale the codebooks can follow an encoder that the
        contrastive and summary losses keep moving."""
        return F.normalize(self.encoder(item), dim=1)

    def view(self, level: int, item: torch.Tensor, parts: list[torch.Tensor]) -> torch.Tensor:
        """Level ``level``'s attribute view: attribute columns ``[0, level]`` while there are that many, else the
        item."""
        return torch.cat(parts[:level + 1], dim=1) if level < len(parts) else item

    def forward(self, x: torch.Tensor, attribute_idx: torch.Tensor, keys: torch.Tensor) -> dict[str, torch.Tensor]:
        """Losses of a batch: x ``(B, D)``, attribute_idx ``(B, C)``, keys ``(B, L)`` from ``contrastive_keys``."""
        item, parts = self.inputs(x, attribute_idx)
        z = self.latent(item)  # (B, latent)
        residual, quantized = z, torch.zeros_like(z)
        codebook_loss = commit_loss = contrastive = z.new_zeros(())
        for level, codebook in enumerate(self.codebooks):
            with torch.no_grad():
                idx = torch.cdist(residual, codebook).argmin(dim=1)  # (B,)
            chosen = codebook[idx]  # (B, latent)
            codebook_loss = codebook_loss + F.mse_loss(chosen, residual.detach())
            commit_loss = commit_loss + F.mse_loss(residual, chosen.detach())
            quantized = quantized + chosen
            residual = residual - chosen.detach()
            # the quantized prefix, straight through to the encoder; codewords learn from the codebook loss alone
            # (letting these losses move them as well pulled them off their residuals: 1.2-6x the collisions on ads)
            prefix = z + (quantized - z).detach()
            anchor = F.normalize(self.prefix_heads[level](prefix), dim=1)  # (B, proj)
            view = F.normalize(self.view_heads[level](self.view(level, item, parts)), dim=1)  # (B, proj)
            contrastive = contrastive + info_nce(anchor @ view.T / self.config.temperature, keys[:, level])
        z_q = prefix  # (B, latent): the whole path
        summary = summary_loss(self.decoder(z_q), x, [head(z_q) for head in self.attribute_heads], attribute_idx)
        return {"summary": summary, "contrastive": contrastive / len(self.codebooks), "codebook": codebook_loss,
                "commit": commit_loss}

    @torch.no_grad()
    def restart_dead_codes(self, x: torch.Tensor, attribute_idx: torch.Tensor, generator: torch.Generator) -> int:
        """Re-seed every code that none of the items ``x`` picks with a random item's residual at that level, so that
        no level collapses onto a few codes; returns how many were re-seeded."""
        residual, restarted = self.latent(self.inputs(x, attribute_idx)[0]), 0
        for codebook in self.codebooks:
            idx = torch.cdist(residual, codebook).argmin(dim=1)
            dead = (torch.bincount(idx, minlength=len(codebook)) == 0).nonzero().flatten()
            if dead.numel():
                codebook[dead] = residual[torch.randperm(len(residual), generator=generator)[:dead.numel()]]
                idx = torch.cdist(residual, codebook).argmin(dim=1)
                restarted += dead.numel()
            residual = residual - codebook[idx]
        return restarted


# ----------------------------------------------------------------------------------------------- training


@contextmanager
def _one_thread() -> Iterator[None]:
    """One torch thread, as ``_rqvae_torch.train`` uses: results independent of the core count, and faster for
    these small MLPs on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train(x: np.ndarray, attribute_idx: np.ndarray, vocab_sizes: tuple[int, ...],
          config: UniSIDConfig) -> tuple[dict[str, np.ndarray], list[dict[str, float]]]:
    """Fit on ``x (N, D)`` and ``attribute_idx (N, C)``; returns what encoding and decoding need as named float32
    arrays, and per-epoch mean losses. Seeded and CPU-deterministic; the global torch RNG is left untouched."""
    with _one_thread(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        data = torch.from_numpy(x.astype(np.float32))
        idx = torch.from_numpy(attribute_idx)
        keys = torch.from_numpy(contrastive_keys(attribute_idx, len(config.codebook_sizes)))
        model = UniSIDModule(x.shape[1], vocab_sizes, config)
        if config.kmeans_init:
            with torch.no_grad():
                kmeans_init(model.codebooks, model.latent(model.inputs(data, idx)[0]), config.codebook_sizes,
                            config.kmeans_iters, config.seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        generator = torch.Generator().manual_seed(config.seed)
        history = []
        for _epoch in range(config.epochs):
            totals: dict[str, float] = {}
            for batch in torch.randperm(len(data), generator=generator).split(config.batch_size):
                parts = model(data[batch], idx[batch], keys[batch])
                loss = (config.summary_weight * parts["summary"] + config.contrastive_weight * parts["contrastive"]
                        + parts["codebook"] + config.beta * parts["commit"])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                for name, value in parts.items():
                    totals[name] = totals.get(name, 0.0) + float(value.detach()) * len(batch) / len(data)
            if config.restart_dead_codes:
                totals["restarted"] = float(model.restart_dead_codes(data, idx, generator))
            history.append(totals)
    return to_arrays(model), history


def to_arrays(model: UniSIDModule) -> dict[str, np.ndarray]:
    """Named numpy copies of the weights ``adsim.sid.unisid`` reads (Linear weights are (out, in)); the training
    heads are left out: encoding and decoding do not use them."""
    arrays = {}
    for part in ("encoder", "decoder"):
        for i, layer in enumerate(getattr(model, part).layers):
            arrays[f"{part}_w{i}"] = layer.weight.detach().numpy().copy()
            arrays[f"{part}_b{i}"] = layer.bias.detach().numpy().copy()
    for level, codebook in enumerate(model.codebooks):
        arrays[f"codebook_{level}"] = codebook.detach().numpy().copy()
    for column, table in enumerate(model.attribute_tables):
        arrays[f"attribute_table_{column}"] = table.weight.detach().numpy().copy()
    return arrays
