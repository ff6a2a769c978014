"""Histories before a moment, for a batch of requests without per-row Python loops: the one "events before t" index.

Events of one kind (organic views, ad impressions, clicks, user x ad-key outcomes) are sorted by (group, time) once;
"the group's events strictly before ts" is then one ``searchsorted`` on a packed ``group << shift | ts`` key. The
observation builder, the simulator's process rewards, the sequence models and the reward-model features all use it.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from adsim.data.bundle import Scenario
from adsim.simulator import kernels
from adsim.simulator.kernels import Backend, EventTables

ACTION_IMPRESSION, ACTION_CLICK, ACTION_CONVERSION = 1, 2, 3
"""Action type of an ad interaction: the deepest response it got."""


class EventIndex:
    """Events sorted by (group, time) behind a sentinel at index 0, with payloads and running counts.

    ``code`` packs ``group << shift | ts``; index 0 is a sentinel (code -1, zero counts, zero payload), so a search
    always lands on a real index and "no event" is index 0. ``cum`` holds running ``counts`` within each group, the
    event itself included (default: one per event). Groups are any non-negative int64 (a user, or user x key).
    Queries later than every event clip to "after all of them".
    """

    def __init__(self, group: np.ndarray, ts: np.ndarray, payload: dict[str, np.ndarray] | None = None,
                 counts: np.ndarray | None = None, shift: int | None = None):
        order = np.lexsort((ts, group))
        group = np.asarray(group, dtype=np.int64)[order]
        ts = np.asarray(ts, dtype=np.int64)[order]
        self.shift = int(ts.max(initial=0) + 2).bit_length() if shift is None else shift
        """Time bits of a code (at least those of the latest event + 2)."""
        self.code = np.r_[-1, (group << self.shift) | ts]
        self.ts = np.r_[-1, ts]
        """Event times by index (-1 for the sentinel)."""
        self.payload = {k: np.r_[np.zeros(1, np.asarray(v).dtype), np.asarray(v)[order]]
                        for k, v in (payload or {}).items()}
        counts = np.ones((len(order), 1)) if counts is None else np.asarray(counts, dtype=np.float64)[order]
        total = np.cumsum(counts, axis=0)
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if len(group) else np.zeros(0, np.int64)
        lengths = np.diff(np.r_[starts, len(group)])
        cum = total - np.repeat((total - counts)[starts], lengths, axis=0)  # restart the running sum per group
        self.cum = np.concatenate([np.zeros((1, counts.shape[1])), cum]).astype(np.float32)

    def __len__(self) -> int:
        return len(self.code) - 1

    def last_before(self, group: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Index of each group's last event strictly before ``ts``; 0 (the sentinel) when there is none."""
        group = np.asarray(group, dtype=np.int64)
        ts = np.minimum(np.maximum(np.asarray(ts, dtype=np.int64), 0), (1 << self.shift) - 1)
        i = np.searchsorted(self.code, (group << self.shift) | ts) - 1
        return np.where((self.code[i] >> self.shift) == group, i, 0)

    def first_at_or_after(self, group: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Index of each group's first event at or after ``ts``; 0 (the sentinel) when there is none."""
        group = np.asarray(group, dtype=np.int64)
        ts = np.minimum(np.maximum(np.asarray(ts, dtype=np.int64), 0), (1 << self.shift) - 1)
        i = np.minimum(np.searchsorted(self.code, (group << self.shift) | ts), len(self.code) - 1)
        return np.where((self.code[i] >> self.shift) == group, i, 0)

    def counts_before(self, group: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """(..., C) running counts of each group strictly before ``ts``."""
        return self.cum[self.last_before(group, ts)]

    def window(self, group: np.ndarray, last: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(N, size) indexes of the ``size`` events up to ``last`` (from ``last_before``) of each group, newest
        first, and a valid mask."""
        idx = np.maximum(last[:, None] - np.arange(size), 0)
        return idx, (self.code[idx] >> self.shift) == np.asarray(group, dtype=np.int64)[:, None]

    def tables(self, item: str, action: str | None = None) -> EventTables:
        """The arrays the compiled kernels read: codes, and payloads ``item`` and ``action`` (a placeholder, never
        read, if None)."""
        actions = self.payload[action] if action else np.zeros(1, dtype=np.int8)
        return EventTables(self.code, self.shift, self.payload[item], actions, self.group_offsets)

    @cached_property
    def group_offsets(self) -> np.ndarray:
        """(n_groups + 1,) first index of each group's events (groups 0 .. the largest one), for the kernels;
        just (1,) when groups are sparse (user x key ids), where the kernels then search all events."""
        n_groups = int(self.code[-1] >> self.shift) + 1 if len(self) else 0
        if n_groups > 4 * len(self) + 1024:
            n_groups = 0
        return np.searchsorted(self.code, np.arange(n_groups + 1, dtype=np.int64) << self.shift).astype(np.int64)

    def last(self, group: np.ndarray, ts: np.ndarray, n: int, backend: Backend = "reference"
             ) -> tuple[np.ndarray, np.ndarray]:
        """(B, n) indexes of each group's last ``n`` events before ``ts`` (most recent last) and a valid mask.

        Rows are left-padded: invalid slots come first (index 0, the sentinel), so the most recent event is always
        at column n-1.
        """
        kernels.check_backend(backend)
        if backend == "compiled":
            group, ts = (np.ascontiguousarray(a, dtype=np.int64).reshape(-1) for a in (group, ts))
            rows, valid = np.empty((len(group), n), dtype=np.int64), np.empty((len(group), n), dtype=bool)
            kernels.last_events_rows(self.code, self.shift, self.group_offsets, group, ts, rows, valid)
            return rows, valid
        idx, valid = self.window(group, self.last_before(group, ts), n)
        idx, valid = idx[:, ::-1], valid[:, ::-1]
        return np.where(valid, idx, 0), valid


def organic_index(scenario: Scenario) -> EventIndex:
    events = scenario.table("organic_events")
    return EventIndex(events["user_id"].to_numpy(), events["ts"].to_numpy(),
                      {"item_id": events["item_id"].to_numpy().astype(np.int32)})


def ad_index(scenario: Scenario, split_end_ts: int | None = None, min_action: int = ACTION_IMPRESSION) -> EventIndex:
    """Logged ad interactions with their action type; only those before ``split_end_ts`` if given, and only those
    that got at least ``min_action`` (``ACTION_CLICK``: the user's successes)."""
    imp, req = scenario.table("impressions"), scenario.table("requests")
    pos = np.searchsorted(req["request_id"].to_numpy(), imp["request_id"].to_numpy())
    ts = req["ts"].to_numpy()[pos]
    action = np.where(imp["conversion"].to_numpy(), ACTION_CONVERSION,
                      np.where(imp["click"].to_numpy(), ACTION_CLICK, ACTION_IMPRESSION))
    keep = action >= min_action
    if split_end_ts is not None:
        keep &= ts < split_end_ts
    return EventIndex(req["user_id"].to_numpy()[pos][keep], ts[keep],
                      {"ad_id": imp["ad_id"].to_numpy()[keep].astype(np.int32), "action": action[keep].astype(np.int8)})
