"""Day-by-day log generation in user shards: requests, organic events and impressions, streamed in time order.

Sharding
    Users are cut into ``config.n_shards`` contiguous id ranges. A *shard-day* (one shard's requests, organic
    events and impressions on one day) is the unit of work: a pure function of the world, the shard and the day,
    needing nothing from another shard or another day (spend resets daily and each shard spends only its own
    share of the budgets). The single-process build is *defined* as the same shard-days run in sequence, so a
    parallel build (``adsim.world.shards``, on Ray) with any number of workers writes identical tables. The number
    of shards is part of the data (a config field, in the manifest); the number of workers is not.

Seeding
    Every draw comes from ``adsim.world.rng.stream`` keyed by (seed, component, shard, day[, chunk]):
    ``"requests"`` and ``"organic_events"`` per shard-day, ``"serve"`` per chunk of a shard-day. A day's
    retrieval lists belong to the marketplace, not to a shard: keyed by (seed, ``"retrieval"``, day), they are
    computed once a day (``retrieval_lists``) and handed to every shard.

Budgets
    Budgets are global per ad, but shards do not talk to each other during a day. Shard s may spend
    ``share_s`` = (expected requests of its users) / (expected requests of all users) of every ad's daily budget,
    expected from the activity groups, so known before anything runs. It checks its spend against that share
    between chunks of ``chunk_size x share_s`` of its requests (about as often, in time, as one process checking
    the whole marketplace every ``chunk_size`` requests) and is never billed beyond it (``adsim.world.cascade``).
    So no ad spends more than its daily budget; an ad may still be shown past a shard's share until that chunk
    ends (unbilled over-delivery), and an ad whose audience is uneven across shards can under-deliver a little
    (one shard's share runs out while another's is left), as with any budget paced per server.

Ids and order
    A shard-day numbers its rows locally. ``DayMerger`` interleaves the shards of a day into the global time
    order (requests by (ts, user_id); impressions by request, then position; organic events by (ts, request_id))
    and assigns the dense global ids, continuing from the previous day. Ids are therefore unique and
    time-ordered over whole tables, and a bundle keeps one time-ordered Parquet file per table.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from adsim.world.cascade import LoggingPolicy
from adsim.world.config import WorldConfig
from adsim.world.entities import Ads, Organic, Users
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


@dataclass
class ShardDay:
    """One shard's logs of one day before merging: no ids yet, ``request_row`` indexes this ``requests``."""

    shard: int
    day: int
    requests: pd.DataFrame
    """user_id (global), ts, day, hour, device, placement, n_slots, privacy; in (ts, user_id) order."""
    impressions: pd.DataFrame
    """request_row, ad_id, position, propensity, ranking_ecpm, click, conversion, cost, gmv."""
    organic_events: pd.DataFrame
    """user_id (global), item_id, ts, request_row, dwell_s."""


def split_of_day(day: int, n_days: int, fractions: tuple[float, float]) -> str:
    """Time-based split: the first days train, the next validate, the last test."""
    n_train = max(1, int(round(fractions[0] * n_days)))
    n_valid = max(1, int(round(fractions[1] * n_days)))
    if day < n_train:
        return "train"
    return "valid" if day < min(n_train + n_valid, n_days - 1) else "test"


# ---------------------------------------------------------------------------------------------- shards
@dataclass(frozen=True)
class ShardPlan:
    """Which users each shard serves and which share of every budget it may spend."""

    bounds: np.ndarray
    """(n_shards + 1,) int64: shard s serves user ids ``bounds[s] <= u < bounds[s + 1]``."""
    budget_share: np.ndarray
    """(n_shards,) float64: the shard's share of the expected requests, summing to 1."""

    @property
    def n_shards(self) -> int:
        return len(self.budget_share)

    def shard_of(self, user_ids: np.ndarray) -> np.ndarray:
        """The shard serving each user id."""
        return np.searchsorted(self.bounds, np.asarray(user_ids), side="right") - 1

    @classmethod
    def of(cls, config: WorldConfig, users: pd.DataFrame) -> ShardPlan:
        bounds = np.linspace(0, config.n_users, config.n_shards + 1).round().astype(np.int64)
        rates = np.asarray(config.activity_rates)[users["activity_group"].to_numpy() - 1]
        cumulative = np.concatenate([[0.0], np.cumsum(rates)])
        return cls(bounds, np.diff(cumulative[bounds]) / cumulative[-1])


