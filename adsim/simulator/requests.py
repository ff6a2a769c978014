"""Request streams: replayed logged requests by split, mixed with Anticipatory Request Rehearsal (ARR).

ARR (GPR) rehearses requests that have not happened yet, so post-training sees the near future rather than only
the past: for each user active in a split it builds synthetic requests from the user's current state. The user
token is reused as is; the organic tokens are the user's most recent organic content before the request (the
history builder reads them by time, which is why a synthetic request carries a timestamp after the user's last
logged request); the environment token (hour, device, placement) is drawn from the split's context
distribution. Frequency follows activity: a user gets synthetic requests in proportion to the mean gap of their
activity group (every few hours for UG5, about once in several days for UG1). Synthetic requests have negative
ids and ``is_synthetic=True``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from adsim.data.bundle import Scenario
from adsim.errors import AdSimDataError
from adsim.world.config import WorldConfig
from adsim.world.rng import stream
from adsim.world.traffic import SECONDS_PER_DAY, SLOTS_PER_PLACEMENT

REQUEST_COLUMNS = ("request_id", "user_id", "ts", "day", "hour", "device", "placement", "n_slots", "privacy",
                   "is_synthetic")


def logged_requests(scenario: Scenario, split: str | None) -> pd.DataFrame:
    """The logged requests of ``split`` ("train", "valid", "test" or None for all), in time order."""
    req = scenario.table("requests")
    if split is not None:
        splits = set(req["split"].astype(str).unique())
        if split not in {"train", "valid", "test"}:
            raise ValueError(f"split must be 'train', 'valid', 'test' or None, got {split!r}")
        req = req[req["split"].astype(str).to_numpy() == split]
        if len(req) == 0:
            raise AdSimDataError(f"split {split!r} has no requests (splits present: {sorted(splits)})",
                                 file=str(scenario.path), column="split")
    return req.loc[:, list(REQUEST_COLUMNS)].reset_index(drop=True)


def anticipatory_requests(scenario: Scenario, split: str | None, n: int, seed: int) -> pd.DataFrame:
    """``n`` synthetic future requests for the users active in ``split`` (see the module docstring)."""
    base = logged_requests(scenario, split)
    rng = stream(seed, "arr", n)
    users = scenario.table("users")
    last = base.groupby("user_id", sort=True)["ts"].max()
    group = users["activity_group"].to_numpy()[last.index.to_numpy()]
    per_day = np.asarray((scenario.config or WorldConfig()).activity_rates)[group - 1]
    pick = rng.choice(len(last), size=n, p=per_day / per_day.sum())
    gap = rng.exponential(SECONDS_PER_DAY / per_day[pick])
    ts = last.to_numpy()[pick] + np.maximum(gap, 1).astype(np.int64)
    context = base.iloc[rng.integers(0, len(base), size=n)]
    n_days = int(scenario.table("requests")["day"].max()) + 1
    placement = context["placement"].to_numpy()
    out = pd.DataFrame({
        "request_id": -1 - np.arange(n, dtype=np.int64),
        "user_id": last.index.to_numpy()[pick].astype(np.int64),
        "ts": ts,
        "day": np.minimum(ts // SECONDS_PER_DAY, n_days - 1).astype(np.int16),
        "hour": context["hour"].to_numpy(),
        "device": context["device"].to_numpy(),
        "placement": placement,
        "n_slots": SLOTS_PER_PLACEMENT[placement].astype(np.int8),
        "privacy": context["privacy"].to_numpy(),
        "is_synthetic": np.ones(n, dtype=bool),
    })
    return out.sort_values("ts", kind="stable", ignore_index=True)


class RequestStream:
    """Seeded sampler of requests from a split, a share ``arr_ratio`` of them anticipatory."""

    def __init__(self, scenario: Scenario, split: str | None = "train", arr_ratio: float = 0.0, seed: int = 0,
                 arr_pool: int | None = None):
        if not 0.0 <= arr_ratio <= 1.0:
            raise ValueError(f"arr_ratio must be in [0, 1], got {arr_ratio}")
        self.logged = logged_requests(scenario, split)
        self.arr_ratio = arr_ratio
        pool = arr_pool or max(len(self.logged) // 4, 1)
        self.synthetic = anticipatory_requests(scenario, split, pool, seed) if arr_ratio > 0 else self.logged.iloc[:0]
        self.rng = stream(seed, "request_stream")

    def __len__(self) -> int:
        return len(self.logged)

    def sample(self, n: int) -> pd.DataFrame:
        """``n`` requests drawn with replacement; each is synthetic with probability ``arr_ratio``."""
        synthetic = self.rng.random(n) < self.arr_ratio
        rows_logged = self.rng.integers(0, len(self.logged), size=n)
        rows_synth = self.rng.integers(0, max(len(self.synthetic), 1), size=n)
        logged = self.logged.iloc[rows_logged[~synthetic]]
        synth = self.synthetic.iloc[rows_synth[synthetic]]
        out = pd.concat([logged, synth]) if len(synth) else logged
        order = np.argsort(np.concatenate([np.flatnonzero(~synthetic), np.flatnonzero(synthetic)]), kind="stable")
        return out.iloc[order].reset_index(drop=True)

    def in_order(self) -> pd.DataFrame:
        """Every logged request of the split in time order (for evaluation replay)."""
        return self.logged
