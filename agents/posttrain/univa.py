"""UniVA's post-training pieces (univa_paper.txt 3.3-3.4): its RL candidates, its critic's advantages, its SL batch.

* Candidates (eq. 14): Y(h) = Y_beam(pi) u Y_mcts-ppo(pi, V). ``round(beam_share * K)`` paths come from beam search
  on the policy (the fused Generation-as-Ranking policy when ``HHDConfig.gar``), the rest from MCTS-PPO: PUCT over
  the request's personalised trie with the policy's conditionals as priors and the HTE value head as the evaluator
  of every node, full paths included (``MCTSConfig.leaf="value"``), so the search calls no simulator and the
  method spends the same budget as every other (only the K returned paths are scored). The search's paths are
  taken best value first, skipping those the beam already holds; slots still open are filled by policy samples.
  Candidate 0 is always a policy sample (what market mode serves), then the beam, then the search.
  ``simulations=0`` (the "w/o MCTS-PPO" ablation) fills all of them with samples.
* Advantages (eq. 17-18, ``objectives.univa_advantages``): the reward z-scored within the request, GAE over the
  levels against v_l = o_value^(l)[a_l], the value head's estimate after choosing a_l; its targets G_l = A_l + v_l.
* SL batch (eq. 13, 22): after every RL batch, one supervised batch of logged training sequences (MTP's
  next-SID NLL of the generation head, masked to the global trie), so the trunk keeps its generation ability while
  RL moves the fused policy.

The ratio's denominator, as for V-STAR's VED: beam and search paths are not policy samples, so they are scored under
the collecting policy (``agents.posttrain.train.draw``); UniVA's lagged reference policy is that collecting policy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from adsim.simulator.requests import RequestBatch
from agents.hhd.decoding import BeamConfig, beam_search, path_legal_masks
from agents.hhd.model import HHD, mixture_step
from agents.hhd.sequences import Batch
from agents.mcts.search import MCTS, MCTSConfig


@dataclass(frozen=True)
class UniVASampling:
    """How the ``univa`` sampler fills K slots (from ``PostTrainConfig``'s beam_share, mcts_simulations, gar)."""

    beam_share: float = 0.5
    simulations: int = 32
    """MCTS-PPO simulations per request; 0: no search (the open slots are policy samples)."""
    value: bool = True
    """The search's evaluator is the value head (False: values 0, priors alone guide it)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.beam_share <= 1.0:
            raise ValueError(f"beam_share must be a share in (0, 1], got {self.beam_share}")
        if self.simulations < 0:
            raise ValueError(f"mcts_simulations must be >= 0, got {self.simulations}")


class HHDPriorValue:
    """An HHD as MCTS-PPO's PriorValueFn: priors are the policy's conditionals at the prefix, values the HTE head's
    V(s, z_{1:d}) (the root value at the empty prefix; 0 with ``value=False``). ``batch_of`` turns requests into
    model inputs."""

    def __init__(self, model: HHD, batch_of, value: bool = True):
        self.model, self.batch_of, self.value = model, batch_of, value

    @torch.no_grad()
    def __call__(self, requests: RequestBatch, prefixes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        model = self.model
        n, width = len(prefixes), model.config.width
        priors, values = np.zeros((n, width)), np.zeros(n)
        depth = (np.asarray(prefixes) >= 0).sum(axis=1)
        for d in np.unique(depth):
            rows = np.flatnonzero(depth == d)
            sub = {k: np.asarray(v)[rows] for k, v in requests.items()}
            memory = model.encode(self.batch_of(sub)).memory
            prefix = torch.as_tensor(np.asarray(prefixes)[rows, :d], dtype=torch.long)
            log_w, cum = model.log_head_weights(), memory.new_zeros(len(rows), model.config.mtp_heads)
            for level in range(int(d)):  # each head's log-prob of the prefix, for the mixture's conditional
                head_lp = model.head_log_probs(memory, prefix[:, :level], model.legal_codes(prefix[:, :level], None))
                cum = cum + head_lp.gather(2, prefix[:, level, None, None].expand(-1, head_lp.shape[1], 1))[..., 0]
            if d < model.config.depth:
                mask = model.legal_codes(prefix, None)
                priors[rows] = mixture_step(log_w, cum, model.head_log_probs(memory, prefix, mask)).exp().numpy()
            if model.value is None or not self.value:
                continue
            if d == 0:
                values[rows] = model.value.root(model.value.summary(memory))[:, 0].numpy()
            else:
                child = model.value.child_values(memory, prefix[:, :-1])  # (n, W)
                values[rows] = child.gather(1, prefix[:, -1:])[:, 0].numpy()
        return priors, values


def _distinct(paths: np.ndarray) -> np.ndarray:
    """Rows of (n, L) paths without repeats, first occurrence order, -1 rows dropped."""
    paths = paths[paths[:, 0] >= 0]
    _, first = np.unique(paths, axis=0, return_index=True)
    return paths[np.sort(first)]


@torch.no_grad()
def univa_candidates(model: HHD, batch_of, legal, simulator, requests: RequestBatch, allowed: np.ndarray, k: int,
                     samples: torch.Tensor, sampling: UniVASampling, seed: int = 0) -> np.ndarray:
    """(B, K, L) UniVA candidates per request (module docstring). ``samples`` (B, K, L) are policy samples that fill
    the slots beam and search leave open; ``legal`` is the requests' (B rows) trie legality."""
    b, depth = len(allowed), model.config.depth
    n_beam = min(k, max(1, round(sampling.beam_share * k)))
    beam = beam_search(model, batch_of(requests), legal, BeamConfig(beam=n_beam)).paths  # (B, n_beam, L)
    searched = None
    if sampling.simulations and k > n_beam:
        cfg = MCTSConfig(num_simulations=sampling.simulations, rule="puct", leaf="value", top_k=k, seed=seed)
        evaluator = HHDPriorValue(model, batch_of, sampling.value)
        searched = MCTS(simulator, cfg, evaluator).search(requests, allowed).paths
    out = np.empty((b, k, depth), dtype=np.int64)
    for r in range(b):
        drawn = samples[r].numpy()
        parts = [drawn[:1], beam[r]] + ([searched[r]] if searched is not None else []) + [drawn]
        pool = _distinct(np.concatenate(parts))
        if len(pool) < k:  # fewer distinct legal paths than K: repeat samples
            pool = np.concatenate([pool, samples[r].numpy()])
        out[r] = pool[:k]
    return out


def supervised_loss(model: HHD, batch: Batch, legal) -> torch.Tensor:
    """UniVA eq. 13: the generation head's next-SID NLL on logged sequences (MTP's loss, masked to the trie)."""
    target_legal = path_legal_masks(legal, torch.as_tensor(batch.target_codes))
    return model.loss(batch.to("cpu"), target_legal)["loss"]

