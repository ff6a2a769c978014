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

from collections.abc import Mapping
from functools import cached_property

import numpy as np
import pandas as pd

from adsim.data.bundle import Scenario
from adsim.errors import AdSimDataError
from adsim.world.config import WorldConfig
from adsim.world.rng import stream
from adsim.world.traffic import SECONDS_PER_DAY, SLOTS_PER_PLACEMENT

REQUEST_COLUMNS = ("request_id", "user_id", "ts", "day", "hour", "device", "placement", "n_slots", "privacy",
                   "is_synthetic")

RequestBatch = dict[str, np.ndarray]
"""A batch of requests as one numpy array per REQUEST_COLUMNS entry: the simulator's hot-path format
(a pandas DataFrame with the same columns is accepted wherever a batch is read)."""


def as_batch(requests: pd.DataFrame | Mapping[str, np.ndarray]) -> RequestBatch:
    return {c: np.asarray(requests[c]) for c in REQUEST_COLUMNS}


def take(batch: Mapping[str, np.ndarray], rows: np.ndarray) -> RequestBatch:
    """Rows ``rows`` of a batch (any integer index array, repeats allowed)."""
    return {c: np.asarray(batch[c])[rows] for c in REQUEST_COLUMNS}


def concat(batches: list[Mapping[str, np.ndarray]]) -> RequestBatch:
    return {c: np.concatenate([np.asarray(b[c]) for b in batches]) for c in REQUEST_COLUMNS}


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
    """Requests of one split: the logged ones, and a lazily built pool of anticipatory ones (ARR)."""

    def __init__(self, scenario: Scenario, split: str | None = "train", seed: int = 0, arr_pool: int | None = None):
        self.scenario, self.split, self.seed = scenario, split, seed
        self.logged = as_batch(logged_requests(scenario, split))
        self.arr_pool = arr_pool or max(len(self) // 4, 1)

    def __len__(self) -> int:
        return len(self.logged["request_id"])

    @cached_property
    def synthetic(self) -> RequestBatch:
        return as_batch(anticipatory_requests(self.scenario, self.split, self.arr_pool, self.seed))

    def sample(self, n: int, rng: np.random.Generator, arr_ratio: float = 0.0) -> RequestBatch:
        """``n`` requests drawn with replacement using ``rng``; each synthetic with probability ``arr_ratio``."""
        if not 0.0 <= arr_ratio <= 1.0:
            raise ValueError(f"arr_ratio must be in [0, 1], got {arr_ratio}")
        synthetic = rng.random(n) < arr_ratio
        batch = take(self.logged, rng.integers(0, len(self), size=n))
        if synthetic.any():
            pool = self.synthetic
            rows = rng.integers(0, len(pool["request_id"]), size=int(synthetic.sum()))
            for c in REQUEST_COLUMNS:
                batch[c][synthetic] = pool[c][rows]
        return batch
