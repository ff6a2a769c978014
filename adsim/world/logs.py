"""Day-by-day log generation: requests, organic events and impressions, streamed in time order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from adsim.world.cascade import LoggingPolicy
from adsim.world.rng import stream
from adsim.world.traffic import OrganicSampler, sample_requests
from adsim.world.world import World

SPLITS = ("train", "valid", "test")


@dataclass
class DayLogs:
    day: int
    requests: pd.DataFrame
    impressions: pd.DataFrame
    organic_events: pd.DataFrame


def split_of_day(day: int, n_days: int, fractions: tuple[float, float]) -> str:
    """Time-based split: the first days train, the next validate, the last test."""
    n_train = max(1, int(round(fractions[0] * n_days)))
    n_valid = max(1, int(round(fractions[1] * n_days)))
    if day < n_train:
        return "train"
    return "valid" if day < min(n_train + n_valid, n_days - 1) else "test"


def generate_logs(world: World) -> Iterator[DayLogs]:
    """Yield each day's logs; ids are global and increase with time."""
    cfg, seed = world.config, world.seed
    policy = LoggingPolicy(world, seed)
    organic = OrganicSampler(world)
    next_request = next_impression = next_event = 0
    for day in range(cfg.n_days):
        requests = sample_requests(world, day, stream(seed, "requests", day))
        request_ids = np.arange(next_request, next_request + len(requests), dtype=np.int64)
        requests.insert(0, "request_id", request_ids)
        requests["is_synthetic"] = False
        requests["split"] = pd.Categorical([split_of_day(day, cfg.n_days, cfg.split_fractions)] * len(requests),
                                           categories=list(SPLITS))
        events = organic.sample(requests, request_ids, stream(seed, "organic_events", day))
        events.insert(0, "event_id", np.arange(next_event, next_event + len(events), dtype=np.int64))

        state = policy.start_day(day, stream(seed, "retrieval", day))
        parts = []
        for chunk, begin in enumerate(range(0, max(len(requests), 1), cfg.chunk_size)):
            part = policy.serve(requests.iloc[begin : begin + cfg.chunk_size], state, stream(seed, "serve", day, chunk))
            part["request_row"] += begin
            parts.append(part)
        impressions = pd.concat(parts, ignore_index=True)
        row = impressions.pop("request_row").to_numpy()
        impressions.insert(0, "request_id", request_ids[row])
        impressions.insert(0, "impression_id", np.arange(next_impression, next_impression + len(impressions),
                                                         dtype=np.int64))
        next_request += len(requests)
        next_impression += len(impressions)
        next_event += len(events)
        yield DayLogs(day, requests, impressions, events)
