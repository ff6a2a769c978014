"""Fixed-shape observation features of requests: user, context and the recent history as SID tokens.

Shared by the Gymnasium env (one request) and its vector env (many): one vectorised builder, no per-row loops.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from adsim.data.bundle import Scenario
from adsim.simulator import kernels
from adsim.simulator.history import ACTION_CLICK, ACTION_CONVERSION, ACTION_IMPRESSION, ad_index, organic_index
from adsim.simulator.kernels import Backend, HistoryTables
from adsim.simulator.requests import RequestBatch

TOKEN_PAD, TOKEN_U, TOKEN_O, TOKEN_E, TOKEN_I = 0, 1, 2, 3, 4
"""Token types of the unified U/O/E/I sequence (GPR 4.2.1): padding, user, organic view, environment, ad
interaction. The one vocabulary of the env's history and of the agents' sequence models."""
N_TOKEN_TYPES = 5
TOKEN_ORGANIC, TOKEN_IMPRESSION = TOKEN_O, TOKEN_I
TOKEN_CLICK = TOKEN_I + ACTION_CLICK - ACTION_IMPRESSION
TOKEN_CONVERSION = TOKEN_I + ACTION_CONVERSION - ACTION_IMPRESSION
"""The env's history types (0 pad, 2 organic, 4 impression, 5 click, 6 conversion): U and E travel as feature
vectors instead, and an I-token's type carries its action."""
N_HISTORY_TYPES = TOKEN_CONVERSION + 1
USER_FEATURES = ("age_bucket", "gender", "region", "activity_group", "primary_device")
CONTEXT_FEATURES = ("hour", "device", "placement", "n_slots", "privacy", "is_synthetic")


@dataclass(frozen=True)
class HistoryConfig:
    organic: int = 16
    """Most recent organic views kept (O-tokens)."""
    ads: int = 16
    """Most recent ad interactions kept (I-tokens)."""

    @property
    def length(self) -> int:
        return self.organic + self.ads


class ObservationBuilder:
    """Builds the U/E feature vectors and the O/I token history of a batch of requests."""

    def __init__(self, scenario: Scenario, ad_codes: np.ndarray, organic_codes: np.ndarray,
                 history: HistoryConfig | None = None):
        self.history = history or HistoryConfig()
        self.depth = ad_codes.shape[1]
        users = scenario.table("users")
        self.user_features = users.loc[:, list(USER_FEATURES)].to_numpy(dtype=np.float32)
        self.user_high = np.maximum(self.user_features.max(axis=0), 1).astype(np.float32)
        """Upper bounds of the feature vectors, for the env's observation space."""
        self.context_high = np.array([23, 2, 2, 3, 1, 1], dtype=np.float32)
        self.ad_codes = np.asarray(ad_codes, dtype=np.int64)
        pad = self.depth - organic_codes.shape[1]
        self.organic_codes = np.pad(np.asarray(organic_codes, dtype=np.int64), ((0, 0), (0, pad)), constant_values=-1)
        self.organic = organic_index(scenario)
        self.ads = ad_index(scenario)

    @cached_property
    def tables(self) -> HistoryTables:
        """The history as the compiled kernels read it."""
        return HistoryTables(self.organic.tables("item_id"), self.ads.tables("ad_id", "action"), self.organic_codes,
                             self.ad_codes, np.array([TOKEN_PAD, TOKEN_ORGANIC, TOKEN_IMPRESSION], dtype=np.int64),
                             self.history.organic)

    def context(self, requests: RequestBatch) -> np.ndarray:
        """(B, 6) float32 context features."""
        return np.stack([np.asarray(requests[c], dtype=np.float32) for c in CONTEXT_FEATURES], axis=1)

    def build(self, requests: RequestBatch, backend: Backend = "reference") -> dict[str, np.ndarray]:
        """user (B, 5), context (B, 6) float32; history_codes (B, H, L) and history_type (B, H) int64."""
        kernels.check_backend(backend)
        users, ts = np.asarray(requests["user_id"]), np.asarray(requests["ts"])
        if backend == "compiled":
            b, h = len(users), self.history.length
            codes, types = np.empty((b, h, self.depth), dtype=np.int64), np.empty((b, h), dtype=np.int64)
            kernels.history_rows(np.ascontiguousarray(users, dtype=np.int64), np.ascontiguousarray(ts, dtype=np.int64),
                                 kernels.plain(self.tables), codes, types)
            return {"user": self.user_features[users], "context": self.context(requests), "history_codes": codes,
                    "history_type": types}
        o_rows, o_valid = self.organic.last(users, ts, self.history.organic)
        a_rows, a_valid = self.ads.last(users, ts, self.history.ads)
        if len(self.organic_codes):
            o_codes = np.where(o_valid[..., None], self.organic_codes[self.organic.payload["item_id"][o_rows]], -1)
        else:  # no organic views at all (an import without them): an empty organic history
            o_codes = np.full((*o_rows.shape, self.depth), -1, dtype=np.int64)
        a_codes = np.where(a_valid[..., None], self.ad_codes[self.ads.payload["ad_id"][a_rows]], -1)
        a_type = TOKEN_IMPRESSION - ACTION_IMPRESSION + self.ads.payload["action"][a_rows].astype(np.int64)
        return {
            "user": self.user_features[users],
            "context": self.context(requests),
            "history_codes": np.concatenate([o_codes, a_codes], axis=1),
            "history_type": np.concatenate([np.where(o_valid, TOKEN_ORGANIC, TOKEN_PAD),
                                            np.where(a_valid, a_type, TOKEN_PAD)], axis=1).astype(np.int64),
        }
