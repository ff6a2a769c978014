"""A user's history before a moment, gathered for a batch of requests without per-row Python loops.

Events of one kind (organic views, ad impressions) are sorted by (user, time) once; the last ``n`` events of a
user strictly before ``ts`` are then a contiguous slice found by one ``searchsorted`` on a combined key.
"""

from __future__ import annotations

import numpy as np

from adsim.data.bundle import Scenario

ACTION_IMPRESSION, ACTION_CLICK, ACTION_CONVERSION = 1, 2, 3
"""Action type of an ad interaction: the deepest response it got."""


class EventIndex:
    """Per-user, time-sorted events with a payload; answers "the last n before ts" for many users at once."""

    def __init__(self, user_ids: np.ndarray, ts: np.ndarray, payload: dict[str, np.ndarray]):
        order = np.lexsort((ts, user_ids))
        self.user_ids = np.asarray(user_ids)[order].astype(np.int32)
        self.ts = np.asarray(ts)[order].astype(np.int64)
        self.payload = {k: np.asarray(v)[order] for k, v in payload.items()}
        self._span = int(self.ts.max()) + 2 if len(self.ts) else 2
        self._key = self.user_ids.astype(np.int64) * self._span + self.ts

    def last(self, user_ids: np.ndarray, ts: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(B, n) row positions of each user's last ``n`` events before ``ts`` (most recent last) and a valid mask.

        Rows are left-padded: invalid slots come first, so the most recent event is always at column n-1.
        """
        user_ids = np.asarray(user_ids, dtype=np.int64)
        ts = np.minimum(np.asarray(ts, dtype=np.int64), self._span - 1)
        end = np.searchsorted(self._key, user_ids * self._span + ts, side="left")  # events strictly before ts
        start = np.searchsorted(self._key, user_ids * self._span, side="left")
        idx = end[:, None] - n + np.arange(n)[None, :]
        valid = idx >= start[:, None]
        return np.where(valid, idx, 0), valid


def organic_index(scenario: Scenario) -> EventIndex:
    events = scenario.table("organic_events")
    return EventIndex(events["user_id"].to_numpy(), events["ts"].to_numpy(),
                      {"item_id": events["item_id"].to_numpy().astype(np.int32)})


def ad_index(scenario: Scenario, split_end_ts: int | None = None) -> EventIndex:
    """Logged ad interactions with their action type; only those before ``split_end_ts`` if given."""
    imp, req = scenario.table("impressions"), scenario.table("requests")
    pos = np.searchsorted(req["request_id"].to_numpy(), imp["request_id"].to_numpy())
    ts = req["ts"].to_numpy()[pos]
    action = np.where(imp["conversion"].to_numpy(), ACTION_CONVERSION,
                      np.where(imp["click"].to_numpy(), ACTION_CLICK, ACTION_IMPRESSION))
    keep = np.ones(len(ts), dtype=bool) if split_end_ts is None else ts < split_end_ts
    return EventIndex(req["user_id"].to_numpy()[pos][keep], ts[keep],
                      {"ad_id": imp["ad_id"].to_numpy()[keep].astype(np.int32), "action": action[keep].astype(np.int8)})