def slice_users(users: Users, lo: int, hi: int) -> Users:
    """Users ``lo <= u < hi`` renumbered from 0, the ids a shard world works with."""
    table = users.table.iloc[lo:hi].reset_index(drop=True)
    table["user_id"] = np.arange(hi - lo, dtype=np.int64)
    return Users(table, users.interests[:, lo:hi], users.interest_weights[:, lo:hi], users.click_bias[lo:hi],
                 users.convert_bias[lo:hi])


def shard_world(config: WorldConfig, seed: int, users: Users, ads: Ads, organic: Organic) -> World:
    """A world whose population is one shard's users (``slice_users``) and the whole ad and content catalogue.

    The entities are given, not regenerated, so a shard costs no more than its slice: a Ray task receives them
    from the object store (zero-copy arrays).
    """
    world = World(config, seed)
    world.__dict__.update(users=users, ads=ads, organic=organic)  # fills World's cached properties
    return world


class ShardLogger:
    """Generates the shard-days of one user shard.

    Args:
        world: the shard's world (``shard_world``), user ids starting at 0.
        shard: the shard's index, a key of every random stream it draws from.
        first_user: global id of the shard's user 0, added back to every user id it logs.
        budget_share: the shard's share of every ad's daily budget.
    """

    def __init__(self, world: World, shard: int, first_user: int, budget_share: float):
        self.world, self.shard, self.first_user = world, shard, first_user
        self.policy = LoggingPolicy(world, world.seed, budget_share)
        self.chunk_size = max(1, int(round(world.config.chunk_size * budget_share)))
        self.organic = OrganicSampler(world)

    @classmethod
    def of(cls, world: World, plan: ShardPlan, shard: int) -> ShardLogger:
        lo, hi = (int(b) for b in plan.bounds[shard : shard + 2])
        part = shard_world(world.config, world.seed, slice_users(world.users, lo, hi), world.ads, world.organic)
        return cls(part, shard, lo, float(plan.budget_share[shard]))

    def day(self, day: int, topic_lists: np.ndarray) -> ShardDay:
        """The shard's logs of ``day``, served from the day's retrieval lists (``retrieval_lists``)."""
        seed, shard = self.world.seed, self.shard
        requests = sample_requests(self.world, day, stream(seed, "requests", shard, day))
        rows = np.arange(len(requests), dtype=np.int64)
        events = self.organic.sample(requests, rows, stream(seed, "organic_events", shard, day))
        events = events.rename(columns={"request_id": "request_row"})

        state = self.policy.start_day(topic_lists)
        parts = []
        for chunk, begin in enumerate(range(0, len(requests), self.chunk_size)):
            batch = requests.iloc[begin : begin + self.chunk_size]
            part = self.policy.serve(batch, state, stream(seed, "serve", shard, day, chunk))
            part["request_row"] += begin
            parts.append(part)
        impressions = pd.concat(parts, ignore_index=True) if parts else _empty_impressions()
        requests["user_id"] += self.first_user
        events["user_id"] += self.first_user
        return ShardDay(shard, day, requests, impressions, events)


def retrieval_lists(world: World, day: int) -> np.ndarray:
    """The marketplace's retrieval lists of ``day``, shared by every shard: computed once a day, not per shard."""
    return LoggingPolicy(world, world.seed).retrieval_lists(day, stream(world.seed, "retrieval", day))


