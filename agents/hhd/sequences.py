"""Unified U/O/E/I token sequences (GPR 4.2.1) for a batch of logged requests, built with array operations only.

A sample is one logged impression. Its sequence describes the moment just before the request was served:

    [pad ... pad, U, (O and I tokens merged in time order), E]

* U-token: the user's profile features (``USER_FEATURES``).
* O-tokens: the user's most recent organic views, each carrying the item's semantic SID levels.
* I-tokens: the user's most recent ad interactions, each carrying the ad's full SID path and its action type
  (1 impression, 2 click, 3 conversion).
* E-token: the request context (``ENV_FEATURES``), last because it is the newest thing known. The model reads the
  user's intent at this position, so rows are left-padded and the E-token is always column ``T - 1``.

Only events strictly before the request enter the sequence. Targets are the user's next ``n_targets`` logged ad
impressions from this one on (head j of multi-token prediction learns the j-th), each with its action type and the
sample index a value source can look up eCPM / pCTR / pCVR by. Targets from another split are masked, so training
never sees held-out labels.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from adsim.data.bundle import Scenario
from adsim.data.schema import TABLES
from adsim.datasets.amazon_industrial import REFERENCE_CODEBOOK_SIZES, load_amazon_industrial
from adsim.paths import cache_dir
from adsim.sid import FORMAT_VERSION as SID_FORMAT
from adsim.sid.pipeline import SidArtifacts, SidConfig, fit_scenario_sids
from adsim.simulator.history import (
    ACTION_CLICK,
    ACTION_CONVERSION,
    ACTION_IMPRESSION,
    EventIndex,
    ad_index,
    organic_index,
)
from envs.observation import TOKEN_E, TOKEN_I, TOKEN_O, TOKEN_PAD, TOKEN_U, USER_FEATURES

ENV_FEATURES = ("hour", "device", "placement", "position", "privacy", "n_slots")
N_ACTIONS = 4
"""Action ids: 0 none (non-I tokens), 1 impression, 2 click, 3 conversion."""


@dataclass
class SequenceConfig:
    max_len: int = 32
    """Tokens per sequence, U and E included; the oldest events are dropped first."""
    max_organic: int = 16
    """Most recent organic views looked up per request."""
    max_ads: int = 16
    """Most recent ad interactions looked up per request."""
    n_targets: int = 4
    """Next impressions kept as targets (multi-token prediction heads read the first ``mtp_heads``)."""

    def __post_init__(self) -> None:
        if self.max_len < 3 or self.n_targets < 1:
            raise ValueError(f"need max_len >= 3 and n_targets >= 1, got {self.max_len}, {self.n_targets}")


@dataclass
class Batch:
    """One batch of sequences and targets. Arrays are numpy until ``to(device)`` turns the model's inputs to torch."""

    token_type: Any
    """(B, T) int64 TOKEN_* ids; padding on the left, E-token at T-1."""
    codes: Any
    """(B, T, L) int64 SID codes of O/I tokens, -1 where a token has no code at that level."""
    action: Any
    """(B, T) int64 action of I-tokens, 0 elsewhere."""
    age: Any
    """(B, T) float32 seconds between the event and the request (0 for U/E and padding)."""
    user_feats: Any
    """(B, F_u) int64 U-token features."""
    env_feats: Any
    """(B, F_e) int64 E-token features."""
    target_codes: Any
    """(B, N, L) int64 SID paths of the next N impressions."""
    target_mask: Any
    """(B, N) bool: target j exists (same user, same split)."""
    target_action: Any
    """(B, N) int64 action type of each target."""
    target_index: np.ndarray
    """(B, N) int64 sample index of each target (-1 if masked), for value sources. Stays numpy."""
    target_weight: Any = None
    """(B, N) float32 per-target loss weight (VAFT); ones when not set."""
    target_value: Any = None
    """(B,) float32 normalised final_value of the first target, the HTE regression target."""

    def __len__(self) -> int:
        return len(self.token_type)

    def to(self, device: torch.device | str) -> Batch:
        """A copy with every array but ``target_index`` as a torch tensor on ``device``."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "target_index" and isinstance(value, np.ndarray):
                value = torch.as_tensor(value).to(device)
            out[f.name] = value
        return Batch(**out)

    def take(self, rows: np.ndarray) -> Batch:
        """The subset ``rows`` (a numpy index) of the batch, numpy or torch."""
        return Batch(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[rows]
                        for f in fields(self)})


def pack_tokens(
    config: SequenceConfig,
    organic: tuple[np.ndarray, np.ndarray, np.ndarray],
    ads: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> dict[str, np.ndarray]:
    """Merge O and I events by time, keep the newest ``max_len - 2``, frame them with U and E, left-pad.

    Args:
        config: the sequence lengths.
        organic: (codes (B, n_o, L) with -1 padding, age (B, n_o) seconds before the request, valid (B, n_o)).
        ads: (codes (B, n_i, L), action (B, n_i), age (B, n_i), valid (B, n_i)).
    """
    o_codes, o_age, o_valid = organic
    i_codes, i_action, i_age, i_valid = ads
    B, L = o_codes.shape[0], o_codes.shape[2]
    codes = np.concatenate([o_codes, i_codes], axis=1)  # (B, n_o + n_i, L)
    ttype = np.concatenate([np.where(o_valid, TOKEN_O, TOKEN_PAD), np.where(i_valid, TOKEN_I, TOKEN_PAD)], axis=1)
    action = np.concatenate([np.zeros_like(o_age, dtype=np.int64), i_action.astype(np.int64)], axis=1)
    age = np.concatenate([o_age, i_age], axis=1).astype(np.float64)
    # oldest first, padding before everything; stable, so equal times keep O-before-I and logged slot order
    key = np.where(ttype != TOKEN_PAD, -age, -np.inf)
    keep = config.max_len - 2
    order = np.argsort(key, axis=1, kind="stable")[:, -keep:]  # (B, <=keep)
    pad = keep - order.shape[1]
    if pad > 0:  # fewer events than room: left-pad with empty columns
        order = np.concatenate([np.full((B, pad), -1), order], axis=1)
    order, short = np.maximum(order, 0), order < 0
    ev_type = np.where(short, TOKEN_PAD, np.take_along_axis(ttype, order, 1))
    valid = ev_type != TOKEN_PAD
    ev_codes = np.where(valid[..., None], np.take_along_axis(codes, order[..., None], 1), -1)
    ev_action = np.where(valid, np.take_along_axis(action, order, 1), 0)
    ev_age = np.where(valid, np.take_along_axis(age, order, 1), 0.0)

    # frame with U (first) and E (last), then move padding to the left: pads < U < events (in order) < E
    col = np.arange(keep)[None, :]
    token_type = np.concatenate([np.full((B, 1), TOKEN_U), ev_type, np.full((B, 1), TOKEN_E)], axis=1)
    rank = np.concatenate([np.ones((B, 1)), np.where(ev_type != TOKEN_PAD, 2 + col, 0), np.full((B, 1), keep + 2)],
                          axis=1)
    order = np.argsort(rank, axis=1, kind="stable")  # (B, T)
    framed_codes = np.concatenate([np.full((B, 1, L), -1), ev_codes, np.full((B, 1, L), -1)], axis=1)
    zeros = np.zeros((B, 1))
    return {
        "token_type": np.take_along_axis(token_type, order, 1).astype(np.int64),
        "codes": np.take_along_axis(framed_codes, order[..., None], 1).astype(np.int64),
        "action": np.take_along_axis(np.concatenate([zeros, ev_action, zeros], 1), order, 1).astype(np.int64),
        "age": np.take_along_axis(np.concatenate([zeros, ev_age, zeros], 1), order, 1).astype(np.float32),
    }


def next_targets(user: np.ndarray, split: np.ndarray, n: int) -> np.ndarray:
    """(S, n) index of each sample's j-th next sample of the same user and split, -1 where there is none.

    Samples must be sorted in each user's time order.
    """
    k = np.arange(len(user))[:, None] + np.arange(n)[None, :]
    inside = k < len(user)
    kk = np.minimum(k, len(user) - 1)
    same = inside & (user[kk] == user[:, None]) & (split[kk] == split[:, None])
    return np.where(same, kk, -1)


def env_vocab(name: str) -> int:
    """Embedding rows of an E-token feature: its schema maximum + 1 (2 for a flag)."""
    column = next(c for table in ("requests", "impressions") for c in TABLES[table] if c.name == name)
    return 2 if column.max_value is None else int(column.max_value) + 1


def _pad_levels(codes: np.ndarray, depth: int) -> np.ndarray:
    """Right-pad the last axis of ``codes`` with -1 up to ``depth`` levels."""
    missing = depth - codes.shape[-1]
    if missing <= 0:
        return codes
    return np.concatenate([codes, np.full(codes.shape[:-1] + (missing,), -1, dtype=codes.dtype)], axis=-1)


class Sequences:
    """A table of samples (one per logged impression) that builds batches by index.

    Attributes:
        samples: column name -> (S,) array, in each user's time order. Always ``ad_id``, ``user_id``, ``ts``,
            ``day``, ``action``, ``ranking_ecpm``, ``gmv``, ``split``; value sources may read any of them.
        item_codes: (n_items, L) SID path of every ad (the decoding inventory).
        codebook_sizes: codes per level.
        user_vocab / env_vocab: embedding sizes of the U- and E-token features.
    """

    samples: dict[str, np.ndarray]
    item_codes: np.ndarray
    codebook_sizes: tuple[int, ...]
    user_vocab: tuple[int, ...]
    env_vocab: tuple[int, ...]

    def __init__(self, config: SequenceConfig):
        self.config = config

    @property
    def n_samples(self) -> int:
        return len(self.samples["ad_id"])

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.samples["split"] == split)

    def _finish(self) -> None:
        self.next_index = next_targets(self.samples["user_id"], self.samples["split"], self.config.n_targets)

    def _history(self, idx: np.ndarray) -> tuple[tuple, tuple]:
        raise NotImplementedError

    def _features(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def batch(self, idx: np.ndarray) -> Batch:
        """The batch of samples ``idx`` (any order, repeats allowed)."""
        idx = np.asarray(idx, dtype=np.int64)
        organic, ads = self._history(idx)
        tokens = pack_tokens(self.config, organic, ads)
        user_feats, env_feats = self._features(idx)
        nxt = self.next_index[idx]  # (B, N)
        mask = nxt >= 0
        safe = np.maximum(nxt, 0)
        return Batch(
            **tokens, user_feats=user_feats, env_feats=env_feats,
            target_codes=self.item_codes[self.samples["ad_id"][safe]],
            target_mask=mask,
            target_action=np.where(mask, self.samples["action"][safe], 0).astype(np.int64),
            target_index=np.where(mask, nxt, -1),
        )


class ScenarioSequences(Sequences):
    """Samples and histories of a synthetic (or imported) adsim scenario, with the ads' and organic items' SIDs."""

    def __init__(self, scenario: Scenario, sids: SidArtifacts, config: SequenceConfig | None = None):
        super().__init__(config or SequenceConfig())
        self.item_codes = np.asarray(sids.ad_codes, dtype=np.int64)
        self.organic_codes = _pad_levels(np.asarray(sids.organic_codes, dtype=np.int64), self.item_codes.shape[1])
        self.codebook_sizes = tuple(int(s) for s in sids.tokenizer.codebook_sizes)

        users, req, imp = scenario.table("users"), scenario.table("requests"), scenario.table("impressions")
        self.user_table = np.stack([users[c].to_numpy().astype(np.int64) for c in USER_FEATURES], axis=1)
        self.user_vocab = tuple(int(v) + 1 for v in self.user_table.max(axis=0))
        pos = np.searchsorted(req["request_id"].to_numpy(), imp["request_id"].to_numpy())
        cols = {
            "user_id": req["user_id"].to_numpy()[pos], "ts": req["ts"].to_numpy()[pos],
            "day": req["day"].to_numpy()[pos], "request_id": imp["request_id"].to_numpy(),
            "split": req["split"].astype(str).to_numpy()[pos], "ad_id": imp["ad_id"].to_numpy(),
            "action": np.where(imp["conversion"].to_numpy(), ACTION_CONVERSION,
                               np.where(imp["click"].to_numpy(), ACTION_CLICK, ACTION_IMPRESSION)),
            "ranking_ecpm": imp["ranking_ecpm"].to_numpy(), "gmv": imp["gmv"].to_numpy(),
            "click": imp["click"].to_numpy(), "conversion": imp["conversion"].to_numpy(),
        }
        for name in ENV_FEATURES:
            source = imp if name == "position" else req
            values = source[name].to_numpy()
            cols[name] = (values if name == "position" else values[pos]).astype(np.int64)
        order = np.lexsort((imp["position"].to_numpy(), cols["request_id"], cols["user_id"]))
        self.samples = {k: np.asarray(v)[order] for k, v in cols.items()}
        self.env_vocab = tuple(env_vocab(name) for name in ENV_FEATURES)
        self.organic_events: EventIndex = organic_index(scenario)
        self.ad_events: EventIndex = ad_index(scenario)
        self._finish()

    def _history(self, idx: np.ndarray) -> tuple[tuple, tuple]:
        return self.history_at(self.samples["user_id"][idx], self.samples["ts"][idx])

    def history_at(self, user: np.ndarray, ts: np.ndarray) -> tuple[tuple, tuple]:
        """(organic, ads) event arrays for ``pack_tokens``: each user's newest events strictly before ``ts``."""
        cfg = self.config
        user, ts = np.asarray(user, dtype=np.int64), np.asarray(ts, dtype=np.int64)
        o_rows, o_valid = self.organic_events.last(user, ts, cfg.max_organic)
        o_codes = self.organic_codes[self.organic_events.payload["item_id"][o_rows]]
        o_age = (ts[:, None] - self.organic_events.ts[o_rows]).astype(np.float64)
        a_rows, a_valid = self.ad_events.last(user, ts, cfg.max_ads)
        a_codes = self.item_codes[self.ad_events.payload["ad_id"][a_rows]]
        a_age = (ts[:, None] - self.ad_events.ts[a_rows]).astype(np.float64)
        a_action = self.ad_events.payload["action"][a_rows]
        return (o_codes, o_age, o_valid), (a_codes, a_action, a_age, a_valid)

    def _features(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        env = np.stack([self.samples[c][idx] for c in ENV_FEATURES], axis=1)
        return self.user_table[self.samples["user_id"][idx]], env

    def request_batch(self, user_ids: np.ndarray, ts: np.ndarray, env_feats: np.ndarray) -> Batch:
        """Model inputs for any requests (the simulator's replayed or anticipatory ones), without targets.

        Args:
            user_ids: (B,) users.
            ts: (B,) request times; the histories end strictly before them.
            env_feats: (B, len(ENV_FEATURES)) E-token features in ``ENV_FEATURES`` order.
        """
        user_ids = np.asarray(user_ids, dtype=np.int64)
        B, L = len(user_ids), self.item_codes.shape[1]
        return Batch(**pack_tokens(self.config, *self.history_at(user_ids, ts)), user_feats=self.user_table[user_ids],
                     env_feats=np.asarray(env_feats, dtype=np.int64), target_codes=np.zeros((B, 0, L), np.int64),
                     target_mask=np.zeros((B, 0), bool), target_action=np.zeros((B, 0), np.int64),
                     target_index=np.zeros((B, 0), np.int64))


# ------------------------------------------------------------------------------------------- real Amazon data
class AmazonSequences(Sequences):
    """Real next-item windows (history of <= 10 items, next item); items play the ads, all as impressions.

    Read with ``adsim.datasets.amazon_industrial``; the items' codes are the shipped reference SIDs. The files
    carry no user features, organic views, request context or times, so U and E are constant tokens, there are no
    O-tokens, and an item's "age" is how many steps back it was (in minutes, so the time-bias buckets still separate
    recent from old). Splits are the file names: ``valid`` (train on it) and ``test``.
    """

    def __init__(self, root: str | Path | None = None, config: SequenceConfig | None = None):
        super().__init__(config or SequenceConfig(max_len=12, max_organic=0, max_ads=10))
        data = load_amazon_industrial(root)
        self.item_codes = data.reference_sids
        self.codebook_sizes = REFERENCE_CODEBOOK_SIZES
        seq = data.sequences
        lengths = seq["history"].map(len).to_numpy()
        width = int(lengths.max())
        flat = np.concatenate([np.asarray(h, dtype=np.int64) for h in seq["history"]])
        rows = np.repeat(np.arange(len(seq)), lengths)
        cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        hist = np.full((len(seq), width), -1, dtype=np.int64)
        hist[rows, cols] = flat  # oldest first, padded on the right
        user = seq["user_id"].to_numpy()
        order = np.lexsort((lengths, (seq["split"] == "test").to_numpy(), user))
        self.history = hist[order]
        n = len(seq)
        self.samples = {
            "user_id": pd.factorize(user)[0][order], "ad_id": seq["item_id"].to_numpy(np.int64)[order],
            "split": seq["split"].to_numpy()[order], "action": np.ones(n, dtype=np.int64),
            "ts": lengths[order], "day": np.zeros(n, dtype=np.int64),
            "ranking_ecpm": np.ones(n), "gmv": np.zeros(n),
        }
        self.user_vocab, self.env_vocab = (1,), (1,)
        self._finish()

    def _history(self, idx: np.ndarray) -> tuple[tuple, tuple]:
        hist = self.history[idx]  # (B, width) oldest first, padded on the right
        # rotate the padding to the left so the newest item is the last column, then keep the newest max_ads
        shift = hist.shape[1] - (hist >= 0).sum(axis=1)
        cols = (np.arange(hist.shape[1])[None, :] - shift[:, None]) % hist.shape[1]
        hist = np.take_along_axis(hist, cols, 1)[:, max(hist.shape[1] - self.config.max_ads, 0):]
        valid = hist >= 0
        codes = np.where(valid[..., None], self.item_codes[np.maximum(hist, 0)], -1)
        age = 60.0 * (hist.shape[1] - np.arange(hist.shape[1]))[None, :].repeat(len(idx), 0)
        L = self.item_codes.shape[1]
        empty = (np.zeros((len(idx), 0, L), np.int64), np.zeros((len(idx), 0)), np.zeros((len(idx), 0), bool))
        return empty, (codes, np.where(valid, 1, 0), age, valid)

    def _features(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        zeros = np.zeros((len(idx), 1), dtype=np.int64)
        return zeros, zeros


# ------------------------------------------------------------------------------------------------ SIDs
def scenario_sids(scenario: Scenario, config: SidConfig | None = None, cache: bool = True) -> SidArtifacts:
    """The scenario's SIDs: the bundle's own ``sid/`` if it has one, else fitted (and cached) with ``config``.

    The cache key covers the bundle's file checksums and the SID config, so a rebuilt bundle or another config
    never reuses stale codes. The cache lives under ``adsim.paths.cache_dir()``, never inside the bundle (whose
    manifest checksums its files).
    """
    bundled = scenario.path / "sid"
    if bundled.is_dir() and config is None:
        return SidArtifacts.load(bundled)
    config = config or SidConfig()
    key = json.dumps({"files": scenario.manifest.get("files", {}), "sid": repr(config), "format": SID_FORMAT},
                     sort_keys=True)
    target = cache_dir() / "hhd-sids" / f"{scenario.path.name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    if cache and (target / "meta.json").is_file():
        try:
            return SidArtifacts.load(target)
        except (KeyError, ValueError, OSError):  # written by another version of adsim.sid: fit again
            pass
    sids = fit_scenario_sids(scenario.ad_embeddings, scenario.table("ads"), scenario.organic_embeddings, config)
    if cache:
        sids.save(target)
    return sids
