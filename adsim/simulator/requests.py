"""Request streams: replayed logged requests by split, mixed with Anticipatory Request Rehearsal (ARR).

ARR (GPR) rehearses requests that have not happened yet, so post-training sees the near future of a split rather
than only its logged past. A synthetic request never looks ahead of its own time:

* its time lies inside the split's days: an anchor (a logged request of the split, drawn uniformly, so users come
  in proportion to their activity) plus a gap drawn from the user's activity group (exponential with the group's
  mean gap, truncated to the end of the split's last day);
* it is built only from what was known at that time: the user token as is; the environment token (time of day,
  device, placement, privacy) copied from one of the user's own logged requests up to the anchor (uniformly), so it
  follows the user's own pattern; everything else (organic history, ad history, eligibility, process rewards,
  features) is read by the readers "strictly before ts", like any request;
* its hour is its own time's hour: the day comes from the gap, the time of day from the user's template request
  (the gap's own time when that would leave the split or fall before the anchor).

Synthetic requests have negative ids and ``is_synthetic=True``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property

import numpy as np
import pandas as pd

from adsim.data.bundle import Scenario
from adsim.errors import AdSimDataError
from adsim.simulator.history import EventIndex
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
    """``n`` synthetic requests inside ``split``'s days, each built only from what was known at its own time (see
    the module docstring)."""
    base = logged_requests(scenario, split)
    every = scenario.table("requests")
    rng = stream(seed, "arr", n)
    anchor = rng.integers(0, len(base), size=n)
    user = base["user_id"].to_numpy()[anchor].astype(np.int64)
    start = base["ts"].to_numpy()[anchor].astype(np.int64)
    end = (int(base["day"].max()) + 1) * SECONDS_PER_DAY - 1  # last second of the split's last day

    # day: the anchor plus a gap at the user's activity rate, truncated to the split (inverse CDF)
    per_day = np.asarray((scenario.config or WorldConfig()).activity_rates)
    mean_gap = SECONDS_PER_DAY / per_day[scenario.table("users")["activity_group"].to_numpy()[user] - 1]
    room = np.maximum(end - start, 1).astype(np.float64)
    u = rng.random(n)
    gap = -mean_gap * np.log1p(-u * -np.expm1(-room / mean_gap))
    raw = np.minimum(start + 1 + np.floor(gap).astype(np.int64), end)

    # environment token: one of the user's own logged requests up to the anchor
    known = EventIndex(every["user_id"].to_numpy(), every["ts"].to_numpy(),
                       {"row": np.arange(len(every), dtype=np.int64)})
    last = known.last_before(user, start + 1)  # the anchor itself, or a later request at the same second
    back = np.floor(rng.random(n) * known.cum[last, 0]).astype(np.int64)
    template = known.payload["row"][last - back]
    ts = raw // SECONDS_PER_DAY * SECONDS_PER_DAY + every["ts"].to_numpy()[template] % SECONDS_PER_DAY
    ts = np.where(ts <= start, ts + SECONDS_PER_DAY, ts)
    ts = np.where(ts > end, raw, ts)
    placement = every["placement"].to_numpy()[template]
    out = pd.DataFrame({
        "request_id": -1 - np.arange(n, dtype=np.int64),
        "user_id": user,
        "ts": ts,
        "day": (ts // SECONDS_PER_DAY).astype(np.int16),
        "hour": (ts % SECONDS_PER_DAY // 3600).astype(every["hour"].dtype),
        "device": every["device"].to_numpy()[template],
        "placement": placement,
        "n_slots": SLOTS_PER_PLACEMENT[placement].astype(np.int8),
        "privacy": every["privacy"].to_numpy()[template],
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

    def held_out(self, n: int | None, rng: np.random.Generator) -> RequestBatch:
        """A fixed evaluation sample: ``n`` distinct logged requests (all when None or more), in time order.

        The one held-out sampler: every evaluator draws its test requests here, the same way.
        """
        total = len(self)
        rows = np.sort(rng.choice(total, size=total if n is None else min(n, total), replace=False))
        return take(self.logged, rows)

    def sample(self, n: int, rng: np.random.Generator, arr_ratio: float = 0.0) -> RequestBatch:
        """``n`` requests drawn with replacement using ``rng``; each synthetic with probability ``arr_ratio``."""
        rows = self.sample_rows(n, rng, arr_ratio)
        synthetic = rows >= len(self)
        batch = take(self.logged, np.where(synthetic, 0, rows))
        if synthetic.any():
            for c in REQUEST_COLUMNS:
                batch[c][synthetic] = self.synthetic[c][rows[synthetic] - len(self)]
        return batch

    def sample_rows(self, n: int, rng: np.random.Generator, arr_ratio: float = 0.0) -> np.ndarray:
        """The rows ``sample`` draws: logged row i, or ARR pool row j as ``len(self) + j`` (same ``rng`` use)."""
        if not 0.0 <= arr_ratio <= 1.0:
            raise ValueError(f"arr_ratio must be in [0, 1], got {arr_ratio}")
        synthetic = rng.random(n) < arr_ratio
        rows = rng.integers(0, len(self), size=n)
        if arr_ratio > 0 and synthetic.any():
            rows[synthetic] = len(self) + rng.integers(0, len(self.synthetic["request_id"]), size=int(synthetic.sum()))
        return rows