def _empty_impressions() -> pd.DataFrame:
    columns = {"request_row": np.int64, "ad_id": np.int64, "position": np.int8, "propensity": np.float64,
               "ranking_ecpm": np.float64, "click": bool, "conversion": bool, "cost": np.float64, "gmv": np.float64}
    return pd.DataFrame({name: np.empty(0, dtype=dtype) for name, dtype in columns.items()})


# ---------------------------------------------------------------------------------------------- merging
class DayMerger:
    """Interleaves the shard-days of each day into time order and numbers rows with global ids.

    Days must be merged in order: the ids of a day continue from the previous one.
    """

    def __init__(self, config: WorldConfig):
        self.config = config
        self.next_request = self.next_impression = self.next_event = 0

    def merge(self, parts: Sequence[ShardDay]) -> DayLogs:
        parts = sorted(parts, key=lambda p: p.shard)
        day = parts[0].day
        if any(p.day != day for p in parts):
            raise ValueError(f"shard-days of different days: {sorted({p.day for p in parts})}")
        offsets = np.cumsum([0] + [len(p.requests) for p in parts])

        # ---- requests: global (ts, user_id) order; ``global_id`` maps a concatenated row to its id
        requests = pd.concat([p.requests for p in parts], ignore_index=True)
        order = np.lexsort((requests["user_id"].to_numpy(), requests["ts"].to_numpy()))
        global_id = np.empty(len(requests), dtype=np.int64)
        global_id[order] = self.next_request + np.arange(len(requests), dtype=np.int64)
        requests = requests.iloc[order].reset_index(drop=True)
        requests.insert(0, "request_id", global_id[order])
        requests["is_synthetic"] = False
        split = split_of_day(day, self.config.n_days, self.config.split_fractions)
        requests["split"] = pd.Categorical([split] * len(requests), categories=list(SPLITS))

        # ---- impressions by request (a shard lists a request's slots in position order; the sort is stable)
        impressions, request_id = _rows_to_ids(parts, "impressions", offsets, global_id)
        order = np.argsort(request_id, kind="stable")
        impressions = impressions.iloc[order].reset_index(drop=True)
        impressions.insert(0, "request_id", request_id[order])
        impressions.insert(0, "impression_id", self.next_impression + np.arange(len(impressions), dtype=np.int64))

        # ---- organic events by (ts, request_id)
        events, request_id = _rows_to_ids(parts, "organic_events", offsets, global_id)
        order = np.lexsort((request_id, events["ts"].to_numpy()))
        events = events.iloc[order].reset_index(drop=True)
        events.insert(3, "request_id", request_id[order])
        events.insert(0, "event_id", self.next_event + np.arange(len(events), dtype=np.int64))

        self.next_request += len(requests)
        self.next_impression += len(impressions)
        self.next_event += len(events)
        return DayLogs(day, requests, impressions, events)


def _rows_to_ids(parts: Sequence[ShardDay], name: str, offsets: np.ndarray, global_id: np.ndarray
                 ) -> tuple[pd.DataFrame, np.ndarray]:
    """Table ``name`` of all shards concatenated without ``request_row``, and each row's global request id."""
    frames = [getattr(p, name) for p in parts]
    rows = np.concatenate([f["request_row"].to_numpy() + offsets[i] for i, f in enumerate(frames)])
    table = pd.concat([f.drop(columns="request_row") for f in frames], ignore_index=True)
    return table, global_id[rows]


def generate_logs(world: World) -> Iterator[DayLogs]:
    """Yield each day's logs, its shards generated in sequence; ids are global and increase with time."""
    plan = ShardPlan.of(world.config, world.users.table)
    shards = [ShardLogger.of(world, plan, s) for s in range(plan.n_shards)]
    merger = DayMerger(world.config)
    for day in range(world.config.n_days):
        lists = retrieval_lists(world, day)
        yield merger.merge([shard.day(day, lists) for shard in shards])
