"""Pure loss pieces of HHD training: the multi-token-prediction objective and the VAFT weights (GPR 4.2.4)."""

from __future__ import annotations

import numpy as np
import torch

from adsim.simulator.history import ACTION_CLICK, ACTION_CONVERSION


def mtp_loss(nll: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor, log_w: torch.Tensor,
             entropy_coef: float) -> dict[str, torch.Tensor]:
    """sum_j w^H_j L_j - tau H(w^H), where L_j is head j's per-sample weighted mean of its summed per-level NLL.

    L_j = sum_b w^V_bj m_bj sum_l nll_bjl / sum_b w^V_bj m_bj: dividing by the batch's total value weight keeps the
    loss on the scale of plain NTP whatever the VAFT weights' magnitude. The entropy term keeps the learned simplex
    weights at w_j ~ exp(-L_j / tau) instead of collapsing onto the lowest-loss head; with one head the result is
    exactly the NTP loss.

    Args:
        nll: (B, N, L) negative log-likelihood of every target code.
        mask: (B, N) bool, which targets exist.
        weight: (B, N) per-target value weights w^V (ones for pre-training).
        log_w: (N,) log head weights.
        entropy_coef: tau.

    Returns:
        ``loss`` (scalar), ``per_head`` (N,) L_j and ``per_level`` (L,) mean NLL per level (head-weighted).
    """
    w = weight * mask  # (B, N)
    denom = w.sum(dim=0).clamp(min=1e-12)  # (N,)
    per_head_level = (w[..., None] * nll).sum(dim=0) / denom[:, None]  # (N, L)
    per_head = per_head_level.sum(dim=-1)  # (N,)
    head_w = log_w.exp()
    loss = (head_w * per_head).sum()
    if len(log_w) > 1:
        loss = loss + entropy_coef * (head_w * log_w).sum()
    per_level = (head_w[:, None] * per_head_level).sum(dim=0)
    return {"loss": loss, "per_head": per_head.detach(), "per_level": per_level.detach()}


def vaft_raw_weights(action: np.ndarray, ecpm: np.ndarray, pctr: np.ndarray, pcvr: np.ndarray) -> np.ndarray:
    """Unnormalised w^V: eCPM for an impression, eCPM / pCTR for a click, eCPM / (pCTR pCVR) for a conversion.

    With pCTR, pCVR in (0, 1] the ordering conversion >= click >= impression holds for the same ad and eCPM;
    denominators are floored at 1e-6.
    """
    denom = np.where(action == ACTION_CONVERSION, pctr * pcvr, np.where(action == ACTION_CLICK, pctr, 1.0))
    return np.asarray(ecpm, dtype=np.float64) / np.maximum(denom, 1e-6)


def vaft_weights(action: np.ndarray, ecpm: np.ndarray, pctr: np.ndarray, pcvr: np.ndarray, scale: float,
                 clip: float) -> np.ndarray:
    """w^V normalised to mean ~1 over the training data (divide by ``scale``, its mean raw weight) and clipped at
    ``clip``, so one conversion on an expensive ad cannot dominate a batch."""
    return np.minimum(vaft_raw_weights(action, ecpm, pctr, pcvr) / scale, clip).astype(np.float32)
