"""Torch training of RQ-VAE / RQ-Kmeans+; imported only inside ``RQVAE.fit`` so that ``import adsim.sid`` stays
torch-free. Encoding and decoding of a fitted model run in numpy (``adsim.sid.rq_vae``), from the arrays returned here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from adsim.sid.rq_kmeans import RQKMeans, RQKMeansConfig

if TYPE_CHECKING:  # the config's module imports this one lazily, inside fit
    from adsim.sid.rq_vae import RQVAEConfig


class MLP(nn.Module):
    """Linear layers with ReLU between them; ``residual`` adds the input to the output (then in_dim == out_dim) and
    zero-initialises the last layer, so the block starts as the identity."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], out_dim: int, residual: bool):
        super().__init__()
        dims = (in_dim, *hidden, out_dim)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.residual = residual
        if residual:
            nn.init.zeros_(self.layers[-1].weight)
            nn.init.zeros_(self.layers[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = F.relu(h)
        return x + h if self.residual else h


class RQVAEModule(nn.Module):
    """Encoder -> residual codebooks (straight-through) -> decoder, with the RQ-VAE loss."""

    def __init__(self, dim: int, config: RQVAEConfig):
        super().__init__()
        latent = config.latent_dim or dim
        self.config = config
        self.encoder = MLP(dim, config.hidden_dims, latent, config.residual)
        self.decoder = MLP(latent, config.hidden_dims[::-1], dim, config.residual)
        # VQ-VAE's reference init U(-1/K, 1/K); no dead-code re-seeding: that is what RQ-VAE is measured without
        self.codebooks = nn.ParameterList(
            nn.Parameter(torch.empty(k, latent).uniform_(-1.0 / k, 1.0 / k)) for k in config.codebook_sizes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Losses of a batch ``x (B, D)``: (reconstruction MSE, codebook loss, commitment loss)."""
        z = self.encoder(x)  # (B, latent)
        residual, quantized = z, torch.zeros_like(z)
        codebook_loss = commit_loss = z.new_zeros(())
        for codebook in self.codebooks:
            with torch.no_grad():
                idx = torch.cdist(residual, codebook).argmin(dim=1)  # (B,)
            chosen = codebook[idx]  # (B, latent)
            codebook_loss = codebook_loss + F.mse_loss(chosen, residual.detach())
            commit_loss = commit_loss + F.mse_loss(residual, chosen.detach())
            quantized = quantized + chosen
            residual = residual - chosen.detach()
        z_q = z + (quantized - z).detach()  # straight-through: decoder gradients flow to the encoder
        return F.mse_loss(self.decoder(z_q), x), codebook_loss, commit_loss


def train(x: np.ndarray, config: RQVAEConfig) -> tuple[dict[str, np.ndarray], list[dict[str, float]]]:
    """Fit on ``x (N, D)``; returns the weights as named float32 arrays and per-epoch mean losses.

    Seeded and CPU-deterministic: the global torch RNG is forked, so callers' random state is left untouched.
    Runs on one thread: these MLPs are too small to gain from more, one thread makes results independent of the
    machine's core count, and on a busy 2-core machine multi-threaded torch was measured 20x slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(x, config)
    finally:
        torch.set_num_threads(threads)


def kmeans_init(codebooks: nn.ParameterList, latent: torch.Tensor, sizes: tuple[int, ...], n_iter: int,
                seed: int) -> None:
    """Start residual codebooks from RQ-Kmeans on the initial latents (dead codes are rare from the first epoch)."""
    rqk = RQKMeans(RQKMeansConfig(codebook_sizes=sizes, n_iter=n_iter, seed=seed)).fit(latent.double().numpy())
    for param, codebook in zip(codebooks, rqk.codebooks, strict=True):
        param.copy_(torch.from_numpy(codebook))


def _train(x: np.ndarray, config: RQVAEConfig) -> tuple[dict[str, np.ndarray], list[dict[str, float]]]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        data = torch.from_numpy(x.astype(np.float32))
        model = RQVAEModule(x.shape[1], config)
        if config.kmeans_init:
            with torch.no_grad():
                kmeans_init(model.codebooks, model.encoder(data), config.codebook_sizes, config.kmeans_iters,
                            config.seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        generator = torch.Generator().manual_seed(config.seed)
        history = []
        for _epoch in range(config.epochs):
            totals = torch.zeros(3)
            for batch in torch.randperm(len(data), generator=generator).split(config.batch_size):
                recon, codebook_loss, commit_loss = model(data[batch])
                loss = recon + codebook_loss + config.beta * commit_loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                totals += torch.stack([recon, codebook_loss, commit_loss]).detach() * len(batch)
            recon, codebook_loss, commit_loss = (totals / len(data)).tolist()
            history.append({"recon": recon, "codebook": codebook_loss, "commit": commit_loss})
    return to_arrays(model), history


def to_arrays(model: RQVAEModule) -> dict[str, np.ndarray]:
    """Named numpy copies of the weights, in the layout ``adsim.sid.rq_vae`` reads (Linear weights are (out, in))."""
    arrays = {}
    for part in ("encoder", "decoder"):
        for i, layer in enumerate(getattr(model, part).layers):
            arrays[f"{part}_w{i}"] = layer.weight.detach().numpy().copy()
            arrays[f"{part}_b{i}"] = layer.bias.detach().numpy().copy()
    for level, codebook in enumerate(model.codebooks):
        arrays[f"codebook_{level}"] = codebook.detach().numpy().copy()
    return arrays
